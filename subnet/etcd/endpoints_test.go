// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcd

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/subnet"
)

// podEndpoint returns endpoint i of lease l's node: the i-th addresses of
// its subnets and a few labels.
func podEndpoint(l *subnet.Lease, i int) subnet.Endpoint {
	e := subnet.Endpoint{
		Key: fmt.Sprintf("weft%08x", i),
		PodIdentity: subnet.PodIdentity{Namespace: "x", Name: fmt.Sprintf("pod-%d", i),
			Labels: map[string]string{"app": "web", "pod-template-hash": "5d8f7c9b4d", "app.kubernetes.io/part-of": "shop"}},
	}
	if l.Subnet.IsValid() {
		e.IPv4 = nthAddr(l.Subnet, 2+i%250)
	}
	if l.IPv6Subnet.IsValid() {
		e.IPv6 = nthAddr(l.IPv6Subnet, 2+i)
	}
	return e
}

func nthAddr(p netip.Prefix, n int) netip.Addr {
	a := p.Masked().Addr()
	for range n {
		a = a.Next()
	}
	return a
}

func withNode(node string, eps ...subnet.Endpoint) []subnet.Endpoint {
	out := make([]subnet.Endpoint, len(eps))
	for i, e := range eps {
		e.Node = node
		out[i] = e
	}
	return out
}

var cmpEndpoint = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

