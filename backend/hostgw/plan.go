// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package hostgw

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/backend"
)

// reachability is the kernel's answer for a peer's public address: the
// link it is directly reachable through (0: not directly reachable) and,
// when not, a human reason.
type reachability struct {
	link   int
	reason string
}

// planRoutes maps d to the routes host-gw needs and the peers it cannot
// serve. reach answers for one public address; underlay is the index of
// the link direct routes must use. It is pure: the kernel is asked only
// through reach. Peers are taken in order of lease epoch, then name, so an
// overlap goes to the older claim.
func planRoutes(d backend.Desired, underlay int, reach func(netip.Addr) reachability) ([]netlink.Route, map[string]string) {
	var routes []netlink.Route
	problems := map[string]string{}
	var taken []netip.Prefix
	owner := map[netip.Prefix]string{}
	for _, s := range []netip.Prefix{d.Local.Subnet, d.Local.IPv6Subnet} {
		if s.IsValid() {
			taken = append(taken, s.Masked())
			owner[s.Masked()] = "this node"
		}
	}
	peers := slices.Clone(d.Peers)
	slices.SortStableFunc(peers, func(a, b backend.Peer) int {
		return cmp.Or(cmp.Compare(a.Epoch, b.Epoch), cmp.Compare(a.Name, b.Name))
	})
	for _, p := range peers {
		var why []string
		v6gw := p.PublicIPv6.Unmap()
		if !v6gw.IsValid() && p.PublicIP.Unmap().Is6() {
			v6gw = p.PublicIP.Unmap()
		}
		for _, f := range []struct {
			subnet netip.Prefix
			gw     netip.Addr
			v6     bool
		}{
			{p.Subnet, p.PublicIP.Unmap(), false},
			{p.IPv6Subnet, v6gw, true},
		} {
			if !f.subnet.IsValid() {
				continue
			}
			s := f.subnet.Masked()
			if s.Addr().Is6() != f.v6 {
				why = append(why, fmt.Sprintf("subnet %s has the wrong address family", s))
				continue
			}
			if o := overlapping(taken, s); o.IsValid() {
				why = append(why, fmt.Sprintf("subnet %s overlaps %s of %s", s, o, owner[o]))
				continue
			}
			if !f.gw.IsValid() || f.gw.Is6() != f.v6 {
				why = append(why, fmt.Sprintf("subnet %s: peer has no public %s address", s, fam(f.v6)))
				continue
			}
			r := reach(f.gw)
			switch {
			case r.link == 0:
				why = append(why, fmt.Sprintf("subnet %s: public IP %s is not on this node's L2 segment (%s)", s, f.gw, r.reason))
				continue
			case r.link != underlay:
				why = append(why, fmt.Sprintf("subnet %s: public IP %s is directly reachable only through %s, not the underlay interface", s, f.gw, r.reason))
				continue
			}
			routes = append(routes, netlink.Route{
				Dst:       &net.IPNet{IP: s.Addr().AsSlice(), Mask: net.CIDRMask(s.Bits(), s.Addr().BitLen())},
				Gw:        f.gw.AsSlice(),
				LinkIndex: underlay,
			})
			taken = append(taken, s)
			owner[s] = p.Name
		}
		if !p.Subnet.IsValid() && !p.IPv6Subnet.IsValid() {
			why = append(why, "no subnet")
		}
		if len(why) > 0 {
			problems[p.Name] = strings.Join(why, "; ")
		}
	}
	return routes, problems
}

func fam(v6 bool) string {
	if v6 {
		return "IPv6"
	}
	return "IPv4"
}

func overlapping(taken []netip.Prefix, p netip.Prefix) netip.Prefix {
	for _, t := range taken {
		if t.Overlaps(p) {
			return t
		}
	}
	return netip.Prefix{}
}
