// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build bench

package etcd

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/subnet"
)

// quantile returns the q-quantile (0..1) of ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// TestBenchLeases measures, against the embedded etcd of this package:
// the latency of one claim and of a plain etcd Put of the same value
// (the floor: one write), the wall time of 200 nodes claiming at once
// and of 200 concurrent plain Puts, and the time from a lease Put to the
// WatchLeases view and from a plain Put to a raw watch event.
func TestBenchLeases(t *testing.T) {
	ctx := ctxT(t, 10*time.Minute)
	cli := newClient(t)
	cfg := mustParse(t, `{"Network": "10.0.0.0/8"}`)
	s := New(Config{Client: cli, Prefix: testPrefix(t), LeaseTTL: time.Hour})
	rec := record("reference")
	val, _ := json.Marshal(value{Record: rec, Subnet: cfg.IPv4Space().First()})

	// Claim latency with 0..200 other leases in the store, against the
	// latency of a plain Put.
	const n = 200
	for i := range 20 { // warm up
		s.Claim(ctx, subnet.ClaimRequest{Config: cfg, Record: record(fmt.Sprintf("warm-%d", i))})
		cli.Put(ctx, s.Prefix()+"/warm", string(val))
	}
	var claims, puts []time.Duration
	for i := range n {
		start := time.Now()
		if _, err := s.Claim(ctx, subnet.ClaimRequest{Config: cfg, Record: record(fmt.Sprintf("n-%d", i))}); err != nil {
			t.Fatal(err)
		}
		claims = append(claims, time.Since(start))
		start = time.Now()
		if _, err := cli.Put(ctx, fmt.Sprintf("%s/put/%d", s.Prefix(), i), string(val)); err != nil {
			t.Fatal(err)
		}
		puts = append(puts, time.Since(start))
	}
	for _, q := range []struct {
		name string
		q    float64
	}{{"median", 0.5}, {"p95", 0.95}} {
		c, p := quantile(claims, q.q), quantile(puts, q.q)
		fmt.Printf("BENCH| lease claim latency, %s (%d claims) | %.2f ms | etcd Put: %.2f ms | %.1fx (list + grant + txn)\n",
			q.name, n, ms(c), ms(p), ms(c)/ms(p))
	}

	// 200 nodes claiming at once in a /16 (256 subnets), five rounds.
	contended := mustParse(t, `{"Network": "10.244.0.0/16"}`)
	clients := []*clientv3.Client{cli, newClient(t), newClient(t), newClient(t)}
	var walls, putWalls []time.Duration
	var conflicts int64
	for range 5 {
		prefix := testPrefix(t)
		stores := make([]*Store, len(clients))
		for i, c := range clients {
			stores[i] = New(Config{Client: c, Prefix: prefix, LeaseTTL: time.Hour})
		}
		start := time.Now()
		if err := claimAll(ctx, stores, contended, 200); err != nil {
			t.Fatal(err)
		}
		walls = append(walls, time.Since(start))
		for _, st := range stores {
			conflicts += st.claimConflicts.Load()
		}
		var wg sync.WaitGroup
		start = time.Now()
		for i := range 200 {
			wg.Go(func() {
				if _, err := clients[i%len(clients)].Put(ctx, fmt.Sprintf("%s/put/%d", prefix, i), string(val)); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		putWalls = append(putWalls, time.Since(start))
	}
	w, p := quantile(walls, 0.5), quantile(putWalls, 0.5)
	fmt.Printf("BENCH| 200-way claim contention, wall (median of 5) | %.0f ms | 200 concurrent etcd Puts: %.0f ms | %.1fx; %.1f lost races per round, 0 duplicates\n",
		ms(w), ms(p), ms(w)/ms(p), float64(conflicts)/5)

	// Claim → watchers' view, against Put → raw watch event.
	wctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex
	seen := map[string]time.Time{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.WatchLeases(wctx, func(v subnet.View) {
			now := time.Now()
			mu.Lock()
			for _, l := range v.Leases {
				if _, ok := seen[l.Record.NodeName]; !ok {
					seen[l.Record.NodeName] = now
				}
			}
			mu.Unlock()
		})
	}()
	rawSeen := make(chan time.Time, 1)
	rawKey := s.Prefix() + "/raw"
	wch := cli.Watch(wctx, rawKey)
	go func() {
		for wr := range wch {
			if len(wr.Events) > 0 {
				rawSeen <- time.Now()
			}
		}
	}()
	var views, raws []time.Duration
	for i := range 50 {
		name := fmt.Sprintf("watched-%d", i)
		// A lease record written straight to its key, so that both sides
		// measure one Put: what WatchLeases adds is its view building.
		p := cfg.IPv4Space().Subnet(uint64(60000 + i))
		v, _ := json.Marshal(value{Record: record(name), Subnet: p})
		start := time.Now()
		if _, err := cli.Put(ctx, s.LeaseKey(p), string(v)); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			at, ok := seen[name]
			mu.Unlock()
			if ok {
				views = append(views, at.Sub(start))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never reached the watcher", name)
			}
			time.Sleep(100 * time.Microsecond)
		}
		start = time.Now()
		if _, err := cli.Put(ctx, rawKey, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
		select {
		case at := <-rawSeen:
			raws = append(raws, at.Sub(start))
		case <-time.After(10 * time.Second):
			t.Fatal("raw watch event missing")
		}
	}
	cancel()
	<-done
	v, r := quantile(views, 0.5), quantile(raws, 0.5)
	fmt.Printf("BENCH| lease Put → WatchLeases view, median (%d leases in view) | %.2f ms | etcd Put → raw watch event: %.2f ms | %.1fx\n",
		n+20, ms(v), ms(r), ms(v)/ms(r))
}