// TestEndpoints: a node publishes its endpoints bound to its etcd lease,
// publishing again changes nothing, drift in etcd is repaired, another
// node reads them checked against the leases, a lying record is rejected
// and reported, and the endpoints vanish with the node's lease.
func TestEndpoints(t *testing.T) {
	s := newStore(t)
	cfg := mustParse(t, `{"Network": "10.244.0.0/16", "IPv6Network": "fd10:244::/56"}`)
	a, err := s.Claim(ctxT(t, 10*time.Second), subnetClaim(cfg, "a"))
	if err != nil {
		t.Fatal(err)
	}
	r := sibling(t, s) // node b, the reader
	b, err := r.Claim(ctxT(t, 10*time.Second), subnetClaim(cfg, "b"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 60*time.Second)
	eps := []subnet.Endpoint{podEndpoint(a, 1), podEndpoint(a, 2)}
	if put, del, err := s.PublishEndpoints(ctx, a, eps); err != nil || put != 2 || del != 0 {
		t.Fatalf("publish: put %d deleted %d, %v", put, del, err)
	}
	if put, del, err := s.PublishEndpoints(ctx, a, eps); err != nil || put+del != 0 {
		t.Fatalf("publishing the same again: put %d deleted %d, %v", put, del, err)
	}
	resp, err := s.c.Get(ctx, s.NodeEndpointsPrefix("a"), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if kv.Lease != a.LeaseID {
			t.Errorf("%s is on etcd lease %x, want the node's %x", kv.Key, kv.Lease, a.LeaseID)
		}
		t.Logf("endpoint in etcd: %d bytes of key, %d bytes of value: %s", len(kv.Key), len(kv.Value), kv.Value)
	}

	v, err := r.ListEndpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(withNode("a", eps...), v.Endpoints, cmpEndpoint); diff != "" || len(v.Rejected) != 0 {
		t.Errorf("read by node b (-want +got):\n%s\nrejected: %v", diff, v.Rejected)
	}

	// Drift: one endpoint deleted by hand, one changed, one stranger put
	// below a's name: publishing repairs all three.
	k1, k2 := s.NodeEndpointsPrefix("a")+eps[0].Key, s.NodeEndpointsPrefix("a")+eps[1].Key
	if _, err := s.c.Delete(ctx, k1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.c.Put(ctx, k2, `{"namespace":"x","name":"evil","ipv4":"10.244.0.9"}`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.c.Put(ctx, s.NodeEndpointsPrefix("a")+"weft0000ffff", `{}`); err != nil {
		t.Fatal(err)
	}
	if put, del, err := s.PublishEndpoints(ctx, a, eps); err != nil || put != 2 || del != 1 {
		t.Fatalf("repair: put %d deleted %d, %v; want 2 and 1", put, del, err)
	}
	if v, err := r.ListEndpoints(ctx); err != nil || !cmp.Equal(withNode("a", eps...), v.Endpoints, cmpEndpoint) || len(v.Rejected) != 0 {
		t.Errorf("after the repair: %+v %v", v, err)
	}

	// Lying records written straight into etcd: node b claims a pod in
	// a's subnet, node c (no lease) one of its own, and garbage.
	lie := podEndpoint(a, 3)
	lie.IPv6 = netip.Addr{}
	lieVal, _ := encodeEndpoint(lie)
	puts := map[string]string{
		r.NodeEndpointsPrefix("b") + "weft0000000b": string(lieVal),
		r.NodeEndpointsPrefix("c") + "weft0000000c": string(lieVal),
		r.NodeEndpointsPrefix("b") + "weft0000000d": `{"namespace":"x","name":"d","ipv4":"10.244.0.9","extra":1}`,
		r.EndpointsPrefix() + "no-key":              `{}`,
	}
	for k, val := range puts {
		if _, err := s.c.Put(ctx, k, val); err != nil {
			t.Fatal(err)
		}
	}
	v, err = r.ListEndpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(withNode("a", eps...), v.Endpoints, cmpEndpoint) {
		t.Errorf("a lying record was accepted: %+v", v.Endpoints)
	}
	wantWhy := map[string]string{
		"b/weft0000000b": fmt.Sprintf("ipv4 %s is outside node \"b\"'s leased subnet [%s]", lie.IPv4, b.Subnet),
		"c/weft0000000c": `node "c" holds no lease`,
		"b/weft0000000d": "does not parse",
		"no-key":         "not <node>/<key>",
	}
	if len(v.Rejected) != len(wantWhy) {
		t.Errorf("rejected %v, want %d", v.Rejected, len(wantWhy))
	}
	for _, rj := range v.Rejected {
		if w, ok := wantWhy[rj.Key]; !ok || !strings.Contains(rj.Reason, w) {
			t.Errorf("rejected %s: %q, want %q", rj.Key, rj.Reason, w)
		}
	}
	for k := range puts {
		if _, err := s.c.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}

	// A watching reader sees a pod appear and disappear, and a's
	// endpoints vanish when a's etcd lease goes.
	w := startEndpointWatch(t, r)
	w.waitFor(t, "the first view", func(v subnet.EndpointView) bool { return len(v.Endpoints) == 2 })
	eps = append(eps, podEndpoint(a, 4))
	if _, _, err := s.PublishEndpoints(ctx, a, eps); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "a third pod", func(v subnet.EndpointView) bool { return len(v.Endpoints) == 3 })
	if _, _, err := s.PublishEndpoints(ctx, a, eps[1:]); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "the first pod gone", func(v subnet.EndpointView) bool {
		return len(v.Endpoints) == 2 && v.Endpoints[0].Key == eps[1].Key
	})
	// A lease record that changes a's address and tunnel data, not what
	// it holds, gives no new view: the view reads of leases only who holds
	// which subnets. The pod published after it (in the same stream) is
	// the one new view.
	w.mu.Lock()
	views := w.n
	w.mu.Unlock()
	rec := a.Record
	rec.PublicIP, rec.BackendData.VTEPMAC = netip.MustParseAddr("198.18.7.7"), "02:00:00:00:07:07"
	if a, err = s.UpdateRecord(ctx, a, rec); err != nil {
		t.Fatal(err)
	}
	eps = append(eps, podEndpoint(a, 5))
	if _, _, err := s.PublishEndpoints(ctx, a, eps[1:]); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "a fifth pod", func(v subnet.EndpointView) bool { return len(v.Endpoints) == 3 })
	w.mu.Lock()
	if w.n != views+1 {
		t.Errorf("%d views after a lease record changed only its address and a pod was added, want 1", w.n-views)
	}
	w.mu.Unlock()
	// A pod record of node c written by hand (on no etcd lease), read
	// while c holds its lease, is rejected once the lease goes: the
	// reader checks endpoints against who holds what now, not when it
	// last looked.
	c, err := sibling(t, s).Claim(ctx, subnetClaim(cfg, "c"))
	if err != nil {
		t.Fatal(err)
	}
	ce := podEndpoint(c, 1)
	ceVal, _ := encodeEndpoint(ce)
	if _, err := s.c.Put(ctx, s.NodeEndpointsPrefix("c")+ce.Key, string(ceVal)); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "c's pod while c holds its lease", func(v subnet.EndpointView) bool { return len(v.Endpoints) == 4 })
	if _, err := s.c.Revoke(ctx, clientv3.LeaseID(c.LeaseID)); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "c's pod rejected once its lease is gone", func(v subnet.EndpointView) bool {
		return len(v.Endpoints) == 3 && len(v.Rejected) == 1 && strings.Contains(v.Rejected[0].Reason, `node "c" holds no lease`)
	})
	if _, err := s.c.Delete(ctx, s.NodeEndpointsPrefix("c")+ce.Key); err != nil {
		t.Fatal(err)
	}
	if _, err := s.c.Revoke(ctx, clientv3.LeaseID(a.LeaseID)); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "a's endpoints gone with its lease", func(v subnet.EndpointView) bool { return len(v.Endpoints) == 0 })
	if resp, err := s.c.Get(ctx, s.NodeEndpointsPrefix("a"), clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || resp.Count != 0 {
		t.Errorf("a's endpoint keys after its lease was revoked: %d %v", resp.Count, err)
	}
	// A node whose lease is gone cannot publish.
	if _, _, err := s.PublishEndpoints(ctx, a, eps); !errors.Is(err, subnet.ErrLeaseLost) {
		t.Errorf("publishing on a lost lease: %v, want ErrLeaseLost", err)
	}
	w.stop(t)
}

