// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package backend

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/weftnet/weft/subnet"
)

func TestCheckPeers(t *testing.T) {
	pfx := netip.MustParsePrefix
	addr := netip.MustParseAddr
	key := func(b byte) string {
		k := make([]byte, 32)
		for i := range k {
			k[i] = b
		}
		return base64.StdEncoding.EncodeToString(k)
	}
	in := CheckInput{
		Network: &subnet.Config{
			Network: pfx("10.244.0.0/16"), SubnetLen: 24,
			IPv6Network: pfx("fd10:244::/56"), IPv6SubnetLen: 64,
		},
		Local:            Local{Subnet: pfx("10.244.0.0/24"), IPv6Subnet: pfx("fd10:244::/64")},
		SelfIPs:          []netip.Addr{addr("198.18.0.10"), addr("2001:2::10")},
		SelfWireGuardKey: key(9),
	}
	// good is a valid VXLAN peer with subnet 10.244.n.0/24 at epoch n.
	good := func(name string, n int) Peer {
		return Peer{
			Name:     name,
			Subnet:   netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(n), 0}), 24),
			PublicIP: netip.AddrFrom4([4]byte{198, 18, 0, byte(n)}),
			Data:     subnet.BackendData{VTEPMAC: "02:00:00:00:00:" + strings.Repeat(string("0123456789abcdef"[n%16]), 2)},
			Epoch:    int64(n),
		}
	}
	with := func(p Peer, f func(*Peer)) Peer { f(&p); return p }
	wg := func(p Peer, k string) Peer {
		p.Data = subnet.BackendData{WireGuardKey: k, WireGuardPort: 51820}
		return p
	}

	tests := []struct {
		name  string
		in    *CheckInput
		peers []Peer
		// reject maps a rejected entry's index to a part of its reason.
		reject map[int]string
	}{
		{name: "valid peers", peers: []Peer{good("a", 1), good("b", 2), with(good("c", 3), func(p *Peer) {
			p.IPv6Subnet = pfx("fd10:244:0:3::/64")
			p.PublicIPv6 = addr("2001:2::3")
		})}},
		{name: "IPv6-only peer", peers: []Peer{{Name: "a", IPv6Subnet: pfx("fd10:244:0:5::/64"), PublicIP: addr("2001:2::5"), Epoch: 1}}},
		{name: "no subnet", peers: []Peer{with(good("a", 1), func(p *Peer) { p.Subnet = netip.Prefix{} })}, reject: map[int]string{0: "no subnet"}},
		{name: "0.0.0.0/1", peers: []Peer{with(good("a", 1), func(p *Peer) { p.Subnet = pfx("0.0.0.0/1") })}, reject: map[int]string{0: "0.0.0.0/1 is not a /24 of the network 10.244.0.0/16"}},
		{name: "128.0.0.0/1", peers: []Peer{with(good("a", 1), func(p *Peer) { p.Subnet = pfx("128.0.0.0/1") })}, reject: map[int]string{0: "128.0.0.0/1 is not a /24"}},
		{name: "::/1", peers: []Peer{with(good("a", 1), func(p *Peer) { p.IPv6Subnet = pfx("::/1") })}, reject: map[int]string{0: "::/1 is not a /64 of the network fd10:244::/56"}},
		{name: "the whole network", peers: []Peer{with(good("a", 1), func(p *Peer) { p.Subnet = pfx("10.244.0.0/16") })}, reject: map[int]string{0: "not a /24"}},
		{name: "a /32 of an etcd address outside the network", peers: []Peer{with(good("a", 1), func(p *Peer) { p.Subnet = pfx("198.18.0.2/32") })}, reject: map[int]string{0: "198.18.0.2/32 is not a /24"}},
		{name: "a /24 outside the network", peers: []Peer{with(good("a", 1), func(p *Peer) { p.Subnet = pfx("10.245.1.0/24") })}, reject: map[int]string{0: "not a /24 of the network"}},
		{name: "unmasked subnet", peers: []Peer{with(good("a", 1), func(p *Peer) { p.Subnet = pfx("10.244.1.7/24") })}, reject: map[int]string{0: "not a network address"}},
		{name: "IPv6 in the IPv4 field", peers: []Peer{with(good("a", 1), func(p *Peer) { p.Subnet = pfx("fd10:244:0:1::/64") })}, reject: map[int]string{0: "is not IPv4"}},
		{
			name:   "IPv6 subnet in an IPv4-only network",
			in:     &CheckInput{Network: &subnet.Config{Network: pfx("10.244.0.0/16"), SubnetLen: 24}},
			peers:  []Peer{with(good("a", 1), func(p *Peer) { p.IPv6Subnet = pfx("fd10:244:0:1::/64") })},
			reject: map[int]string{0: "the network has no IPv6 part"},
		},
		{name: "no network config", in: &CheckInput{}, peers: []Peer{good("a", 1)}, reject: map[int]string{0: "no network config"}},
		{name: "this node's subnet", peers: []Peer{good("a", 0)}, reject: map[int]string{0: "overlaps 10.244.0.0/24 (this node's subnet)"}},
		{name: "this node's IPv6 subnet", peers: []Peer{with(good("a", 1), func(p *Peer) { p.IPv6Subnet = pfx("fd10:244::/64") })}, reject: map[int]string{0: "this node's subnet"}},
		{
			name:   "after a SubnetLen change to /25 the /25 is served, the old /24 around it is not",
			in:     &CheckInput{Network: &subnet.Config{Network: pfx("10.244.0.0/16"), SubnetLen: 25}},
			peers:  []Peer{with(good("a", 2), func(p *Peer) { p.Subnet = pfx("10.244.1.0/25") }), with(good("b", 1), func(p *Peer) { p.Subnet = pfx("10.244.1.0/24") })},
			reject: map[int]string{1: "10.244.1.0/24 is not a /25"},
		},
		{name: "a /25 inside a peer's /24", peers: []Peer{good("a", 1), with(good("b", 2), func(p *Peer) { p.Subnet = pfx("10.244.1.0/25") })}, reject: map[int]string{1: "not a /24"}},
		{
			name:   "same subnet twice: the older epoch wins, whatever the input order",
			peers:  []Peer{with(good("new", 5), func(p *Peer) { p.Subnet = pfx("10.244.1.0/24") }), with(good("old", 1), func(p *Peer) {})},
			reject: map[int]string{0: "overlaps 10.244.1.0/24 (peer old, epoch 1)"},
		},
		{
			name:   "same subnet, same epoch: the smaller name wins",
			peers:  []Peer{with(good("b", 1), func(p *Peer) { p.Data.VTEPMAC = "02:00:00:00:00:bb" }), good("a", 1)},
			reject: map[int]string{0: "peer a, epoch 1"},
		},
		{
			name: "an older invalid entry takes nothing",
			peers: []Peer{
				with(good("bad", 1), func(p *Peer) { p.PublicIP = addr("127.0.0.1") }),
				with(good("ok", 2), func(p *Peer) { p.Subnet = pfx("10.244.1.0/24") }),
			},
			reject: map[int]string{0: "loopback"},
		},
		{name: "no public IP", peers: []Peer{with(good("a", 1), func(p *Peer) { p.PublicIP = netip.Addr{} })}, reject: map[int]string{0: "no public IP"}},
		{name: "unspecified public IP", peers: []Peer{with(good("a", 1), func(p *Peer) { p.PublicIP = addr("0.0.0.0") })}, reject: map[int]string{0: "unspecified"}},
		{name: "loopback public IP", peers: []Peer{with(good("a", 1), func(p *Peer) { p.PublicIP = addr("::1") })}, reject: map[int]string{0: "loopback"}},
		{name: "link-local public IP", peers: []Peer{with(good("a", 1), func(p *Peer) { p.PublicIP = addr("169.254.1.1") })}, reject: map[int]string{0: "link-local"}},
		{name: "link-local public IPv6", peers: []Peer{with(good("a", 1), func(p *Peer) { p.PublicIPv6 = addr("fe80::1") })}, reject: map[int]string{0: "public IPv6 fe80::1 is a link-local"}},
		{name: "multicast public IP", peers: []Peer{with(good("a", 1), func(p *Peer) { p.PublicIP = addr("224.0.0.1") })}, reject: map[int]string{0: "multicast"}},
		{name: "broadcast public IP", peers: []Peer{with(good("a", 1), func(p *Peer) { p.PublicIP = addr("255.255.255.255") })}, reject: map[int]string{0: "not a unicast"}},
		{name: "this node's public IP", peers: []Peer{with(good("a", 1), func(p *Peer) { p.PublicIP = addr("198.18.0.10") })}, reject: map[int]string{0: "this node's own address"}},
		{name: "this node's public IP, IPv4-mapped", peers: []Peer{with(good("a", 1), func(p *Peer) { p.PublicIP = addr("::ffff:198.18.0.10") })}, reject: map[int]string{0: "this node's own address"}},
		{name: "public IP in the pod network", peers: []Peer{with(good("a", 1), func(p *Peer) { p.PublicIP = addr("10.244.7.1") })}, reject: map[int]string{0: "inside the pod network"}},
		{name: "public IPv6 in the pod network", peers: []Peer{with(good("a", 1), func(p *Peer) { p.PublicIPv6 = addr("fd10:244:0:9::1") })}, reject: map[int]string{0: "inside the pod network"}},
		{name: "IPv4 in the IPv6 public field", peers: []Peer{with(good("a", 1), func(p *Peer) { p.PublicIPv6 = addr("198.18.0.1") })}, reject: map[int]string{0: "is not IPv6"}},
		{name: "multicast MAC", peers: []Peer{with(good("a", 1), func(p *Peer) { p.Data.VTEPMAC = "01:00:5e:00:00:01" })}, reject: map[int]string{0: "not unicast"}},
		{name: "zero MAC", peers: []Peer{with(good("a", 1), func(p *Peer) { p.Data.VTEPMAC = "00:00:00:00:00:00" })}, reject: map[int]string{0: "is zero"}},
		{name: "long MAC", peers: []Peer{with(good("a", 1), func(p *Peer) { p.Data.VTEPMAC = "02:00:00:00:00:00:00:01" })}, reject: map[int]string{0: "not an Ethernet address"}},
		{name: "garbage MAC", peers: []Peer{with(good("a", 1), func(p *Peer) { p.Data.VTEPMAC = "nope" })}, reject: map[int]string{0: "not an Ethernet address"}},
		{
			name:   "duplicate MACs: the older epoch keeps it (case-insensitive)",
			peers:  []Peer{with(good("b", 2), func(p *Peer) { p.Data.VTEPMAC = "02:AA:00:00:00:01" }), with(good("a", 1), func(p *Peer) { p.Data.VTEPMAC = "02:aa:00:00:00:01" })},
			reject: map[int]string{0: "VTEP MAC 02:aa:00:00:00:01 is also peer a's"},
		},
		{name: "own WireGuard key", peers: []Peer{wg(good("a", 1), key(9))}, reject: map[int]string{0: "this node's"}},
		{name: "all-zero WireGuard key", peers: []Peer{wg(good("a", 1), key(0))}, reject: map[int]string{0: "all zero"}},
		{name: "short WireGuard key", peers: []Peer{wg(good("a", 1), base64.StdEncoding.EncodeToString(make([]byte, 31)))}, reject: map[int]string{0: "not 32 bytes"}},
		{name: "WireGuard key not base64", peers: []Peer{wg(good("a", 1), "!!!")}, reject: map[int]string{0: "not 32 bytes of base64"}},
		{name: "WireGuard port out of range", peers: []Peer{with(wg(good("a", 1), key(1)), func(p *Peer) { p.Data.WireGuardPort = 70000 })}, reject: map[int]string{0: "port 70000"}},
		{
			name:   "one WireGuard key for two nodes: the older keeps it",
			peers:  []Peer{wg(good("a", 1), key(1)), wg(good("b", 2), key(1))},
			reject: map[int]string{1: "WireGuard key is also peer a's"},
		},
		{
			name:  "one WireGuard key for two leases of one node",
			peers: []Peer{wg(good("a", 1), key(1)), wg(good("a", 2), key(1))},
		},
		{
			name: "several reasons reported together",
			peers: []Peer{with(good("a", 1), func(p *Peer) {
				p.Subnet = pfx("0.0.0.0/1")
				p.PublicIP = addr("127.0.0.1")
			})},
			reject: map[int]string{0: "0.0.0.0/1 is not a /24 of the network 10.244.0.0/16; public IP 127.0.0.1 is a loopback address"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ci := in
			if tc.in != nil {
				ci = *tc.in
			}
			acc, rej := CheckPeers(ci, tc.peers)
			if len(acc)+len(rej) != len(tc.peers) {
				t.Fatalf("%d accepted + %d rejected, want %d entries", len(acc), len(rej), len(tc.peers))
			}
			var wantAcc []Peer
			got := map[string]string{} // name+subnet: reason
			for _, r := range rej {
				got[r.Peer.Name+" "+r.Peer.Subnet.String()] = r.Reason
			}
			for i, p := range tc.peers {
				k := p.Name + " " + p.Subnet.String()
				want, bad := tc.reject[i]
				switch {
				case bad && !strings.Contains(got[k], want):
					t.Errorf("entry %d (%s): reason %q, want one containing %q", i, k, got[k], want)
				case !bad && got[k] != "":
					t.Errorf("entry %d (%s) rejected: %s", i, k, got[k])
				case !bad:
					wantAcc = append(wantAcc, p)
				}
			}
			if len(acc) != len(wantAcc) {
				t.Fatalf("accepted %v, want %v", acc, wantAcc)
			}
			for i := range acc {
				if acc[i] != wantAcc[i] {
					t.Errorf("accepted[%d] = %+v, want %+v (input order)", i, acc[i], wantAcc[i])
				}
			}
			for _, r := range rej {
				t.Logf("rejected %s: %s", r.Peer.Name, r.Reason)
			}
		})
	}
}

