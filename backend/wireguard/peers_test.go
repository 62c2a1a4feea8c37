// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package wireguard

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/subnet"
)

func mustKey(t *testing.T) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestDesiredPeers(t *testing.T) {
	self, k1, k2, k3 := mustKey(t), mustKey(t), mustKey(t), mustKey(t)
	local := backend.Local{Subnet: pfx("10.244.1.0/24"), IPv6Subnet: pfx("fd10:244:0:1::/64")}
	peer := func(name string, k wgtypes.Key, ip string, port int, v4, v6 string, epoch int64) backend.Peer {
		p := backend.Peer{Name: name, Data: subnet.BackendData{WireGuardKey: k.String(), WireGuardPort: port}, Epoch: epoch}
		if ip != "" {
			p.PublicIP = netip.MustParseAddr(ip)
		}
		if v4 != "" {
			p.Subnet = pfx(v4)
		}
		if v6 != "" {
			p.IPv6Subnet = pfx(v6)
		}
		return p
	}
	type got struct {
		Endpoint string
		Allowed  []string
		Name     string
	}
	tests := []struct {
		name     string
		peers    []backend.Peer
		want     map[wgtypes.Key]got
		problems map[string]string
	}{
		{
			name:  "dual stack, ipv6 endpoint, default port",
			peers: []backend.Peer{peer("b", k1, "2001:2::2", 0, "10.244.2.0/24", "fd10:244:0:2::/64", 5)},
			want: map[wgtypes.Key]got{k1: {
				Endpoint: "[2001:2::2]:51820", Allowed: []string{"10.244.2.0/24", "fd10:244:0:2::/64"}, Name: "b",
			}},
		},
		{
			name: "one key, two leases: one peer with both subnets, newest endpoint",
			peers: []backend.Peer{
				peer("b-old", k1, "198.18.0.2", 51820, "10.244.9.0/24", "", 3),
				peer("b", k1, "198.18.0.22", 51821, "10.244.2.0/24", "", 7),
			},
			want: map[wgtypes.Key]got{k1: {
				Endpoint: "198.18.0.22:51821", Allowed: []string{"10.244.2.0/24", "10.244.9.0/24"}, Name: "b",
			}},
		},
		{
			name: "contested subnet goes to the older lease, as in every backend",
			peers: []backend.Peer{
				peer("new", k2, "198.18.0.3", 51820, "10.244.2.0/24", "", 9),
				peer("old", k1, "198.18.0.2", 51820, "10.244.2.0/24", "", 3),
			},
			want: map[wgtypes.Key]got{k1: {
				Endpoint: "198.18.0.2:51820", Allowed: []string{"10.244.2.0/24"}, Name: "old",
			}},
			problems: map[string]string{"new": "subnet 10.244.2.0/24 overlaps 10.244.2.0/24 of old"},
		},
		{
			name: "a /25 inside a peer's /24 and 0.0.0.0/1 are refused, not only exact duplicates",
			peers: []backend.Peer{
				peer("b", k1, "198.18.0.2", 51820, "10.244.2.0/24", "", 3),
				peer("half", k2, "198.18.0.3", 51820, "10.244.2.128/25", "", 9),
				peer("wide", k3, "198.18.0.4", 51820, "0.0.0.0/1", "", 10),
			},
			want: map[wgtypes.Key]got{k1: {
				Endpoint: "198.18.0.2:51820", Allowed: []string{"10.244.2.0/24"}, Name: "b",
			}},
			problems: map[string]string{
				"half": "subnet 10.244.2.128/25 overlaps 10.244.2.0/24 of b",
				"wide": "subnet 0.0.0.0/1 overlaps 10.244.1.0/24 of this node",
			},
		},
		{
			name: "unusable peers are reported, not dropped silently",
			peers: []backend.Peer{
				{Name: "badkey", PublicIP: netip.MustParseAddr("198.18.0.4"), Subnet: pfx("10.244.4.0/24"), Data: subnet.BackendData{WireGuardKey: "xyz"}},
				peer("self", self, "198.18.0.5", 0, "10.244.5.0/24", "", 1),
				peer("noip", k1, "", 0, "10.244.6.0/24", "", 1),
				peer("mine", k2, "198.18.0.7", 0, "10.244.1.0/24", "", 1),
			},
			want: map[wgtypes.Key]got{},
			problems: map[string]string{
				"badkey": `invalid wireguard public key "xyz"`,
				"self":   "peer has this node's wireguard public key",
				"noip":   "peer has no public ip",
				"mine":   "subnet 10.244.1.0/24 overlaps 10.244.1.0/24 of this node",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, problems := desiredPeers(backend.Desired{Local: local, Peers: tt.peers}, self, 51820)
			gotPeers := map[wgtypes.Key]got{}
			for k, w := range want {
				g := got{Endpoint: w.endpoint.String(), Name: w.name}
				for _, p := range w.allowed {
					g.Allowed = append(g.Allowed, p.String())
				}
				gotPeers[k] = g
			}
			if diff := cmp.Diff(tt.want, gotPeers); diff != "" {
				t.Errorf("peers (-want +got):\n%s", diff)
			}
			if tt.problems == nil {
				tt.problems = map[string]string{}
			}
			if diff := cmp.Diff(tt.problems, problems); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlanPeers(t *testing.T) {
	k1, k2, k3 := mustKey(t), mustKey(t), mustKey(t)
	ep := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	udp := func(s string) *net.UDPAddr { return net.UDPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	nets := func(ss ...string) []net.IPNet {
		var out []net.IPNet
		for _, s := range ss {
			_, n, _ := net.ParseCIDR(s)
			out = append(out, *n)
		}
		return out
	}
	w := func(k wgtypes.Key, endpoint string, allowed ...string) *wantPeer {
		p := &wantPeer{key: k, endpoint: ep(endpoint)}
		for _, a := range allowed {
			p.allowed = append(p.allowed, pfx(a))
		}
		return p
	}
	cur := func(k wgtypes.Key, endpoint string, keepalive time.Duration, allowed ...string) wgtypes.Peer {
		p := wgtypes.Peer{PublicKey: k, PersistentKeepaliveInterval: keepalive, AllowedIPs: nets(allowed...)}
		if endpoint != "" {
			p.Endpoint = udp(endpoint)
		}
		return p
	}
	var noPSK wgtypes.Key
	type summary struct{ Added, Updated, Removed []wgtypes.Key }
	tests := []struct {
		name      string
		want      map[wgtypes.Key]*wantPeer
		have      []wgtypes.Peer
		last      map[wgtypes.Key]netip.AddrPort
		keepalive time.Duration
		complete  bool
		sum       summary
		check     func(t *testing.T, cfgs []wgtypes.PeerConfig)
	}{
		{
			name: "in sync: nothing to do",
			want: map[wgtypes.Key]*wantPeer{k1: w(k1, "198.18.0.2:51820", "10.244.2.0/24")},
			have: []wgtypes.Peer{cur(k1, "198.18.0.2:51820", 0, "10.244.2.0/24")},
		},
		{
			name: "ipv4 listed as 16-byte addresses is still in sync",
			want: map[wgtypes.Key]*wantPeer{k1: w(k1, "198.18.0.2:51820", "10.244.2.0/24")},
			have: []wgtypes.Peer{{
				PublicKey:  k1,
				Endpoint:   &net.UDPAddr{IP: net.ParseIP("198.18.0.2").To16(), Port: 51820},
				AllowedIPs: []net.IPNet{{IP: net.ParseIP("10.244.2.0").To16(), Mask: net.CIDRMask(120, 128)}},
			}},
		},
		{
			name:      "new peer added with everything set",
			want:      map[wgtypes.Key]*wantPeer{k1: w(k1, "198.18.0.2:51820", "10.244.2.0/24")},
			keepalive: 25 * time.Second,
			sum:       summary{Added: []wgtypes.Key{k1}},
			check: func(t *testing.T, cfgs []wgtypes.PeerConfig) {
				c := cfgs[0]
				if c.UpdateOnly || c.Remove || !c.ReplaceAllowedIPs || c.Endpoint.String() != "198.18.0.2:51820" ||
					*c.PersistentKeepaliveInterval != 25*time.Second || c.PresharedKey == nil {
					t.Errorf("bad add config: %+v", c)
				}
			},
		},
		{
			name: "changed allowed ips: update only that",
			want: map[wgtypes.Key]*wantPeer{k1: w(k1, "198.18.0.2:51820", "10.244.2.0/24", "fd10:244:0:2::/64")},
			have: []wgtypes.Peer{cur(k1, "198.18.0.2:51820", 0, "10.244.2.0/24")},
			sum:  summary{Updated: []wgtypes.Key{k1}},
			check: func(t *testing.T, cfgs []wgtypes.PeerConfig) {
				c := cfgs[0]
				if !c.UpdateOnly || !c.ReplaceAllowedIPs || len(c.AllowedIPs) != 2 || c.Endpoint != nil || c.PresharedKey != nil || c.PersistentKeepaliveInterval != nil {
					t.Errorf("bad update config: %+v", c)
				}
			},
		},
		{
			name: "roamed endpoint kept while the published one is unchanged",
			want: map[wgtypes.Key]*wantPeer{k1: w(k1, "198.18.0.2:51820", "10.244.2.0/24")},
			have: []wgtypes.Peer{cur(k1, "198.18.1.99:40000", 0, "10.244.2.0/24")},
			last: map[wgtypes.Key]netip.AddrPort{k1: ep("198.18.0.2:51820")},
		},
		{
			name: "published endpoint changed: written",
			want: map[wgtypes.Key]*wantPeer{k1: w(k1, "198.18.0.3:51820", "10.244.2.0/24")},
			have: []wgtypes.Peer{cur(k1, "198.18.0.2:51820", 0, "10.244.2.0/24")},
			last: map[wgtypes.Key]netip.AddrPort{k1: ep("198.18.0.2:51820")},
			sum:  summary{Updated: []wgtypes.Key{k1}},
			check: func(t *testing.T, cfgs []wgtypes.PeerConfig) {
				if cfgs[0].Endpoint.String() != "198.18.0.3:51820" || cfgs[0].AllowedIPs != nil {
					t.Errorf("bad update config: %+v", cfgs[0])
				}
			},
		},
		{
			name:      "keepalive changed",
			want:      map[wgtypes.Key]*wantPeer{k1: w(k1, "198.18.0.2:51820", "10.244.2.0/24")},
			have:      []wgtypes.Peer{cur(k1, "198.18.0.2:51820", 0, "10.244.2.0/24")},
			keepalive: 5 * time.Second,
			sum:       summary{Updated: []wgtypes.Key{k1}},
		},
		{
			name: "stale peer kept on a partial view",
			want: map[wgtypes.Key]*wantPeer{k1: w(k1, "198.18.0.2:51820", "10.244.2.0/24")},
			have: []wgtypes.Peer{cur(k1, "198.18.0.2:51820", 0, "10.244.2.0/24"), cur(k2, "198.18.0.3:51820", 0, "10.244.3.0/24")},
		},
		{
			name:     "stale peers removed on a complete view, others untouched",
			want:     map[wgtypes.Key]*wantPeer{k1: w(k1, "198.18.0.2:51820", "10.244.2.0/24")},
			have:     []wgtypes.Peer{cur(k3, "198.18.0.4:51820", 0, "10.244.4.0/24"), cur(k1, "198.18.0.2:51820", 0, "10.244.2.0/24"), cur(k2, "198.18.0.3:51820", 0, "10.244.3.0/24")},
			complete: true,
			sum:      summary{Removed: sortKeys(k2, k3)},
			check: func(t *testing.T, cfgs []wgtypes.PeerConfig) {
				for _, c := range cfgs {
					if !c.Remove {
						t.Errorf("unexpected non-remove config %+v", c)
					}
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := planPeers(tt.want, tt.have, tt.last, noPSK, tt.keepalive, tt.complete)
			got := summary{Added: plan.added, Updated: plan.updated, Removed: plan.removed}
			if diff := cmp.Diff(tt.sum, got); diff != "" {
				t.Fatalf("plan (-want +got):\n%s", diff)
			}
			if n := len(plan.added) + len(plan.updated) + len(plan.removed); n != len(plan.configs) {
				t.Fatalf("%d configs for %d changes", len(plan.configs), n)
			}
			if tt.check != nil {
				tt.check(t, plan.configs)
			}
		})
	}
}

func sortKeys(keys ...wgtypes.Key) []wgtypes.Key {
	m := map[wgtypes.Key]bool{}
	for _, k := range keys {
		m[k] = true
	}
	return sortedKeys(m)
}

// TestPrefixIndex checks the index against a plain scan over random
// prefixes of both families and mixed lengths: the same verdict (overlap
// or not) for every prefix, adding only those that overlap nothing.
func TestPrefixIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var d backend.Desired
	for range 3000 {
		var p netip.Prefix
		if rng.IntN(3) == 0 {
			var a [16]byte
			a[0], a[1], a[7] = 0xfd, 0x10, byte(rng.IntN(16))
			a[6] = byte(rng.IntN(4))
			p = netip.PrefixFrom(netip.AddrFrom16(a), []int{48, 56, 60, 64}[rng.IntN(4)]).Masked()
		} else {
			a := [4]byte{10, 244, byte(rng.IntN(8)), byte(rng.IntN(256))}
			p = netip.PrefixFrom(netip.AddrFrom4(a), []int{16, 20, 22, 24, 26, 29, 32}[rng.IntN(7)]).Masked()
		}
		if p.Addr().Is4() {
			d.Peers = append(d.Peers, backend.Peer{Subnet: p})
		} else {
			d.Peers = append(d.Peers, backend.Peer{IPv6Subnet: p})
		}
	}
	x := newPrefixIndex(d)
	var list []netip.Prefix
	added := 0
	for i, pe := range d.Peers {
		p := pe.Subnet
		if !p.IsValid() {
			p = pe.IPv6Subnet
		}
		want := netip.Prefix{}
		for _, t := range list {
			if t.Overlaps(p) {
				want = t
				break
			}
		}
		got := x.overlapping(p)
		if got.IsValid() != want.IsValid() || (got.IsValid() && !got.Overlaps(p)) {
			t.Fatalf("prefix %d %s: index says %v, scan says %v", i, p, got, want)
		}
		if !want.IsValid() {
			x.add(p)
			list = append(list, p)
			added++
		}
	}
	if added < 50 || added == len(d.Peers) {
		t.Fatalf("%d of %d prefixes added: the case does not exercise both verdicts", added, len(d.Peers))
	}
}
