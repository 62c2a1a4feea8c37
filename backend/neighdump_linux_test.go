// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package backend_test

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/e2e/netnstest"
)

// neighRecord is what the VXLAN backend compares of an entry.
type neighRecord struct {
	Family, Link int
	IP           string
	MAC          string
	Permanent    bool
}

func recordOf(family, link int, ip netip.Addr, mac net.HardwareAddr, state int) neighRecord {
	s := ""
	if ip.IsValid() {
		s = ip.String()
	}
	return neighRecord{family, link, s, mac.String(), state&netlink.NUD_PERMANENT != 0}
}

// TestNeighDumper compares the streaming dump with the netlink package's
// NeighList over tables large enough to span many kernel messages: IPv4
// and IPv6 neighbours on two links and FDB entries with IPv4 and IPv6
// destinations, filtered by link and family as the VXLAN backend asks.
func TestNeighDumper(t *testing.T) {
	netnstest.SkipUnlessRoot(t)
	ns := netnstest.NewNS(t, "wnd")
	h := ns.Netlink(t)
	la := linkPair(t, h, "und0", "und1", "198.18.0.1/15", "2001:2::1/64")
	vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vx0"}, VxlanId: 1, Port: 4789, SrcAddr: ip("198.18.0.1")}
	if err := h.LinkAdd(vx); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(vx); err != nil {
		t.Fatal(err)
	}
	// A VXLAN device over IPv6 for FDB entries with IPv6 destinations.
	vx6 := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vx6"}, VxlanId: 2, Port: 4790, SrcAddr: ip("2001:2::1")}
	if err := h.LinkAdd(vx6); err != nil {
		t.Fatal(err)
	}
	vxIdx, vx6Idx, undIdx := vx.Attrs().Index, vx6.Attrs().Index, la.Attrs().Index
	const n = 700 // a kernel message holds a few dozen entries
	for i := range n {
		mac := net.HardwareAddr{0x02, 0x42, 0, 0, byte(i >> 8), byte(i)}
		v4 := netip.AddrFrom4([4]byte{10, 244, byte(i >> 8), byte(i)})
		v6 := netip.MustParseAddr(fmt.Sprintf("fd10:244::%x", i+1))
		dst := netip.AddrFrom4([4]byte{198, 18, byte(1 + i>>8), byte(i)})
		dst6 := netip.MustParseAddr(fmt.Sprintf("2001:2::%x", i+0x100))
		for _, ne := range []*netlink.Neigh{
			{LinkIndex: vxIdx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: v4.AsSlice(), HardwareAddr: mac},
			{LinkIndex: vxIdx, Family: netlink.FAMILY_V6, State: netlink.NUD_PERMANENT, IP: v6.AsSlice(), HardwareAddr: mac},
			{LinkIndex: vxIdx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT, IP: dst.AsSlice(), HardwareAddr: mac},
			{LinkIndex: vx6Idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT, IP: dst6.AsSlice(), HardwareAddr: mac},
		} {
			if err := h.NeighSet(ne); err != nil {
				t.Fatalf("add %+v: %v", ne, err)
			}
		}
		if i%10 == 0 { // some on the other link, some not permanent
			state := netlink.NUD_PERMANENT
			if i%20 == 0 {
				state = netlink.NUD_STALE
			}
			ne := &netlink.Neigh{LinkIndex: undIdx, Family: netlink.FAMILY_V4, State: state, IP: netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}).AsSlice(), HardwareAddr: mac}
			if err := h.NeighSet(ne); err != nil {
				t.Fatalf("add %+v: %v", ne, err)
			}
		}
	}
	var d *backend.NeighDumper
	if err := ns.Do(func() (err error) { d, err = backend.NewNeighDumper(); return err }); err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	for _, tc := range []struct {
		name         string
		link, family int
		min          int
	}{
		{"IPv4 on the VXLAN device", vxIdx, netlink.FAMILY_V4, n},
		{"IPv6 on the VXLAN device", vxIdx, netlink.FAMILY_V6, n},
		{"FDB of the VXLAN device", vxIdx, unix.AF_BRIDGE, n},
		{"FDB of the IPv6 VXLAN device", vx6Idx, unix.AF_BRIDGE, n},
		{"FDB of every device", 0, unix.AF_BRIDGE, 2 * n},
		{"IPv4 on every link", 0, netlink.FAMILY_V4, n + n/10},
		{"both families on the VXLAN device", vxIdx, netlink.FAMILY_ALL, 2 * n},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want []neighRecord
			fams := []int{tc.family}
			if tc.family == netlink.FAMILY_ALL {
				fams = []int{netlink.FAMILY_V4, netlink.FAMILY_V6}
			}
			for _, fam := range fams {
				list, err := backend.NeighList(h, tc.link, fam)
				if err != nil {
					t.Fatal(err)
				}
				for _, ne := range list {
					a, _ := netip.AddrFromSlice(ne.IP)
					want = append(want, recordOf(ne.Family, ne.LinkIndex, a.Unmap(), ne.HardwareAddr, ne.State))
				}
			}
			var got []neighRecord
			resets := 0
			err := d.Each(tc.link, tc.family, func() { resets++; got = got[:0] }, func(e *backend.NeighEntry) {
				if tc.family == netlink.FAMILY_ALL && e.Family != netlink.FAMILY_V4 && e.Family != netlink.FAMILY_V6 {
					return
				}
				got = append(got, recordOf(e.Family, e.LinkIndex, e.IP, net.HardwareAddr(slices.Clone(e.MAC)), int(e.State)))
			})
			if err != nil {
				t.Fatal(err)
			}
			if resets < 1 {
				t.Errorf("reset called %d times, want at least once", resets)
			}
			if len(got) < tc.min {
				t.Errorf("%d entries, want at least %d", len(got), tc.min)
			}
			less := func(a, b neighRecord) int {
				return cmpRecords(a, b)
			}
			slices.SortFunc(want, less)
			slices.SortFunc(got, less)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("streaming dump differs from NeighList (-NeighList +Each):\n%s", diff)
			}
		})
	}

	d.Close()
	if err := d.Each(vxIdx, netlink.FAMILY_V4, func() {}, func(*backend.NeighEntry) {}); err == nil {
		t.Error("a closed dumper dumped")
	}
}

func cmpRecords(a, b neighRecord) int {
	if c := a.Family - b.Family; c != 0 {
		return c
	}
	if c := a.Link - b.Link; c != 0 {
		return c
	}
	if a.IP != b.IP {
		if a.IP < b.IP {
			return -1
		}
		return 1
	}
	if a.MAC != b.MAC {
		if a.MAC < b.MAC {
			return -1
		}
		return 1
	}
	return 0
}
