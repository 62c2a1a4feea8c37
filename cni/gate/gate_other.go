// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build !linux

package gate

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"time"
)

func errUnsupported() error {
	return fmt.Errorf("the pod gate (nftables table %s) needs Linux, not %s: %w", Table, runtime.GOOS, errors.ErrUnsupported)
}

// Hold needs Linux.
func Hold(string, string, []netip.Addr) (bool, error) { return false, errUnsupported() }

// Wait needs Linux.
func Wait([]netip.Addr, time.Duration) error { return errUnsupported() }

// Held needs Linux.
func Held([]netip.Addr) ([]netip.Addr, error) { return nil, errUnsupported() }

// Release needs Linux.
func Release(string) ([]Pending, error) { return nil, errUnsupported() }
