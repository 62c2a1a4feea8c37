// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build !linux

package daemon

import (
	"errors"
	"fmt"
	"runtime"
)

// installMasq needs Linux's nftables.
func installMasq(bool, masqConfig) (string, error) {
	return "", fmt.Errorf("masquerade (nftables table inet %s): weftd runs on Linux only, not %s: %w", masqTable, runtime.GOOS, errors.ErrUnsupported)
}

// repairMasq needs Linux's nftables.
func repairMasq(masqConfig) (bool, error) {
	return false, fmt.Errorf("masquerade (nftables table inet %s): weftd runs on Linux only, not %s: %w", masqTable, runtime.GOOS, errors.ErrUnsupported)
}