// TestCheckPeersDeterministic: the same entries in any order give the
// same verdicts.
func TestCheckPeersDeterministic(t *testing.T) {
	pfx := netip.MustParsePrefix
	nc := &subnet.Config{Network: pfx("10.244.0.0/16"), SubnetLen: 24}
	peers := []Peer{
		{Name: "c", Subnet: pfx("10.244.1.0/24"), PublicIP: netip.MustParseAddr("198.18.0.3"), Epoch: 7},
		{Name: "b", Subnet: pfx("10.244.1.0/24"), PublicIP: netip.MustParseAddr("198.18.0.2"), Epoch: 7},
		{Name: "a", Subnet: pfx("10.244.1.0/24"), PublicIP: netip.MustParseAddr("198.18.0.1"), Epoch: 9},
		{Name: "d", Subnet: pfx("10.244.2.0/24"), PublicIP: netip.MustParseAddr("198.18.0.4"), Epoch: 1},
	}
	var first []string
	for rot := range peers {
		ps := append(append([]Peer(nil), peers[rot:]...), peers[:rot]...)
		acc, _ := CheckPeers(CheckInput{Network: nc}, ps)
		var names []string
		for _, p := range acc {
			names = append(names, p.Name)
		}
		slices.Sort(names)
		if rot == 0 {
			first = names
			if strings.Join(names, ",") != "b,d" {
				t.Fatalf("accepted %v, want b (older epoch, smaller name) and d", names)
			}
		} else if strings.Join(names, ",") != strings.Join(first, ",") {
			t.Errorf("rotation %d accepted %v, rotation 0 %v", rot, names, first)
		}
	}
}

