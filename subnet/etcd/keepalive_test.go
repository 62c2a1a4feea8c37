// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcd

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/subnet"
)

// holding returns a store whose KeepAlive reports on the returned channel
// each time it starts holding a lease.
func holding(t *testing.T, s *Store) (*Store, chan struct{}) {
	st := sibling(t, s)
	ch := make(chan struct{}, 16)
	st.testHookHold = func() { ch <- struct{}{} }
	return st, ch
}

func waitHold(t *testing.T, ch chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(20 * time.Second):
		t.Fatal("KeepAlive did not start holding the lease")
	}
}

// modRevs returns the ModRevision and etcd lease of every lease key.
func modRevs(t *testing.T, s *Store) map[string][2]int64 {
	t.Helper()
	resp, err := s.c.Get(ctxT(t, 10*time.Second), s.LeasesPrefix(), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][2]int64{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = [2]int64{kv.ModRevision, kv.Lease}
	}
	return out
}

func TestKeepAliveRevoked(t *testing.T) {
	s := newStore(t)
	cfg := mustParse(t, `{"Network": "10.244.0.0/16", "IPv6Network": "fd10:244::/56"}`)
	var ls []*subnet.Lease
	for _, name := range []string{"a", "b", "c"} {
		l, err := s.Claim(ctxT(t, 10*time.Second), subnetClaim(cfg, name))
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	a := ls[0]
	before := modRevs(t, s)

	st, held := holding(t, s)
	k := runKeepAlive(t, st, a)
	waitHold(t, held)

	revoked := time.Now()
	if _, err := s.c.Revoke(ctxT(t, 10*time.Second), clientv3.LeaseID(a.LeaseID)); err != nil {
		t.Fatal(err)
	}
	// The watch on our own key notices at once, not at the next renewal
	// (every TTL/3 = 20 minutes here).
	waitFor(t, 5*time.Second, "KeepAlive to return after the revoke", k.finished)
	if err := k.stop(); !errors.Is(err, subnet.ErrLeaseLost) {
		t.Fatalf("KeepAlive returned %v, want ErrLeaseLost", err)
	}
	t.Logf("revocation noticed after %.3f s", time.Since(revoked).Seconds())

	// The daemon re-claims with its previous lease and gets the same subnets.
	again, err := st.Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: record("a"), Prev: a})
	if err != nil {
		t.Fatal(err)
	}
	if again.Subnet != a.Subnet || again.IPv6Subnet != a.IPv6Subnet {
		t.Fatalf("re-claim got %+v, want the subnets of %+v", again, a)
	}
	// The other nodes' keys were not touched.
	after := modRevs(t, s)
	for _, l := range ls[1:] {
		for _, p := range []netip.Prefix{l.Subnet, l.IPv6Subnet} {
			key := s.LeaseKey(p)
			if after[key] != before[key] {
				t.Errorf("%s changed: (modrev, lease) %v → %v", key, before[key], after[key])
			}
		}
	}
	if len(after) != 6 {
		t.Errorf("%d lease keys, want 6", len(after))
	}
	checkNoStoreGoroutines(t)
}

// claimAndHold claims req's lease and runs its KeepAlive from a sibling
// store until that holds the lease.
func claimAndHold(t *testing.T, s *Store, req subnet.ClaimRequest) (*subnet.Lease, *keepAliveRun, chan struct{}) {
	t.Helper()
	a, err := s.Claim(ctxT(t, 10*time.Second), req)
	if err != nil {
		t.Fatal(err)
	}
	st, held := holding(t, s)
	k := runKeepAlive(t, st, a)
	waitHold(t, held)
	return a, k, held
}

