// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package vxlan

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// deviceSpec is the device weft wants.
type deviceSpec struct {
	name        string
	vni, port   int
	local       netip.Addr
	parentIndex int
}

// incompatibility explains why an existing link cannot be adopted as the
// device spec describes, or returns "" when it can. Only properties that
// cannot be changed on a live device count: the MTU and the up state are
// fixed in place, the MAC is kept as it is.
func incompatibility(l netlink.Link, s deviceSpec) string {
	vx, ok := l.(*netlink.Vxlan)
	if !ok {
		return fmt.Sprintf("link %s is of type %s, not vxlan", l.Attrs().Name, l.Type())
	}
	local := addrOf(vx.SrcAddr)
	switch {
	case vx.VxlanId != s.vni:
		return fmt.Sprintf("VNI is %d, want %d", vx.VxlanId, s.vni)
	case vx.Port != s.port:
		return fmt.Sprintf("UDP port is %d, want %d", vx.Port, s.port)
	case local != s.local:
		return fmt.Sprintf("local address is %s, want %s", fmtAddr(local), s.local)
	case s.parentIndex != 0 && vx.VtepDevIndex != s.parentIndex:
		return fmt.Sprintf("parent link index is %d, want %d", vx.VtepDevIndex, s.parentIndex)
	case vx.Learning:
		return "learning is on, want off"
	case vx.FlowBased:
		return "device is in external (flow-based) mode"
	case len(vx.Group) > 0 && !vx.Group.IsUnspecified():
		return fmt.Sprintf("device has multicast group/remote %s, want none", vx.Group)
	}
	return ""
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

func fmtAddr(a netip.Addr) string {
	if !a.IsValid() {
		return "none"
	}
	return a.String()
}
