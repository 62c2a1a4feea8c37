// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build !linux

package daemon

import (
	"context"
	"errors"
	"fmt"
	"runtime"
)

// readDropLog needs Linux's NFLOG.
func readDropLog(context.Context, uint16, *dropLogger) error {
	return fmt.Errorf("policy drop log (NFLOG): weftd runs on Linux only, not %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
