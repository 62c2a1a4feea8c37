// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package backend_test

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/e2e/netnstest"
)

func ipnet(s string) *net.IPNet {
	p := netip.MustParsePrefix(s)
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func ip(s string) net.IP { return netip.MustParseAddr(s).AsSlice() }

// linkPair makes a veth pair a/b inside the namespace of h, both up, with
// addr (IPv4 or IPv6, no DAD) on a.
func linkPair(t *testing.T, h *netlink.Handle, a, b string, addrs ...string) netlink.Link {
	t.Helper()
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: b}); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	la, err := h.LinkByName(a)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := h.LinkByName(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range addrs {
		if err := h.AddrAdd(la, &netlink.Addr{IPNet: ipnet(s), Flags: unix.IFA_F_NODAD}); err != nil {
			t.Fatalf("add address %s: %v", s, err)
		}
	}
	for _, l := range []netlink.Link{la, lb} {
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	return la
}

// routesByDst lists the main-table routes (both families) as dst → route.
func routesByDst(t *testing.T, h *netlink.Handle) map[string]netlink.Route {
	t.Helper()
	rs, err := backend.RouteList(h, nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]netlink.Route{}
	for _, r := range rs {
		if r.Dst != nil {
			m[r.Dst.String()] = r
		}
	}
	return m
}

func TestSyncRoutes(t *testing.T) {
	netnstest.SkipUnlessRoot(t)
	ns := netnstest.NewNS(t, "wsr")
	h := ns.Netlink(t)
	la := linkPair(t, h, "und0", "und1", "198.18.0.1/24", "2001:2::1/64")
	idx := la.Attrs().Index

	foreign := netlink.Route{Dst: ipnet("10.244.9.0/24"), Gw: ip("198.18.0.9"), LinkIndex: idx, Protocol: unix.RTPROT_STATIC}
	if err := h.RouteAdd(&foreign); err != nil {
		t.Fatal(err)
	}
	r1 := netlink.Route{Dst: ipnet("10.244.1.0/24"), Gw: ip("198.18.0.2"), LinkIndex: idx}
	r2 := netlink.Route{Dst: ipnet("10.244.2.0/24"), Gw: ip("198.18.0.3"), LinkIndex: idx, Flags: int(netlink.FLAG_ONLINK)}
	r6 := netlink.Route{Dst: ipnet("fd10:244:0:1::/64"), Gw: ip("2001:2::2"), LinkIndex: idx}
	r2moved := r2
	r2moved.Gw = ip("198.18.0.4")

	type counts struct{ added, updated, removed int }
	steps := []struct {
		name     string
		desired  []netlink.Route
		complete bool
		want     counts
		present  []string
		absent   []string
	}{
		{"add all", []netlink.Route{r1, r2, r6}, true, counts{3, 0, 0},
			[]string{"10.244.1.0/24", "10.244.2.0/24", "fd10:244:0:1::/64", "10.244.9.0/24"}, nil},
		{"idempotent", []netlink.Route{r1, r2, r6}, true, counts{0, 0, 0}, nil, nil},
		{"gateway change", []netlink.Route{r1, r2moved, r6}, true, counts{0, 1, 0}, nil, nil},
		{"incomplete keeps stale", []netlink.Route{r1}, false, counts{0, 0, 0},
			[]string{"10.244.2.0/24", "fd10:244:0:1::/64"}, nil},
		{"complete removes stale, not foreign", []netlink.Route{r1}, true, counts{0, 0, 2},
			[]string{"10.244.1.0/24", "10.244.9.0/24"}, []string{"10.244.2.0/24", "fd10:244:0:1::/64"}},
		{"empty complete", nil, true, counts{0, 0, 1},
			[]string{"10.244.9.0/24"}, []string{"10.244.1.0/24"}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			a, u, r, err := backend.SyncRoutes(h, s.desired, s.complete)
			if err != nil {
				t.Fatal(err)
			}
			if got := (counts{a, u, r}); got != s.want {
				t.Errorf("counts = %+v, want %+v", got, s.want)
			}
			have := routesByDst(t, h)
			for _, d := range s.present {
				if _, ok := have[d]; !ok {
					t.Errorf("route %s missing", d)
				}
			}
			for _, d := range s.absent {
				if _, ok := have[d]; ok {
					t.Errorf("route %s still present", d)
				}
			}
			for _, d := range s.desired {
				if d.Protocol != 0 || d.Table != 0 {
					t.Errorf("SyncRoutes changed the caller's route %s: protocol %d, table %d", d.Dst, d.Protocol, d.Table)
				}
				got := have[d.Dst.String()]
				if got.Protocol != backend.RouteProtocol || !got.Gw.Equal(d.Gw) {
					t.Errorf("route %s: protocol %d gw %s, want %d %s", d.Dst, got.Protocol, got.Gw, backend.RouteProtocol, d.Gw)
				}
			}
		})
	}

	t.Run("foreign route is not overwritten", func(t *testing.T) {
		clash := netlink.Route{Dst: ipnet("10.244.9.0/24"), Gw: ip("198.18.0.5"), LinkIndex: idx}
		a, _, _, err := backend.SyncRoutes(h, []netlink.Route{clash}, true)
		if !errors.Is(err, unix.EEXIST) || a != 0 {
			t.Fatalf("SyncRoutes over a foreign route: added %d, err %v; want EEXIST", a, err)
		}
		got := routesByDst(t, h)["10.244.9.0/24"]
		if got.Protocol != unix.RTPROT_STATIC || !got.Gw.Equal(foreign.Gw) {
			t.Fatalf("foreign route changed: %v", got)
		}
	})
}

