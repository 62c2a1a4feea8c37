// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcd

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/weftnet/weft/subnet"
)

// viewRecorder records the views WatchLeases hands out and checks that fn
// never runs concurrently.
type viewRecorder struct {
	t       *testing.T
	running atomic.Int32
	mu      sync.Mutex
	views   []subnet.View
}

func (r *viewRecorder) fn(v subnet.View) {
	if r.running.Add(1) != 1 {
		r.t.Errorf("fn called concurrently")
	}
	defer r.running.Add(-1)
	r.mu.Lock()
	r.views = append(r.views, v)
	r.mu.Unlock()
}

func (r *viewRecorder) last() (subnet.View, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.views) == 0 {
		return subnet.View{}, 0
	}
	return r.views[len(r.views)-1], len(r.views)
}

// summary reduces a view to "node=subnet/ipv6subnet@version" strings.
func summary(v subnet.View) []string {
	var out []string
	for _, l := range v.Leases {
		out = append(out, fmt.Sprintf("%s=%s,%s@%d", l.Record.NodeName, opt(l.Subnet), opt(l.IPv6Subnet), l.Record.Version))
	}
	sort.Strings(out)
	return out
}

func opt(p netip.Prefix) string {
	if !p.IsValid() {
		return "-"
	}
	return p.String()
}

func names(v subnet.View) []string {
	var out []string
	for _, l := range v.Leases {
		out = append(out, l.Record.NodeName)
	}
	sort.Strings(out)
	return out
}

func runWatch(t *testing.T, s *Store) (*viewRecorder, func()) {
	r := &viewRecorder{t: t}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.WatchLeases(ctx, r.fn) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("WatchLeases returned %v, want nil", err)
		}
	}
	t.Cleanup(func() {
		select {
		case <-ctx.Done():
		default:
			stop()
		}
	})
	return r, stop
}

// waitView waits until the latest view matches List.
func waitView(t *testing.T, s *Store, r *viewRecorder) subnet.View {
	t.Helper()
	want, err := s.List(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got subnet.View
	waitFor(t, 10*time.Second, "the watched view to match List", func() bool {
		got, _ = r.last()
		return got.Revision >= want.Revision && cmp.Equal(summary(got), summary(want))
	})
	return got
}

func TestWatchLeases(t *testing.T) {
	s := newStore(t)
	cfg := mustParse(t, `{"Network": "10.244.0.0/16", "IPv6Network": "fd10:244::/56"}`)
	claim := func(name string) *subnet.Lease {
		l, err := s.Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: record(name)})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	a := claim("a")
	r, stop := runWatch(t, s)
	first := waitView(t, s, r)
	if len(first.Leases) != 1 || !first.Complete {
		t.Fatalf("first view %+v", first)
	}
	b := claim("b")
	waitView(t, s, r)
	rec := b.Record
	rec.Version = 2
	if _, err := s.UpdateRecord(ctxT(t, 10*time.Second), b, rec); err != nil {
		t.Fatal(err)
	}
	v := waitView(t, s, r)
	if got := summary(v); len(got) != 2 || got[1][len(got[1])-1] != '2' {
		t.Errorf("view after update: %v", got)
	}
	if err := s.Release(ctxT(t, 10*time.Second), a); err != nil {
		t.Fatal(err)
	}
	v = waitView(t, s, r)
	if len(v.Leases) != 1 || v.Leases[0].Record.NodeName != "b" {
		t.Errorf("view after release: %v", summary(v))
	}
	stop()
	checkNoStoreGoroutines(t)
	// Every view was complete, revisions never went backwards, and a
	// dual-stack lease was never seen half (one family only).
	r.mu.Lock()
	defer r.mu.Unlock()
	var rev int64
	for i, v := range r.views {
		if !v.Complete || v.Revision < rev {
			t.Errorf("view %d: complete %v, revision %d after %d", i, v.Complete, v.Revision, rev)
		}
		rev = v.Revision
		for _, l := range v.Leases {
			if !l.Subnet.IsValid() || !l.IPv6Subnet.IsValid() {
				t.Errorf("view %d holds a half lease %+v", i, l)
			}
		}
	}
}

