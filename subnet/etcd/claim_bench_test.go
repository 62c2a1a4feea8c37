// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build bench

package etcd

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/subnet"
)

// TestBenchClaimScale measures, against the embedded etcd of this package,
// what one claim costs with 5000 leases held (etcd round trips and bytes,
// counted by a gRPC interceptor) beside the listing claim (every claim
// reading all lease keys, as claims did before the quick path) in the same
// run; and a start storm of 1000 distinct nodes claiming at once (p50/p99
// claim time), beside the same storm of listing claims.
func TestBenchClaimScale(t *testing.T) {
	ctx := ctxT(t, 20*time.Minute)
	cfg := mustParse(t, `{"Network": "10.0.0.0/10"}`) // 16384 /24s
	prefix := testPrefix(t)
	quick, qw := countingStore(t, prefix)
	listing, lw := countingStore(t, prefix)
	listing.alwaysList = true
	const held = 5000
	writeLeases(t, quick, cfg, held)
	// The records were written without a lengths marker: the first claim
	// lists once and writes it.
	if _, err := quick.Claim(ctx, subnetClaim(cfg, "first")); err != nil {
		t.Fatal(err)
	}
	type cost struct{ trips, sent, recv int64 }
	measure := func(s *Store, w *wireCount, name string, n int) []cost {
		var out []cost
		for i := range n {
			c0, s0, r0 := w.snap()
			l, err := s.Claim(ctx, subnetClaim(cfg, fmt.Sprintf("%s-%d", name, i)))
			if err != nil {
				t.Fatal(err)
			}
			c1, s1, r1 := w.snap()
			out = append(out, cost{c1 - c0, s1 - s0, r1 - r0})
			// Untimed: keep the store at 5000 leases.
			if _, err := s.c.Revoke(ctx, clientv3.LeaseID(l.LeaseID)); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	med := func(cs []cost, f func(cost) int64) float64 {
		ds := make([]time.Duration, len(cs))
		for i, c := range cs {
			ds[i] = time.Duration(f(c))
		}
		return float64(quantile(ds, 0.5))
	}
	lists0 := quick.claimLists.Load()
	q := measure(quick, qw, "quick", 100)
	l := measure(listing, lw, "listing", 20)
	if got := quick.claimLists.Load() - lists0; got != 0 {
		t.Errorf("%d of 100 quick claims listed all keys", got)
	}
	qt, lt := med(q, func(c cost) int64 { return c.trips }), med(l, func(c cost) int64 { return c.trips })
	qb, lb := med(q, func(c cost) int64 { return c.sent + c.recv }), med(l, func(c cost) int64 { return c.sent + c.recv })
	fmt.Printf("BENCH| claim: etcd round trips, %d leases held (median) | %.0f | listing claim: %.0f | %.2fx\n", held, qt, lt, qt/lt)
	fmt.Printf("BENCH| claim: bytes to and from etcd, %d leases held (median) | %.1f kB | listing claim: %.1f kB | %.4fx\n",
		held, qb/1000, lb/1000, qb/lb)

	// Start storm: 1000 distinct nodes, 16 etcd connections, on an empty
	// prefix holding only the config, all claiming at once.
	storm := func(alwaysList bool) (p50, p99, wall time.Duration, lists, conflicts int64) {
		prefix := testPrefix(t)
		var stores []*Store
		for range 16 {
			st := New(Config{Client: newClient(t), Prefix: prefix, LeaseTTL: time.Hour})
			st.alwaysList = alwaysList
			stores = append(stores, st)
		}
		const n = 1000
		took := make([]time.Duration, n)
		got := make([]netip.Prefix, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		ready := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-ready
				start := time.Now()
				var l *subnet.Lease
				l, errs[i] = stores[i%len(stores)].Claim(ctx, subnetClaim(cfg, fmt.Sprintf("storm-%04d", i)))
				took[i] = time.Since(start)
				if l != nil {
					got[i] = l.Subnet
				}
			})
		}
		start := time.Now()
		close(ready)
		wg.Wait()
		wall = time.Since(start)
		seen := map[netip.Prefix]int{}
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("storm claim %d: %v", i, errs[i])
			}
			if j, dup := seen[got[i]]; dup {
				t.Fatalf("%s given to storm-%04d and storm-%04d", got[i], j, i)
			}
			seen[got[i]] = i
		}
		if k := len(keysIn(t, stores[0], stores[0].LeasesPrefix())); k != n {
			t.Fatalf("etcd holds %d lease keys after the storm, want %d", k, n)
		}
		for _, st := range stores {
			lists += st.claimLists.Load()
			conflicts += st.claimConflicts.Load()
		}
		return quantile(took, 0.5), quantile(took, 0.99), wall, lists, conflicts
	}
	q50, q99, qwall, qlists, qconf := storm(false)
	l50, l99, lwall, _, lconf := storm(true)
	fmt.Printf("BENCH| start storm, 1000 claimers: claim time p50 | %.0f ms | listing claims: %.0f ms | %.2fx\n", ms(q50), ms(l50), ms(q50)/ms(l50))
	fmt.Printf("BENCH| start storm, 1000 claimers: claim time p99 | %.0f ms | listing claims: %.0f ms | %.2fx\n", ms(q99), ms(l99), ms(q99)/ms(l99))
	fmt.Printf("BENCH| start storm, 1000 claimers: wall | %.0f ms | listing claims: %.0f ms | %.2fx; 0 duplicates; %d listings, %d (listing: %d) lost races\n",
		ms(qwall), ms(lwall), ms(qwall)/ms(lwall), qlists, qconf, lconf)
}
