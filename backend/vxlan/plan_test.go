// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package vxlan

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/subnet"
)

const (
	macA = "02:00:00:00:00:0a"
	macB = "02:00:00:00:00:0b"
)

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }

// planView is a plan rendered as sorted strings for comparison.
type planView struct {
	Addrs, Neighs, FDB, Routes []string
	Problems                   map[string]string
	Warnings                   int
}

func view(p plan) planView {
	v := planView{Problems: p.problems, Warnings: len(p.warnings)}
	for _, a := range p.addrs {
		v.Addrs = append(v.Addrs, a.String())
	}
	for ip, mac := range p.neighs {
		v.Neighs = append(v.Neighs, ip.String()+" "+mac)
	}
	for mac, dst := range p.fdb {
		v.FDB = append(v.FDB, mac+" "+dst.String())
	}
	for _, r := range p.routes {
		v.Routes = append(v.Routes, fmt.Sprintf("%s via %s dev %d onlink=%t", r.Dst, r.Gw, r.LinkIndex, r.Flags&onlinkFlag != 0))
	}
	for _, l := range [][]string{v.Addrs, v.Neighs, v.FDB, v.Routes} {
		sort.Strings(l)
	}
	if len(v.Problems) == 0 {
		v.Problems = nil
	}
	return v
}