func TestDirectLink(t *testing.T) {
	netnstest.SkipUnlessRoot(t)
	ns := netnstest.NewNS(t, "wdr")
	h := ns.Netlink(t)
	la := linkPair(t, h, "und0", "und1", "198.18.0.1/24", "2001:2::1/64")
	via := netlink.Route{Dst: ipnet("198.19.0.0/24"), Gw: ip("198.18.0.254"), LinkIndex: la.Attrs().Index}
	if err := h.RouteAdd(&via); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr string
		want bool
	}{
		{"198.18.0.2", true},
		{"2001:2::2", true},
		{"198.19.0.5", false},  // behind a gateway
		{"203.0.113.1", false}, // no route at all
		{"2001:2:1::1", false}, // no route at all
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			idx, err := backend.DirectLink(h, netip.MustParseAddr(tt.addr))
			if err != nil {
				t.Fatal(err)
			}
			if (idx > 0) != tt.want || (idx == la.Attrs().Index) != tt.want {
				t.Errorf("DirectLink(%s) = %d, want link %d: %t", tt.addr, idx, la.Attrs().Index, tt.want)
			}
		})
	}
}

func TestUnderlayLink(t *testing.T) {
	netnstest.SkipUnlessRoot(t)
	ns := netnstest.NewNS(t, "wul")
	h := ns.Netlink(t)
	und0 := linkPair(t, h, "und0", "und1", "198.18.0.1/24", "2001:2::1/64").Attrs().Index
	und1, err := h.LinkByName("und1")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		iface   string
		ip      string
		want    int // link index, unless wantErr
		wantErr string
	}{
		{"by name", "und1", "", und1.Attrs().Index, ""},
		{"by IPv4", "", "198.18.0.1", und0, ""},
		{"by IPv6", "", "2001:2::1", und0, ""},
		{"name wins", "und1", "198.18.0.1", und1.Attrs().Index, ""},
		{"no such name", "nope0", "", 0, "find underlay interface nope0"},
		{"no link holds the IP", "", "198.18.0.9", 0, "no interface has public IP 198.18.0.9"},
		{"nothing configured", "", "", 0, "neither its name nor the public IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ip netip.Addr
			if tt.ip != "" {
				ip = netip.MustParseAddr(tt.ip)
			}
			l, err := backend.UnderlayLink(h, tt.iface, ip)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if l.Attrs().Index != tt.want {
				t.Errorf("link %s (#%d), want #%d", l.Attrs().Name, l.Attrs().Index, tt.want)
			}
		})
	}
}

func TestSyncAddrs(t *testing.T) {
	netnstest.SkipUnlessRoot(t)
	ns := netnstest.NewNS(t, "wsa")
	h := ns.Netlink(t)
	la := linkPair(t, h, "dev0", "dev1", "10.244.1.5/24")
	pfx := netip.MustParsePrefix
	addrs := func() []string {
		t.Helper()
		list, err := backend.AddrList(h, la, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range list {
			if !a.IP.IsLinkLocalUnicast() {
				out = append(out, a.IPNet.String())
			}
		}
		slices.Sort(out)
		return out
	}
	want := []netip.Prefix{pfx("10.244.1.0/32"), pfx("fd10:244:0:1::/128")}
	steps := []struct {
		name           string
		removeStale    bool
		added, removed int
		have           []string
	}{
		{"add, keep stale", false, 2, 0, []string{"10.244.1.0/32", "10.244.1.5/24", "fd10:244:0:1::/128"}},
		{"remove stale", true, 0, 1, []string{"10.244.1.0/32", "fd10:244:0:1::/128"}},
		{"idempotent", true, 0, 0, []string{"10.244.1.0/32", "fd10:244:0:1::/128"}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			added, removed, err := backend.SyncAddrs(h, la, want, s.removeStale)
			if err != nil {
				t.Fatal(err)
			}
			if len(added) != s.added || len(removed) != s.removed {
				t.Errorf("added %v, removed %v; want %d added, %d removed", added, removed, s.added, s.removed)
			}
			if diff := cmp.Diff(s.have, addrs()); diff != "" {
				t.Errorf("addresses (-want +got):\n%s", diff)
			}
		})
	}
}