// TestEndpointLimit: a node publishes at most subnet.MaxNodeEndpoints.
func TestEndpointLimit(t *testing.T) {
	s := newStore(t)
	cfg := mustParse(t, `{"Network": "10.244.0.0/16", "IPv6Network": "fd10:244::/56"}`)
	a, err := s.Claim(ctxT(t, 10*time.Second), subnetClaim(cfg, "a"))
	if err != nil {
		t.Fatal(err)
	}
	var eps []subnet.Endpoint
	for i := range subnet.MaxNodeEndpoints + 5 {
		eps = append(eps, podEndpoint(a, i))
	}
	ctx := ctxT(t, 60*time.Second)
	before, err := s.c.Status(ctx, server.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	put, _, err := s.PublishEndpoints(ctx, a, eps)
	if !errors.Is(err, ErrEndpointLimit) || put != subnet.MaxNodeEndpoints {
		t.Fatalf("publish %d: put %d, %v; want %d and ErrEndpointLimit", len(eps), put, err, subnet.MaxNodeEndpoints)
	}
	v, err := s.ListEndpoints(ctx)
	if err != nil || len(v.Endpoints) != subnet.MaxNodeEndpoints {
		t.Fatalf("listed %d endpoints (%v), want %d", len(v.Endpoints), err, subnet.MaxNodeEndpoints)
	}
	// What an endpoint costs etcd: the growth of the database in use
	// (bbolt pages: key, value and revision metadata) per endpoint.
	// The backend commits in batches: wait for the size to move.
	var after *clientv3.StatusResponse
	deadline := time.Now().Add(5 * time.Second)
	for {
		if after, err = s.c.Status(ctx, server.Endpoint()); err != nil {
			t.Fatal(err)
		}
		if after.DbSizeInUse != before.DbSizeInUse || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var kv int
	resp, err := s.c.Get(ctx, s.NodeEndpointsPrefix("a"), clientv3.WithPrefix(), clientv3.WithLimit(1))
	if err == nil && len(resp.Kvs) == 1 {
		kv = len(resp.Kvs[0].Key) - len(s.Prefix()) + len(DefaultPrefix) + len(resp.Kvs[0].Value)
	}
	t.Logf("%d endpoints: %d bytes of key and value each (with prefix %s); database in use grew %d bytes, %.0f per endpoint",
		subnet.MaxNodeEndpoints, kv, DefaultPrefix, after.DbSizeInUse-before.DbSizeInUse,
		float64(after.DbSizeInUse-before.DbSizeInUse)/float64(subnet.MaxNodeEndpoints))
}

type endpointWatch struct {
	cancel context.CancelFunc
	done   chan error
	mu     sync.Mutex
	last   subnet.EndpointView
	n      int
}

func startEndpointWatch(t *testing.T, s *Store) *endpointWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &endpointWatch{cancel: cancel, done: make(chan error, 1)}
	go func() {
		w.done <- s.WatchEndpoints(ctx, func(v subnet.EndpointView) {
			w.mu.Lock()
			w.last, w.n = v, w.n+1
			w.mu.Unlock()
		})
	}()
	t.Cleanup(func() { w.stop(t) })
	return w
}

func (w *endpointWatch) waitFor(t *testing.T, what string, cond func(subnet.EndpointView) bool) {
	t.Helper()
	waitFor(t, 10*time.Second, what, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.n > 0 && cond(w.last)
	})
}

func (w *endpointWatch) stop(t *testing.T) {
	if w.cancel == nil {
		return
	}
	w.cancel()
	w.cancel = nil
	if err := <-w.done; err != nil {
		t.Errorf("WatchEndpoints: %v", err)
	}
}