// BenchmarkCheckPeers measures the check on the reconcile path, at the
// sizes issue 15 names: its cost must grow linearly with the peers (an
// earlier version compared every subnet with every other).
func BenchmarkCheckPeers(b *testing.B) {
	for _, n := range []int{500, 5000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			in := CheckInput{
				Network: &subnet.Config{Network: netip.MustParsePrefix("10.0.0.0/8"), SubnetLen: 24},
				Local:   Local{Subnet: netip.MustParsePrefix("10.0.0.0/24")},
				SelfIPs: []netip.Addr{netip.MustParseAddr("198.19.255.254")},
			}
			peers := make([]Peer, n)
			for i := range peers {
				j := i + 1
				peers[i] = Peer{
					Name:     fmt.Sprintf("node%d", j),
					Subnet:   netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(j >> 8), byte(j), 0}), 24),
					PublicIP: netip.AddrFrom4([4]byte{198, 18 + byte(j>>16), byte(j >> 8), byte(j)}),
					Data:     subnet.BackendData{VTEPMAC: fmt.Sprintf("02:00:00:00:%02x:%02x", byte(j>>8), byte(j))},
					Epoch:    int64(j),
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				acc, rej := CheckPeers(in, peers)
				if len(acc) != n || len(rej) != 0 {
					b.Fatalf("accepted %d, rejected %d (%v), want %d and 0", len(acc), len(rej), rej[:min(1, len(rej))], n)
				}
			}
		})
	}
}
