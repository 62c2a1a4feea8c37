// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package backend

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"

	"github.com/vishvananda/netlink"
)

// Kernel constants used by the portable route diff (the values are fixed by
// the Linux ABI; golang.org/x/sys/unix defines them only on Linux).
const (
	rtTableMain     = 254 // RT_TABLE_MAIN
	rtnUnicast      = 1   // RTN_UNICAST
	rtnhFlagOnlink  = 0x4 // RTNH_F_ONLINK
	ip6DefaultRoute = 1024
)

// RouteDiff is what it takes to turn one set of routes into another.
type RouteDiff struct {
	// Add holds desired routes with no current route of the same key.
	Add []netlink.Route
	// Update holds desired routes whose current route differs.
	Update []netlink.Route
	// Stale holds current routes that are not desired.
	Stale []netlink.Route
}

// routeKey identifies a route in a table the way the kernel does for
// replace and delete: destination, table, metric and TOS.
type routeKey struct {
	dst      netip.Prefix
	table    int
	priority int
	tos      int
}

// routeAttrs are the attributes weft sets and compares; anything else the
// kernel reports (cache info, offload flags, ...) is ignored.
type routeAttrs struct {
	gw        netip.Addr
	linkIndex int
	onlink    bool
	scope     netlink.Scope
	typ       int
	src       netip.Addr
	mtu       int
}

func ipAddr(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

func routeDst(r netlink.Route) netip.Prefix {
	if r.Dst == nil {
		if r.Family == 10 { // AF_INET6
			return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	a := ipAddr(r.Dst.IP)
	ones, _ := r.Dst.Mask.Size()
	return netip.PrefixFrom(a, ones).Masked()
}

// keyOf normalises what the kernel fills in by itself: table 0 is the main
// table, and an IPv6 route without a metric gets 1024.
func keyOf(r netlink.Route) routeKey {
	k := routeKey{dst: routeDst(r), table: r.Table, priority: r.Priority, tos: r.Tos}
	if k.table == 0 {
		k.table = rtTableMain
	}
	if k.priority == 0 && k.dst.Addr().Is6() {
		k.priority = ip6DefaultRoute
	}
	return k
}

func attrsOf(r netlink.Route) routeAttrs {
	a := routeAttrs{
		gw:        ipAddr(r.Gw),
		linkIndex: r.LinkIndex,
		onlink:    r.Flags&rtnhFlagOnlink != 0,
		scope:     r.Scope,
		typ:       r.Type,
		src:       ipAddr(r.Src),
		mtu:       r.MTU,
	}
	if a.typ == 0 {
		a.typ = rtnUnicast
	}
	return a
}

// DiffRoutes compares current routes (as listed from the kernel) with
// desired ones. Routes are matched by destination, table, metric and TOS;
// when desired holds the same key twice, the last one counts. It is pure:
// the caller applies the result.
func DiffRoutes(current, desired []netlink.Route) RouteDiff {
	rd := newRouteDiffer(desired)
	for _, r := range current {
		rd.see(r)
	}
	return rd.diff()
}

// routeDiffer is [DiffRoutes] taking the current routes one at a time, so
// that a kernel dump need not be held as a list: it keeps each wanted
// route's index and, for each current one wanted, whether it is as wanted,
// not copies of the routes (a route is a large struct; thousands of copies
// were most of a resync's garbage).
type routeDiffer struct {
	desired []netlink.Route
	want    map[routeKey]int // the index in desired of the route that counts
	order   []routeKey
	have    map[routeKey]bool // wanted keys seen; true: as wanted
	stale   []netlink.Route
}

func newRouteDiffer(desired []netlink.Route) *routeDiffer {
	rd := &routeDiffer{desired: desired, want: make(map[routeKey]int, len(desired)), order: make([]routeKey, 0, len(desired))}
	for i, r := range desired {
		k := keyOf(r)
		if _, dup := rd.want[k]; !dup {
			rd.order = append(rd.order, k)
		}
		rd.want[k] = i
	}
	rd.reset()
	return rd
}

// reset forgets the current routes seen (a dump to start over).
func (rd *routeDiffer) reset() {
	rd.have = make(map[routeKey]bool, len(rd.desired))
	rd.stale = nil
}

// see takes one current route.
func (rd *routeDiffer) see(r netlink.Route) {
	k := keyOf(r)
	i, ok := rd.want[k]
	if !ok {
		rd.stale = append(rd.stale, r)
		return
	}
	rd.have[k] = attrsOf(r) == attrsOf(rd.desired[i])
}

// diff is the difference between the routes seen and the desired ones.
func (rd *routeDiffer) diff() RouteDiff {
	d := RouteDiff{Stale: rd.stale}
	for _, k := range rd.order {
		r := &rd.desired[rd.want[k]]
		same, ok := rd.have[k]
		switch {
		case !ok:
			d.Add = append(d.Add, *r)
		case !same:
			d.Update = append(d.Update, *r)
		}
	}
	sort.SliceStable(d.Stale, func(i, j int) bool {
		return keyOf(d.Stale[i]).dst.String() < keyOf(d.Stale[j]).dst.String()
	})
	return d
}

// diffAddrs compares a device's addresses with the wanted ones.
func diffAddrs(current, want []netip.Prefix) (add, stale []netip.Prefix) {
	for _, w := range want {
		if !slices.Contains(current, w) {
			add = append(add, w)
		}
	}
	for _, c := range current {
		if !slices.Contains(want, c) {
			stale = append(stale, c)
		}
	}
	return add, stale
}

// describeRoute renders r for error messages and test output.
func describeRoute(r netlink.Route) string {
	s := "default"
	if r.Dst != nil {
		s = r.Dst.String()
	}
	if r.Gw != nil {
		s += " via " + r.Gw.String()
	}
	if r.LinkIndex > 0 {
		s += fmt.Sprintf(" dev #%d", r.LinkIndex)
	}
	return s
}
