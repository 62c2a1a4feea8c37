// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build !linux

package antispoof

import (
	"errors"
	"fmt"
	"runtime"
)

// errUnsupported says that the entries need Linux's nftables.
func errUnsupported() error {
	return fmt.Errorf("anti-spoofing (nftables table bridge %s) needs Linux, not %s: %w", TableName, runtime.GOOS, errors.ErrUnsupported)
}

// Reconcile needs Linux.
func Reconcile(string) (Result, error) { return Result{}, errUnsupported() }

// Counters needs Linux.
func Counters() (map[string]uint64, error) { return nil, errUnsupported() }
