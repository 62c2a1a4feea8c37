// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import "net/netip"

// underlay is the node's underlay interface and addresses, as
// resolveUnderlay (underlay_linux.go) finds them.
// underlay is the node's underlay interface and addresses.
type underlay struct {
	Iface      string
	PublicIP   netip.Addr
	PublicIPv6 netip.Addr
	// MTU of Iface.
	MTU int
}
