// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package subnettest

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/subnet"
)

func mustConfig(t *testing.T, js string) *subnet.Config {
	t.Helper()
	c, err := subnet.ParseConfig([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := New()
	if _, err := s.GetConfig(ctx); !errors.Is(err, subnet.ErrNoConfig) {
		t.Fatalf("GetConfig on a new store: %v", err)
	}
	// An invalid config is a ConfigError, as the etcd store reports it.
	s.SetConfig(&subnet.Config{})
	if _, err := s.GetConfig(ctx); !errors.As(err, new(*subnet.ConfigError)) {
		t.Fatalf("GetConfig of an invalid config: %v, want a *subnet.ConfigError", err)
	}
	cfg := mustConfig(t, `{"Network": "10.244.0.0/29", "SubnetLen": 30, "IPv6Network": "fd10:244::/63"}`)
	s.SetConfig(cfg)

	// A watcher sees every change as a complete view.
	var mu sync.Mutex
	var views []subnet.View
	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() {
		done <- s.WatchLeases(wctx, func(v subnet.View) {
			mu.Lock()
			views = append(views, v)
			mu.Unlock()
		})
	}()

	a, err := s.Claim(ctx, subnet.ClaimRequest{Config: cfg, Record: subnet.Record{NodeName: "a", NodeID: "1"}})
	if err != nil || !a.Subnet.IsValid() || !a.IPv6Subnet.IsValid() {
		t.Fatalf("claim a: %+v, %v", a, err)
	}
	again, err := s.Claim(ctx, subnet.ClaimRequest{Config: cfg, Record: subnet.Record{NodeName: "a", NodeID: "1", Version: 2}})
	if err != nil || again.Subnet != a.Subnet || again.Epoch != a.Epoch {
		t.Fatalf("re-claim a: %+v, %v", again, err)
	}
	if _, err := s.Claim(ctx, subnet.ClaimRequest{Config: cfg, Record: subnet.Record{NodeName: "a", NodeID: "2"}}); !errors.Is(err, subnet.ErrNodeConflict) {
		t.Errorf("claim by a twin: %v", err)
	}
	b, err := s.Claim(ctx, subnet.ClaimRequest{Config: cfg, Record: subnet.Record{NodeName: "b", NodeID: "3"}})
	if err != nil || b.Subnet == a.Subnet || b.IPv6Subnet == a.IPv6Subnet {
		t.Fatalf("claim b: %+v, %v", b, err)
	}
	if _, err := s.Claim(ctx, subnet.ClaimRequest{Config: cfg, Record: subnet.Record{NodeName: "c", NodeID: "4"}}); !errors.Is(err, subnet.ErrExhausted) {
		t.Errorf("claim c: %v, want ErrExhausted", err)
	}

	// KeepAlive returns ErrLeaseLost when the lease is deleted.
	kdone := make(chan error)
	go func() { kdone <- s.KeepAlive(ctx, a, nil) }()
	if !s.Delete(a.Subnet) {
		t.Fatal("Delete found no lease")
	}
	select {
	case err := <-kdone:
		if !errors.Is(err, subnet.ErrLeaseLost) {
			t.Errorf("KeepAlive: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("KeepAlive did not return")
	}
	if _, err := s.UpdateRecord(ctx, a, a.Record); !errors.Is(err, subnet.ErrLeaseLost) {
		t.Errorf("UpdateRecord of a deleted lease: %v", err)
	}
	s.Put(subnet.Lease{Subnet: netip.MustParsePrefix("10.244.0.0/30"), Record: subnet.Record{NodeName: "x", NodeID: "9"}})
	if err := s.Release(ctx, b); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		var last subnet.View
		if len(views) > 0 {
			last = views[len(views)-1]
		}
		mu.Unlock()
		if len(last.Leases) == 1 && last.Leases[0].Record.NodeName == "x" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("last view %+v", last)
		}
		time.Sleep(10 * time.Millisecond)
	}
	wcancel()
	if err := <-done; err != nil {
		t.Errorf("WatchLeases: %v", err)
	}

	// Probe answers until told otherwise.
	if err := s.Probe(ctx); err != nil {
		t.Errorf("Probe: %v", err)
	}
	down := errors.New("store down")
	s.SetProbeError(down)
	if err := s.Probe(ctx); !errors.Is(err, down) {
		t.Errorf("Probe after SetProbeError: %v", err)
	}
	s.SetProbeError(nil)
	if err := s.Probe(ctx); err != nil {
		t.Errorf("Probe after SetProbeError(nil): %v", err)
	}
}

// TestGossipKey: the fake's key is made once, of 32 bytes, and the same
// for every caller, concurrent or later; SetGossipKey replaces it.
func TestGossipKey(t *testing.T) {
	s := New()
	keys := make([][]byte, 20)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := s.GossipKey(context.Background())
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		}()
	}
	wg.Wait()
	for i, k := range keys {
		if len(k) != 32 || string(k) != string(keys[0]) {
			t.Fatalf("caller %d: a key of %d bytes, different from caller 0's", i, len(k))
		}
	}
	keys[0][0] ^= 0xff // callers get copies
	if k, _ := s.GossipKey(context.Background()); string(k) != string(keys[1]) {
		t.Error("a caller changed the store's key through its copy")
	}
	s.SetGossipKey([]byte("0123456789abcdef"))
	if k, _ := s.GossipKey(context.Background()); string(k) != "0123456789abcdef" {
		t.Errorf("after SetGossipKey: %q", k)
	}
}