func TestBuildPlan(t *testing.T) {
	const vx, eth = 10, 2
	local := backend.Local{Subnet: mustPrefix("10.244.1.0/24"), IPv6Subnet: mustPrefix("fd10:244:0:1::/64")}
	peerA := backend.Peer{
		Name: "a", Subnet: mustPrefix("10.244.2.0/24"), IPv6Subnet: mustPrefix("fd10:244:0:2::/64"),
		PublicIP: mustAddr("198.18.0.2"), PublicIPv6: mustAddr("2001:2::2"),
		Data: subnet.BackendData{VTEPMAC: "02:00:00:00:00:0A"},
	}
	peerB := backend.Peer{
		Name: "b", Subnet: mustPrefix("10.244.3.0/24"),
		PublicIP: mustAddr("198.18.1.3"),
		Data:     subnet.BackendData{VTEPMAC: macB},
	}
	// Peer a is on our segment (both families), b is not.
	direct := func(a netip.Addr) (int, error) {
		switch a.String() {
		case "198.18.0.2", "2001:2::2":
			return eth, nil
		}
		return 0, nil
	}
	with := func(p backend.Peer, f func(*backend.Peer)) backend.Peer { f(&p); return p }
	tunnelA := []string{
		"10.244.2.0/24 via 10.244.2.0 dev 10 onlink=true",
		"fd10:244:0:2::/64 via fd10:244:0:2:: dev 10 onlink=true",
	}
	tunnelB := "10.244.3.0/24 via 10.244.3.0 dev 10 onlink=true"
	addrs := []string{"10.244.1.0/32", "fd10:244:0:1::/128"}

	tests := []struct {
		name   string
		d      backend.Desired
		in     planInput
		want   planView
		public netip.Addr
	}{
		{
			name: "tunnel both families",
			d:    backend.Desired{Local: local, Peers: []backend.Peer{peerB, peerA}},
			want: planView{
				Addrs:  addrs,
				Neighs: []string{"10.244.2.0 " + macA, "10.244.3.0 " + macB, "fd10:244:0:2:: " + macA},
				FDB:    []string{macA + " 198.18.0.2", macB + " 198.18.1.3"},
				Routes: []string{tunnelA[0], tunnelB, tunnelA[1]},
			},
		},
		{
			name: "direct routing: same segment direct, other tunnel",
			d:    backend.Desired{Local: local, Peers: []backend.Peer{peerA, peerB}},
			in:   planInput{directRouting: true},
			want: planView{
				Addrs:  addrs,
				Neighs: []string{"10.244.3.0 " + macB},
				FDB:    []string{macB + " 198.18.1.3"},
				Routes: []string{
					"10.244.2.0/24 via 198.18.0.2 dev 2 onlink=false",
					tunnelB,
					"fd10:244:0:2::/64 via 2001:2::2 dev 2 onlink=false",
				},
			},
		},
		{
			name: "direct routing: IPv6 subnet without public IPv6 uses the tunnel",
			d: backend.Desired{Local: local, Peers: []backend.Peer{
				with(peerA, func(p *backend.Peer) { p.PublicIPv6 = netip.Addr{} }),
			}},
			in: planInput{directRouting: true},
			want: planView{
				Addrs:  addrs,
				Neighs: []string{"fd10:244:0:2:: " + macA},
				FDB:    []string{macA + " 198.18.0.2"},
				Routes: []string{
					"10.244.2.0/24 via 198.18.0.2 dev 2 onlink=false",
					tunnelA[1],
				},
			},
		},
		{
			name: "direct routing: lookup error falls back to the tunnel",
			d:    backend.Desired{Local: local, Peers: []backend.Peer{with(peerA, func(p *backend.Peer) { p.IPv6Subnet = netip.Prefix{} })}},
			in: planInput{directRouting: true, direct: func(netip.Addr) (int, error) {
				return 0, errors.New("boom")
			}},
			want: planView{
				Addrs:    addrs,
				Neighs:   []string{"10.244.2.0 " + macA},
				FDB:      []string{macA + " 198.18.0.2"},
				Routes:   tunnelA[:1],
				Warnings: 1,
			},
		},
		{
			name: "problems",
			d: backend.Desired{Local: local, Peers: []backend.Peer{
				with(peerB, func(p *backend.Peer) { p.Name = "nomac"; p.Data.VTEPMAC = "" }),
				with(peerB, func(p *backend.Peer) {
					p.Name = "badmac"
					p.Subnet = mustPrefix("10.244.4.0/24")
					p.Data.VTEPMAC = "01:00:5e:00:00:01"
				}),
				with(peerB, func(p *backend.Peer) { p.Name = "mine"; p.Subnet = mustPrefix("10.244.1.128/25") }),
				with(peerB, func(p *backend.Peer) { p.Name = "nosubnet"; p.Subnet = netip.Prefix{} }),
				with(peerB, func(p *backend.Peer) {
					p.Name = "v6only"
					p.Subnet = mustPrefix("10.244.5.0/24")
					p.PublicIP = mustAddr("2001:2::5")
					p.Data.VTEPMAC = "02:00:00:00:00:05"
				}),
			}},
			want: planView{
				Addrs: addrs,
				Problems: map[string]string{
					"nomac":    "no VTEP MAC",
					"badmac":   `VTEP MAC "01:00:5e:00:00:01" is not a unicast Ethernet address`,
					"mine":     "subnet 10.244.1.128/25 overlaps 10.244.1.0/24 of this node",
					"nosubnet": "no subnet",
					"v6only":   "no public IPv4 address for the tunnel (peer has 2001:2::5)",
				},
			},
		},
		{
			name: "older claim wins an overlap, duplicate MAC reported",
			d: backend.Desired{Local: backend.Local{Subnet: local.Subnet}, Peers: []backend.Peer{
				with(peerB, func(p *backend.Peer) { p.Name = "new"; p.Epoch = 9; p.Data.VTEPMAC = macA }),
				with(peerB, func(p *backend.Peer) { p.Name = "old"; p.Epoch = 3 }),
				with(peerB, func(p *backend.Peer) { p.Name = "twin"; p.Epoch = 4; p.Subnet = mustPrefix("10.244.6.0/24") }),
			}},
			want: planView{
				Addrs:  addrs[:1],
				Neighs: []string{"10.244.3.0 " + macB},
				FDB:    []string{macB + " 198.18.1.3"},
				Routes: []string{tunnelB},
				Problems: map[string]string{
					"new":  "subnet 10.244.3.0/24 overlaps 10.244.3.0/24 of old",
					"twin": "VTEP MAC " + macB + " is also old's",
				},
			},
		},
		{
			name:   "IPv6 underlay",
			public: mustAddr("2001:2::1"),
			d: backend.Desired{Local: local, Peers: []backend.Peer{
				with(peerA, func(p *backend.Peer) { p.Subnet = netip.Prefix{} }),
			}},
			want: planView{
				Addrs:  addrs,
				Neighs: []string{"fd10:244:0:2:: " + macA},
				FDB:    []string{macA + " 2001:2::2"},
				Routes: tunnelA[1:],
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			in.vxIndex = vx
			in.publicIP = mustAddr("198.18.0.1")
			if tt.public.IsValid() {
				in.publicIP = tt.public
			}
			if in.direct == nil {
				in.direct = direct
			}
			if diff := cmp.Diff(tt.want, view(buildPlan(tt.d, in))); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDiffNeighs(t *testing.T) {
	ip1, ip2, ip3 := mustAddr("10.244.2.0"), mustAddr("10.244.3.0"), mustAddr("10.244.4.0")
	tests := []struct {
		name    string
		current []neighEntry
		want    map[netip.Addr]string
		diff    neighDiff
	}{
		{"empty", nil, nil, neighDiff{}},
		{"add", nil, map[netip.Addr]string{ip1: macA},
			neighDiff{add: []neighEntry{{ip1, macA, true}}}},
		{"correct left alone", []neighEntry{{ip1, macA, true}}, map[netip.Addr]string{ip1: macA}, neighDiff{}},
		{"wrong MAC updated", []neighEntry{{ip1, macB, true}}, map[netip.Addr]string{ip1: macA},
			neighDiff{update: []neighEntry{{ip1, macA, true}}}},
		{"not permanent updated", []neighEntry{{ip1, macA, false}}, map[netip.Addr]string{ip1: macA},
			neighDiff{update: []neighEntry{{ip1, macA, true}}}},
		{"stale permanent removed, kernel's own ignored",
			[]neighEntry{{ip1, macA, true}, {ip2, macB, true}, {ip3, "", false}}, map[netip.Addr]string{ip1: macA},
			neighDiff{stale: []neighEntry{{ip2, macB, true}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := diffNeighs(tt.current, tt.want)
			if diff := cmp.Diff(tt.diff, got, cmp.AllowUnexported(neighDiff{}, neighEntry{}), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestDiffFDB(t *testing.T) {
	d1, d2, d3 := mustAddr("198.18.0.2"), mustAddr("198.18.0.3"), mustAddr("198.18.0.4")
	tests := []struct {
		name    string
		current []fdbEntry
		want    map[string]netip.Addr
		diff    fdbDiff
	}{
		{"empty", nil, nil, fdbDiff{}},
		{"add", nil, map[string]netip.Addr{macA: d1}, fdbDiff{add: []fdbEntry{{macA, d1, true}}}},
		{"correct left alone", []fdbEntry{{macA, d1, true}}, map[string]netip.Addr{macA: d1}, fdbDiff{}},
		{"moved peer replaced in place", []fdbEntry{{macA, d2, true}}, map[string]netip.Addr{macA: d1},
			fdbDiff{update: []fdbEntry{{macA, d1, true}}}},
		{"not permanent replaced", []fdbEntry{{macA, d1, false}}, map[string]netip.Addr{macA: d1},
			fdbDiff{update: []fdbEntry{{macA, d1, true}}}},
		{"extra destination removed", []fdbEntry{{macA, d2, true}, {macA, d1, true}}, map[string]netip.Addr{macA: d1},
			fdbDiff{wrong: []fdbEntry{{macA, d2, true}}}},
		{"several wrong destinations", []fdbEntry{{macA, d2, true}, {macA, d3, true}}, map[string]netip.Addr{macA: d1},
			fdbDiff{wrong: []fdbEntry{{macA, d2, true}, {macA, d3, true}}, add: []fdbEntry{{macA, d1, true}}}},
		{"stale MAC", []fdbEntry{{macA, d1, true}, {macB, d2, true}, {"00:00:00:00:00:00", d3, true}}, map[string]netip.Addr{macA: d1},
			fdbDiff{stale: []fdbEntry{{macB, d2, true}, {"00:00:00:00:00:00", d3, true}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := diffFDB(tt.current, tt.want)
			if diff := cmp.Diff(tt.diff, got, cmp.AllowUnexported(fdbDiff{}, fdbEntry{}), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestDiffersStream checks what the streaming differs add to the list
// diffs: an interrupted dump is forgotten at reset, an entry the device
// has in the wanted state costs no allocation (the resync sees thousands),
// and a MAC of another length is stale with its text kept.
func TestDiffersStream(t *testing.T) {
	ip1, ip2 := mustAddr("10.244.2.0"), mustAddr("10.244.3.0")
	d1, d2 := mustAddr("198.18.0.2"), mustAddr("198.18.0.3")
	a, b := macBytes(macA), macBytes(macB)

	nd := newNeighDiffer(map[netip.Addr]string{ip1: macA})
	nd.see(ip1, b, true)
	nd.see(ip2, b, true)
	nd.reset() // the dump was interrupted; the next attempt shows only ip1, as wanted
	nd.see(ip1, a, true)
	if got := nd.diff(); len(got.add)+len(got.update)+len(got.stale) != 0 {
		t.Errorf("neighbours after reset: %+v, want nothing to do", got)
	}
	if n := testing.AllocsPerRun(100, func() { nd.see(ip1, a, true) }); n != 0 {
		t.Errorf("seeing a wanted neighbour allocates %.0f times", n)
	}

	fd := newFDBDiffer(map[string]netip.Addr{macA: d1})
	fd.see(a, d2, true)
	fd.see(b, d2, true)
	fd.reset()
	fd.see(a, d1, true)
	if got := fd.diff(); len(got.add)+len(got.update)+len(got.wrong)+len(got.stale) != 0 {
		t.Errorf("FDB after reset: %+v, want nothing to do", got)
	}
	fd.reset()
	if n := testing.AllocsPerRun(100, func() { fd.seen[0].good = false; fd.see(a, d1, true) }); n != 0 {
		t.Errorf("seeing a wanted FDB entry allocates %.0f times", n)
	}
	long := []byte{0x80, 0, 0, 0x48, 0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x02, 0, 0x55, 0, 0, 0x7a, 0x33, 0x12}
	fd.reset()
	fd.see(long, d2, true)
	want := fdbDiff{add: []fdbEntry{{macA, d1, true}}, stale: []fdbEntry{{net.HardwareAddr(long).String(), d2, true}}}
	if diff := cmp.Diff(want, fd.diff(), cmp.AllowUnexported(fdbDiff{}, fdbEntry{}), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("20-byte MAC (-want +got):\n%s", diff)
	}
}

func TestIncompatibility(t *testing.T) {
	spec := deviceSpec{name: "weft.1", vni: 1, port: 8472, local: mustAddr("198.18.0.1"), parentIndex: 2}
	good := func() *netlink.Vxlan {
		return &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "weft.1", MTU: 1400}, VxlanId: 1, Port: 8472,
			SrcAddr: net.ParseIP("198.18.0.1"), VtepDevIndex: 2}
	}
	tests := []struct {
		name string
		mod  func(*netlink.Vxlan)
		want string
	}{
		{"compatible (MTU does not matter)", func(*netlink.Vxlan) {}, ""},
		{"vni", func(v *netlink.Vxlan) { v.VxlanId = 7 }, "VNI is 7, want 1"},
		{"port", func(v *netlink.Vxlan) { v.Port = 4789 }, "UDP port is 4789, want 8472"},
		{"local", func(v *netlink.Vxlan) { v.SrcAddr = nil }, "local address is none, want 198.18.0.1"},
		{"parent", func(v *netlink.Vxlan) { v.VtepDevIndex = 3 }, "parent link index is 3, want 2"},
		{"learning", func(v *netlink.Vxlan) { v.Learning = true }, "learning is on, want off"},
		{"external", func(v *netlink.Vxlan) { v.FlowBased = true }, "device is in external (flow-based) mode"},
		{"group", func(v *netlink.Vxlan) { v.Group = net.ParseIP("239.1.1.1") }, "device has multicast group/remote 239.1.1.1, want none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := good()
			tt.mod(v)
			if got := incompatibility(v, spec); got != tt.want {
				t.Errorf("incompatibility = %q, want %q", got, tt.want)
			}
		})
	}
	if got := incompatibility(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "weft.1"}}, spec); !strings.Contains(got, "not vxlan") {
		t.Errorf("bridge: %q", got)
	}
}

func TestConfig(t *testing.T) {
	pub := mustAddr("198.18.0.1")
	tests := []struct {
		name    string
		cfg     Config
		want    Config
		wantErr string
	}{
		{"defaults", Config{PublicIP: pub}, Config{Name: "weft.1", VNI: 1, Port: 8472, PublicIP: pub}, ""},
		{"explicit", Config{Name: "vx0", VNI: 42, Port: 4789, MTU: 1400, PublicIP: pub},
			Config{Name: "vx0", VNI: 42, Port: 4789, MTU: 1400, PublicIP: pub}, ""},
		{"name from VNI", Config{VNI: 7, PublicIP: pub}, Config{Name: "weft.7", VNI: 7, Port: 8472, PublicIP: pub}, ""},
		{"no public IP", Config{}, Config{}, "public IP"},
		{"bad VNI", Config{VNI: 1 << 24, PublicIP: pub}, Config{}, "VNI 16777216 out of range"},
		{"bad port", Config{Port: 70000, PublicIP: pub}, Config{}, "port 70000 out of range"},
		{"bad MTU", Config{MTU: 100, PublicIP: pub}, Config{}, "MTU 100 out of range"},
		{"long name", Config{Name: "weft-much-too-long", PublicIP: pub}, Config{}, "device name: interface name \"weft-much-too-long\" is longer than 15 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.cfg.withDefaults()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got.Log = nil
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := New(Config{}); err == nil {
		t.Error("New accepted a config without public IP")
	}
}

func TestMACPersistence(t *testing.T) {
	dir := t.TempDir()
	if mac, err := loadMAC(dir, "weft.1"); mac != nil || err != nil {
		t.Fatalf("load from empty dir: %v, %v", mac, err)
	}
	mac := randomMAC()
	if mac[0]&1 != 0 || mac[0]&2 == 0 {
		t.Fatalf("random MAC %s is not locally administered unicast", mac)
	}
	if err := saveMAC(dir, "weft.1", mac); err != nil {
		t.Fatal(err)
	}
	got, err := loadMAC(dir, "weft.1")
	if err != nil || got.String() != mac.String() {
		t.Fatalf("load = %v, %v; want %s", got, err, mac)
	}
	if _, err := os.Stat(filepath.Join(dir, "vtep-mac-weft.1")); err != nil {
		t.Fatalf("state file name: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vtep-mac-weft.2"), []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadMAC(dir, "weft.2"); err == nil {
		t.Error("garbage MAC file accepted")
	}
	if mac, err := loadMAC("", "weft.1"); mac != nil || err != nil {
		t.Errorf("no state dir: %v, %v", mac, err)
	}
}

// TestPrefixSet compares the set's overlap lookup with comparing against
// every member, on mixed lengths and both families.
func TestPrefixSet(t *testing.T) {
	members := []string{"10.244.1.0/24", "10.244.2.128/25", "10.245.0.0/16", "fd10:244::/64", "fd10:244:0:100::/56", "10.244.3.7/32"}
	queries := []string{
		"10.244.1.0/24", "10.244.1.128/25", "10.244.0.0/16", "10.244.2.0/24", "10.244.2.0/25", "10.245.9.0/24",
		"10.246.0.0/24", "10.0.0.0/8", "10.244.3.0/24", "10.244.4.0/24", "fd10:244::/48", "fd10:244:0:1::/64",
		"fd10:244:0:1ff::/64", "fd10:244:0:200::/64", "::/0", "0.0.0.0/0",
	}
	var s prefixSet
	var all []netip.Prefix
	for _, m := range members {
		p := netip.MustParsePrefix(m).Masked()
		s.add(p)
		all = append(all, p)
	}
	for _, q := range queries {
		p := netip.MustParsePrefix(q).Masked()
		want := false
		for _, m := range all {
			want = want || m.Overlaps(p)
		}
		got := s.overlapping(p)
		if got.IsValid() != want || (got.IsValid() && !got.Overlaps(p)) {
			t.Errorf("overlapping(%s) = %v, want an overlapping member: %t", p, got, want)
		}
	}
}

// TestNormMAC: the fast path for MACs already in canonical form agrees
// with parsing for every form, and refuses what parsing refuses.
func TestNormMAC(t *testing.T) {
	for _, s := range []string{
		"02:42:ac:11:00:02", "02:42:AC:11:00:02", "02-42-ac-11-00-02", "0242.ac11.0002",
		"03:42:ac:11:00:02", "01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "0e:00:00:00:00:00", "0f:00:00:00:00:00",
		"02:42:ac:11:00", "02:42:ac:11:00:0g", "02:42:ac:11:00:02:03", "02:42:ac:11:00-02", "", "x",
		"00:00:5e:00:53:01:00:00", "02:42:ac:11:00:2",
	} {
		got, err := normMAC(s)
		mac, perr := net.ParseMAC(s)
		wantOK := perr == nil && len(mac) == 6 && mac[0]&1 == 0
		switch {
		case wantOK && (err != nil || got != mac.String()):
			t.Errorf("normMAC(%q) = %q, %v; want %q", s, got, err, mac.String())
		case !wantOK && err == nil:
			t.Errorf("normMAC(%q) = %q, want an error", s, got)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = normMAC("02:42:ac:11:00:02") }); n != 0 {
		t.Errorf("normMAC of a canonical MAC allocates %.0f times", n)
	}
}
