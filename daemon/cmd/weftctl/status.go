// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package main

import (
	"context"
	"errors"
)

// SCAFFOLD: replaced by the implementation.
func cmdStatus(ctx context.Context, args []string) error {
	return errors.New("not implemented yet")
}
