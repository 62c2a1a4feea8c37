// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package backend

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
)

func ipnet(s string) *net.IPNet {
	p := netip.MustParsePrefix(s)
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func ip(s string) net.IP { return netip.MustParseAddr(s).AsSlice() }

// dsts renders routes as "dst via gw" strings for compact comparisons.
func dsts(rs []netlink.Route) []string {
	var out []string
	for _, r := range rs {
		out = append(out, describeRoute(r))
	}
	return out
}

func TestDiffRoutes(t *testing.T) {
	// What the kernel reports for a route weft added: table, type and
	// (IPv6) metric filled in, extra flags set.
	kernel := func(r netlink.Route) netlink.Route {
		r.Table = 254
		r.Type = 1
		r.Protocol = RouteProtocol
		if r.Dst.IP.To4() == nil && r.Priority == 0 {
			r.Priority = 1024
		}
		return r
	}
	v4 := netlink.Route{Dst: ipnet("10.244.1.0/24"), Gw: ip("10.244.1.0"), LinkIndex: 5, Flags: rtnhFlagOnlink}
	v6 := netlink.Route{Dst: ipnet("fd10:244:0:1::/64"), Gw: ip("fd10:244:0:1::"), LinkIndex: 5, Flags: rtnhFlagOnlink}
	other := netlink.Route{Dst: ipnet("10.244.2.0/24"), Gw: ip("198.18.0.2"), LinkIndex: 2}
	moved := v4
	moved.Gw = ip("198.18.0.9")
	moved.Flags = 0
	linkDown := kernel(v4)
	linkDown.Flags |= 0x10 // RTNH_F_LINKDOWN: reported by the kernel, not ours to compare
	metric := other
	metric.Priority = 100

	tests := []struct {
		name             string
		current, desired []netlink.Route
		want             RouteDiff
	}{
		{
			name:    "empty",
			current: nil, desired: nil,
			want: RouteDiff{},
		},
		{
			name:    "all missing",
			desired: []netlink.Route{v4, v6},
			want:    RouteDiff{Add: []netlink.Route{v4, v6}},
		},
		{
			name:    "identical after kernel normalisation",
			current: []netlink.Route{kernel(v4), kernel(v6)},
			desired: []netlink.Route{v4, v6},
			want:    RouteDiff{},
		},
		{
			name:    "ignored kernel flags",
			current: []netlink.Route{linkDown},
			desired: []netlink.Route{v4},
			want:    RouteDiff{},
		},
		{
			name:    "changed gateway is an update",
			current: []netlink.Route{kernel(v4)},
			desired: []netlink.Route{moved},
			want:    RouteDiff{Update: []netlink.Route{moved}},
		},
		{
			name:    "stale",
			current: []netlink.Route{kernel(v4), kernel(other)},
			desired: []netlink.Route{v4},
			want:    RouteDiff{Stale: []netlink.Route{kernel(other)}},
		},
		{
			name:    "other metric is another route",
			current: []netlink.Route{kernel(other)},
			desired: []netlink.Route{metric},
			want:    RouteDiff{Add: []netlink.Route{metric}, Stale: []netlink.Route{kernel(other)}},
		},
		{
			name:    "duplicate desired: last wins",
			desired: []netlink.Route{v4, moved},
			want:    RouteDiff{Add: []netlink.Route{moved}},
		},
		{
			name:    "mixed",
			current: []netlink.Route{kernel(other), kernel(v6)},
			desired: []netlink.Route{v4, v6},
			want:    RouteDiff{Add: []netlink.Route{v4}, Stale: []netlink.Route{kernel(other)}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DiffRoutes(tt.current, tt.desired)
			for _, c := range []struct {
				what      string
				got, want []netlink.Route
			}{
				{"add", got.Add, tt.want.Add},
				{"update", got.Update, tt.want.Update},
				{"stale", got.Stale, tt.want.Stale},
			} {
				if diff := cmp.Diff(dsts(c.want), dsts(c.got)); diff != "" {
					t.Errorf("%s (-want +got):\n%s", c.what, diff)
				}
			}
		})
	}
}

func TestRouteKeyNormalisation(t *testing.T) {
	tests := []struct {
		name string
		r    netlink.Route
		want routeKey
	}{
		{"v4 defaults", netlink.Route{Dst: ipnet("10.0.0.0/8")},
			routeKey{dst: netip.MustParsePrefix("10.0.0.0/8"), table: 254}},
		{"v6 metric", netlink.Route{Dst: ipnet("fd00:1::/64")},
			routeKey{dst: netip.MustParsePrefix("fd00:1::/64"), table: 254, priority: 1024}},
		{"unmasked dst", netlink.Route{Dst: &net.IPNet{IP: ip("10.1.2.3"), Mask: net.CIDRMask(16, 32)}, Table: 100},
			routeKey{dst: netip.MustParsePrefix("10.1.0.0/16"), table: 100}},
		{"v4 as 16 bytes", netlink.Route{Dst: &net.IPNet{IP: net.ParseIP("10.1.0.0"), Mask: net.CIDRMask(16, 32)}},
			routeKey{dst: netip.MustParsePrefix("10.1.0.0/16"), table: 254}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := keyOf(tt.r); got != tt.want {
				t.Errorf("keyOf = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDiffAddrs(t *testing.T) {
	a, b, c := netip.MustParsePrefix("10.244.1.0/32"), netip.MustParsePrefix("fd10:244:0:1::/128"), netip.MustParsePrefix("10.244.1.0/24")
	add, stale := diffAddrs([]netip.Prefix{c, b}, []netip.Prefix{a, b})
	if diff := cmp.Diff([]netip.Prefix{a}, add, cmp.Comparer(func(x, y netip.Prefix) bool { return x == y })); diff != "" {
		t.Errorf("add (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]netip.Prefix{c}, stale, cmp.Comparer(func(x, y netip.Prefix) bool { return x == y })); diff != "" {
		t.Errorf("stale (-want +got):\n%s", diff)
	}
}

func TestDeviceAddrs(t *testing.T) {
	l := Local{Subnet: netip.MustParsePrefix("10.244.1.0/24"), IPv6Subnet: netip.MustParsePrefix("fd10:244:0:1::5/64")}
	want := []netip.Prefix{netip.MustParsePrefix("10.244.1.0/32"), netip.MustParsePrefix("fd10:244:0:1::/128")}
	if diff := cmp.Diff(want, l.DeviceAddrs(), cmp.Comparer(func(x, y netip.Prefix) bool { return x == y })); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := (Local{}).DeviceAddrs(); len(got) != 0 {
		t.Errorf("no subnets: %v, want none", got)
	}
}
