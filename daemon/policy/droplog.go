// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package policy

// DropLog asks for the packets the default denies drop to be handed to
// userspace (nftables `log group`, NFLOG), so that weftd can log them.
// It is the daemon's setting, not the compiler's: the zero value logs
// nothing.
type DropLog struct {
	// Group is the NFLOG group the packets go to (0: no logging).
	Group uint16
	// Rate is how many packets per second each drop rule hands over at
	// most (the kernel's `limit`; the rest are dropped unlogged).
	Rate uint32
}
