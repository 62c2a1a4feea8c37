// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package backend

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/weftnet/weft/subnet"
)

// TestPeerIndexMatchesFullCheck applies random changes to a set of peer
// entries full of conflicts (shared IPv6 subnets, VTEP MACs, WireGuard
// keys, this node's subnet, invalid addresses) and checks after every
// change that what the index decided, kept up to date change by change,
// is exactly what CheckPeers decides over the whole set: no incremental
// change admits an entry the full check rejects (an overlapping subnet,
// a MAC or key already in use), nor rejects one it accepts, nor words a
// reason differently. Both of the index's answers must occur: changes it
// decides, and changes it leaves to a full check.
func TestPeerIndexMatchesFullCheck(t *testing.T) {
	pfx := netip.MustParsePrefix
	key := func(b byte) string {
		k := make([]byte, 32)
		k[0] = b
		return base64.StdEncoding.EncodeToString(k)
	}
	in := CheckInput{
		Network: &subnet.Config{
			Network: pfx("10.244.0.0/16"), SubnetLen: 24,
			IPv6Network: pfx("fd10:244::/56"), IPv6SubnetLen: 64,
		},
		Local:            Local{Subnet: pfx("10.244.0.0/24"), IPv6Subnet: pfx("fd10:244::/64")},
		SelfIPs:          []netip.Addr{netip.MustParseAddr("198.18.0.10")},
		SelfWireGuardKey: key(9),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	// entry makes a random entry whose primary subnet is 10.244.n.0/24
	// (n > 0) or, for n < 0, the IPv6 subnet fd10:244:0:-n::/64 alone.
	entry := func(n int) Peer {
		p := Peer{
			Name:     fmt.Sprintf("node%d", rng.IntN(12)),
			PublicIP: netip.AddrFrom4([4]byte{198, 18, 1, byte(rng.IntN(40))}),
			Epoch:    int64(rng.IntN(30)),
		}
		if n > 0 {
			p.Subnet = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(n), 0}), 24)
		}
		if n < 0 || rng.IntN(3) == 0 {
			// IPv6 subnets are drawn from few, so that they collide.
			v6 := -n
			if n > 0 {
				v6 = rng.IntN(6)
			}
			p.IPv6Subnet = netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0x10, 0x02, 0x44, 0, 0, 0, byte(v6)}), 64)
		}
		switch rng.IntN(10) {
		case 0:
			p.PublicIP = netip.MustParseAddr("127.0.0.1") // invalid alone
		case 1:
			p.PublicIP = in.SelfIPs[0]
		}
		if rng.IntN(2) == 0 {
			p.Data.VTEPMAC = fmt.Sprintf("02:00:00:00:00:%02x", rng.IntN(15))
		} else {
			p.Data.WireGuardKey = key(byte(rng.IntN(10)))
		}
		return p
	}
	primaries := []int{-1, -2, -3, -4, -5}
	for n := 0; n < 25; n++ {
		primaries = append(primaries, n) // 0 is this node's subnet
	}
	set := map[netip.Prefix]Peer{}
	for range 15 {
		n := primaries[rng.IntN(len(primaries))]
		if n == 0 {
			continue
		}
		p := entry(n)
		set[primary(&p)] = p
	}
	values := func() []Peer {
		var ps []Peer
		for _, p := range set {
			ps = append(ps, p)
		}
		return ps
	}
	type decision struct {
		Accepted bool
		Reason   string
	}
	decisions := func(acc []Peer, rej []Rejected) map[Peer]decision {
		m := map[Peer]decision{}
		for _, p := range acc {
			m[p] = decision{Accepted: true}
		}
		for _, r := range rej {
			m[r.Peer] = decision{Reason: r.Reason}
		}
		return m
	}
	x, acc, rej := NewPeerIndex(in, values())
	got := decisions(acc, rej)
	decided, declined := 0, 0
	for step := range 3000 {
		// One to three changes: add, replace or remove entries.
		var changes []Change
		touched := map[netip.Prefix]bool{}
		for range 1 + rng.IntN(3) {
			n := primaries[rng.IntN(len(primaries))]
			p := entry(n)
			k := primary(&p)
			if touched[k] {
				continue
			}
			touched[k] = true
			var ch Change
			if old, ok := set[k]; ok {
				ch.Old = &old
			}
			if ch.Old == nil || rng.IntN(3) > 0 {
				ch.New = &p
			}
			if ch.Old == nil && ch.New == nil {
				continue
			}
			changes = append(changes, ch)
		}
		for _, ch := range changes {
			if ch.Old != nil {
				delete(set, primary(ch.Old))
				delete(got, *ch.Old)
			}
			if ch.New != nil {
				set[primary(ch.New)] = *ch.New
			}
		}
		a, r, ok := x.Apply(changes)
		if ok {
			decided++
			for p, d := range decisions(a, r) {
				got[p] = d
			}
		} else {
			declined++
			x, acc, rej = NewPeerIndex(in, values())
			got = decisions(acc, rej)
		}
		want := decisions(CheckPeers(in, values()))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("step %d (%d changes, index decided: %t): index and full check differ (-full +index):\n%s", step, len(changes), ok, diff)
		}
	}
	t.Logf("changes decided by the index: %d, left to a full check: %d", decided, declined)
	if decided < 300 || declined < 300 {
		t.Errorf("decided %d, declined %d: the test must exercise both answers", decided, declined)
	}
}