func TestKeepAliveRebindsOwnKey(t *testing.T) {
	s := newStore(t)
	cfg := mustParse(t, `{"Network": "10.244.0.0/16"}`)
	a, k, held := claimAndHold(t, s, subnetClaim(cfg, "a"))

	// Our key loses its etcd lease (written back without one, as a
	// restore from backup might): KeepAlive re-binds it to a new lease.
	key := s.LeaseKey(a.Subnet)
	resp, err := s.c.Get(ctxT(t, 10*time.Second), key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.c.Put(ctxT(t, 10*time.Second), key, string(resp.Kvs[0].Value)); err != nil {
		t.Fatal(err)
	}
	var got subnet.Lease
	waitFor(t, 10*time.Second, "a recovery", func() bool {
		l, n := k.lastChange()
		got = l
		return n > 0 && l.LeaseID != a.LeaseID
	})
	if got.Subnet != a.Subnet || got.Epoch != a.Epoch {
		t.Errorf("recovered lease %+v, want subnet and epoch of %+v", got, a)
	}
	r := modRevs(t, s)[key]
	if r[1] != got.LeaseID {
		t.Errorf("key on etcd lease %x, KeepAlive reported %x", r[1], got.LeaseID)
	}
	after, err := s.c.Get(ctxT(t, 10*time.Second), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Kvs) != 1 || !bytes.Equal(after.Kvs[0].Value, resp.Kvs[0].Value) {
		t.Errorf("re-bound key holds %q, want the record unchanged: %q", after.Kvs, resp.Kvs[0].Value)
	}
	ttl, err := s.c.TimeToLive(ctxT(t, 10*time.Second), clientv3.LeaseID(got.LeaseID))
	if err != nil || ttl.TTL <= 0 || ttl.GrantedTTL != 3600 {
		t.Errorf("new etcd lease: %+v, %v; want alive with the original TTL 3600", ttl, err)
	}
	waitHold(t, held)
	if k.finished() {
		t.Fatalf("KeepAlive stopped: %v", k.err)
	}
	if err := k.stop(); err != nil {
		t.Errorf("KeepAlive returned %v after cancel, want nil", err)
	}
	checkNoStoreGoroutines(t)
}

func TestKeepAliveNeverOverwritesOthers(t *testing.T) {
	s := newStore(t)
	cfg := mustParse(t, `{"Network": "10.244.0.0/16"}`)
	a, k, _ := claimAndHold(t, s, subnetClaim(cfg, "a"))

	// An operator evicts a, and another node claims the subnet at once.
	if _, err := s.Evict(ctxT(t, 10*time.Second), "a"); err != nil {
		t.Fatal(err)
	}
	b, err := s.Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: record("b"), Prev: a})
	if err != nil || b.Subnet != a.Subnet {
		t.Fatalf("b: %+v, %v", b, err)
	}
	waitFor(t, 5*time.Second, "KeepAlive to return", k.finished)
	if err := k.stop(); !errors.Is(err, subnet.ErrLeaseLost) {
		t.Fatalf("KeepAlive returned %v, want ErrLeaseLost", err)
	}
	resp, err := s.c.Get(ctxT(t, 10*time.Second), s.LeaseKey(a.Subnet))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatal(err)
	}
	var v value
	json.Unmarshal(resp.Kvs[0].Value, &v)
	if v.NodeName != "b" || resp.Kvs[0].Lease != b.LeaseID {
		t.Errorf("key now %+v on lease %x; want b's record on b's lease", v, resp.Kvs[0].Lease)
	}
}

// TestKeepAliveEtcdRestart stops etcd while a lease is held and starts it
// again on the same data directory and ports: the node keeps its subnet
// and its lease is kept alive again.
func TestKeepAliveEtcdRestart(t *testing.T) {
	// A short TTL, so that the outage outlasts it and the test can wait
	// out several TTLs after the restart.
	const ttl = 4 * time.Second
	s := New(Config{Client: newClient(t), Prefix: testPrefix(t), Log: testLogger(t), LeaseTTL: ttl})
	cfg := mustParse(t, `{"Network": "10.244.0.0/16"}`)
	a, k, _ := claimAndHold(t, s, subnet.ClaimRequest{Config: cfg, Record: record("a")})
	// A watcher rides out the outage too.
	w, stopWatch := runWatch(t, sibling(t, s))
	waitView(t, s, w)

	stopping := time.Now()
	server.Stop()
	stopped := time.Now()
	t.Logf("etcd stopped in %.2f s", stopped.Sub(stopping).Seconds())
	// Stay down for longer than the TTL: the client gives up on the
	// renewal stream and KeepAlive starts recovering.
	waitFor(t, 30*time.Second, "etcd to be down for longer than the TTL", func() bool { return time.Since(stopped) > ttl+time.Second })
	if err := server.Restart(); err != nil {
		t.Fatalf("restart etcd: %v", err)
	}
	t.Logf("etcd back after %.2f s", time.Since(stopped).Seconds())

	// Wait out three TTLs: the lease must be renewed all along.
	restarted := time.Now()
	waitFor(t, 30*time.Second, "three TTLs after the restart", func() bool {
		return k.finished() || time.Since(restarted) > 3*ttl
	})
	if k.finished() {
		t.Fatalf("KeepAlive returned %v", k.err)
	}
	resp, err := s.c.Get(ctxT(t, 10*time.Second), s.LeaseKey(a.Subnet))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("key after the restart: %+v, %v", resp, err)
	}
	kv := resp.Kvs[0]
	var v value
	json.Unmarshal(kv.Value, &v)
	if v.NodeID != a.Record.NodeID || kv.CreateRevision != a.Epoch {
		t.Errorf("key after the restart: %+v (create rev %d); want a's, epoch %d", v, kv.CreateRevision, a.Epoch)
	}
	live, err := s.c.TimeToLive(ctxT(t, 10*time.Second), clientv3.LeaseID(kv.Lease))
	if err != nil || live.TTL <= 0 {
		t.Fatalf("etcd lease of the key: %+v, %v", live, err)
	}
	if n := len(modRevs(t, s)); n != 1 {
		t.Errorf("%d lease keys, want 1", n)
	}
	// The watcher sees a change made after the restart.
	if _, err := s.Claim(ctxT(t, 10*time.Second), subnetClaim(cfg, "b")); err != nil {
		t.Fatal(err)
	}
	if v := waitView(t, s, w); len(v.Leases) != 2 {
		t.Errorf("view after the restart: %v", summary(v))
	}
	stopWatch()
	// The outage outlasted the TTL, so renewal broke and KeepAlive
	// recovered, reporting the lease etcd holds.
	l, n := k.lastChange()
	if n == 0 {
		t.Errorf("KeepAlive never recovered")
	} else if l.Subnet != a.Subnet || l.LeaseID != kv.Lease {
		t.Errorf("KeepAlive reported %+v, etcd has the key on lease %x", l, kv.Lease)
	}
	if err := k.stop(); err != nil {
		t.Errorf("KeepAlive returned %v, want nil after cancel", err)
	}
	checkNoStoreGoroutines(t)
}