// TestWatchLeasesCompaction makes changes and compacts etcd between the
// initial list and the start of the watch: the watch then starts on a
// compacted revision, must relist, and must not lose any change.
func TestWatchLeasesCompaction(t *testing.T) {
	s := newStore(t)
	cfg := mustParse(t, `{"Network": "10.244.0.0/16"}`)
	claimWith := func(st *Store, name string) *subnet.Lease {
		l, err := st.Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: record(name)})
		if err != nil {
			t.Error(err)
		}
		return l
	}
	a := claimWith(s, "a")
	claimWith(s, "b")

	w := sibling(t, s)
	other := sibling(t, s)
	var hooked atomic.Int32
	listedAt := make(chan int64, 4)
	hookDone := make(chan struct{})
	w.testHookWatchListed = func(rev int64) {
		listedAt <- rev
		if hooked.Add(1) != 1 {
			return
		}
		defer close(hookDone)
		// While the watcher is between its list and its watch: one node
		// leaves, one joins, then etcd is compacted past the list.
		if err := other.Release(ctxT(t, 10*time.Second), a); err != nil {
			t.Error(err)
		}
		claimWith(other, "c")
		resp, err := other.c.Get(ctxT(t, 10*time.Second), "compact-me")
		if err != nil {
			t.Error(err)
			return
		}
		if _, err := other.c.Compact(ctxT(t, 10*time.Second), resp.Header.Revision); err != nil {
			t.Error(err)
		}
	}
	r, stop := runWatch(t, w)
	select {
	case <-hookDone:
	case <-time.After(20 * time.Second):
		t.Fatal("the watch never listed")
	}
	v := waitView(t, s, r)
	if got, want := names(v), []string{"b", "c"}; !cmp.Equal(got, want) {
		t.Fatalf("view after the compaction: %v", summary(v))
	}
	if n := len(listedAt); n < 2 {
		t.Fatalf("listed %d times, want a relist after the compaction", n)
	}
	first, second := <-listedAt, <-listedAt
	if second <= first {
		t.Errorf("relist at revision %d, first list at %d", second, first)
	}
	// The first view had a and b; the next one the state after the
	// changes: no view in between was partial.
	r.mu.Lock()
	if got := len(r.views[0].Leases); got != 2 {
		t.Errorf("first view holds %d leases, want 2", got)
	}
	r.mu.Unlock()

	// The watch works after the resync.
	claimWith(s, "d")
	if v := waitView(t, s, r); len(v.Leases) != 3 {
		t.Errorf("view after the resync: %v", summary(v))
	}
	stop()
	checkNoStoreGoroutines(t)
}

func TestWatchConfig(t *testing.T) {
	s := newStore(t)
	type call struct {
		network string
		err     string
	}
	var mu sync.Mutex
	var calls []call
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.WatchConfig(ctx, func(c *subnet.Config, err error) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				if !errors.Is(err, subnet.ErrNoConfig) {
					calls = append(calls, call{err: "invalid"})
				} else {
					calls = append(calls, call{err: "none"})
				}
			default:
				calls = append(calls, call{network: c.Network.String()})
			}
		})
	}()
	waitCalls := func(n int) {
		t.Helper()
		waitFor(t, 10*time.Second, "config callbacks", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(calls) >= n
		})
	}
	waitCalls(1)
	put := func(v string) {
		if _, err := s.c.Put(ctxT(t, 10*time.Second), s.ConfigKey(), v); err != nil {
			t.Fatal(err)
		}
	}
	put(`{"Network": "10.244.0.0/16"}`)
	waitCalls(2)
	put(`{"Network": "10.245.0.0/16"}`)
	waitCalls(3)
	put(`{"Network": "10.245.0.0/16", "Backend": {"Type": "udp"}}`)
	waitCalls(4)
	if _, err := s.c.Delete(ctxT(t, 10*time.Second), s.ConfigKey()); err != nil {
		t.Fatal(err)
	}
	waitCalls(5)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("WatchConfig returned %v", err)
	}
	checkNoStoreGoroutines(t)
	want := []call{{err: "none"}, {network: "10.244.0.0/16"}, {network: "10.245.0.0/16"}, {err: "invalid"}, {err: "none"}}
	if diff := cmp.Diff(want, calls, cmp.AllowUnexported(call{})); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}
