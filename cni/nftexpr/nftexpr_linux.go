// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package nftexpr

import (
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// NeighbourDiscovery returns ipv6, the caller's match of IPv6 packets (it
// differs between the inet and bridge families), followed by a match of
// ICMPv6 types 133 to 137 with hop limit 255, a counter and accept. Such
// messages never cross a router, so only bridged ones match; without the
// rule a pod that a table holds or isolates could not resolve its
// neighbours over IPv6.
func NeighbourDiscovery(ipv6 ...expr.Any) []expr.Any {
	return append(ipv6,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMPV6}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: []byte{133}, ToData: []byte{137}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 7, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{255}},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictAccept},
	)
}
