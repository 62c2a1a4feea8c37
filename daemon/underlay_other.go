// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build !linux

package daemon

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
)

// resolveUnderlay needs the Linux kernel's routes and addresses.
func resolveUnderlay(string, netip.Addr, netip.Addr) (underlay, error) {
	return underlay{}, fmt.Errorf("find the underlay interface: weftd runs on Linux only, not %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

// enableForwarding needs Linux's sysctls.
func enableForwarding(v4, v6 bool) error {
	if !v4 && !v6 {
		return nil
	}
	return fmt.Errorf("enable forwarding: weftd runs on Linux only, not %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
