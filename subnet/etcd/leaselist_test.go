// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcd

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// TestLeaseList: the lease watch's list, kept from event to event, is
// always what leasesOf makes of the same keys, over random events of every
// kind (records changed in place, holders changed, keys added, deleted,
// refused, IPv6 keys joined to and parted from their IPv4 keys), and a
// list handed out is never written again.
func TestLeaseList(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const nodes = 40
	v4 := func(i int) netip.Prefix { return netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", i)) }
	v6 := func(i int) netip.Prefix { return netip.MustParsePrefix(fmt.Sprintf("fd10:244:0:%x::/64", i)) }
	rev := int64(100)
	mk := func(p netip.Prefix, i int) *entry {
		rev++
		e := &entry{subnet: p, ok: rng.IntN(20) > 0, kv: keyRevs{CreateRevision: int64(i + 1), ModRevision: rev}}
		if !e.ok {
			e.reason = "does not parse"
			return e
		}
		e.val.NodeName, e.val.NodeID = fmt.Sprintf("node-%d", i), fmt.Sprintf("id-%d", i)
		if rng.IntN(10) == 0 {
			e.val.NodeID = "someone-else"
		}
		e.val.Subnet, e.val.IPv6Subnet = v4(i), v6(i)
		e.val.PublicIP = netip.AddrFrom4([4]byte{198, 18, byte(i), byte(rng.IntN(250) + 1)})
		e.val.Version = uint64(rev)
		return e
	}
	entries := map[netip.Prefix]*entry{}
	for i := range nodes {
		entries[v4(i)] = mk(v4(i), i)
		if i%3 != 0 {
			entries[v6(i)] = mk(v6(i), i)
		}
	}
	ll := newLeaseList(entries)
	inPlace := 0
	for step := range 3000 {
		handed := ll.leases
		before := slices.Clone(handed)
		for range 1 + rng.IntN(3) {
			i := rng.IntN(nodes)
			p := v4(i)
			if rng.IntN(3) == 0 {
				p = v6(i)
			}
			was := entries[p]
			switch k := rng.IntN(10); {
			case k < 7 && was != nil && was.ok: // the record changes, not its holder
				cur := *was
				rev++
				cur.kv.ModRevision, cur.val.Version = rev, uint64(rev)
				cur.val.PublicIP = netip.AddrFrom4([4]byte{198, 19, byte(i), byte(rng.IntN(250) + 1)})
				cur.val.BackendData.VTEPMAC = fmt.Sprintf("02:00:00:00:%02x:%02x", i, rng.IntN(256))
				ll.put(p, was, &cur)
				entries[p] = &cur
			case k < 9: // a new record, its holder and joins drawn anew
				cur := mk(p, i)
				ll.put(p, was, cur)
				entries[p] = cur
			case was != nil:
				ll.deleted()
				delete(entries, p)
			}
		}
		remake := ll.remake
		got := ll.refresh(entries)
		if !remake {
			inPlace++
		}
		if want := leasesOf(entries); !slices.Equal(want, got) {
			t.Fatalf("step %d: the list kept differs from leasesOf:\nwant %+v\ngot  %+v", step, want, got)
		}
		if !slices.Equal(before, handed) {
			t.Fatalf("step %d: a list handed out was written to", step)
		}
	}
	// Both ways were taken, often.
	if inPlace < 500 || inPlace > 2500 {
		t.Errorf("%d of 3000 steps kept the list's order, want both kinds of step often", inPlace)
	}
}
