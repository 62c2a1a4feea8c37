// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcd

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/subnet"
)

// BenchmarkClaim measures one claim (list, grant, transaction) of a new
// node against the embedded etcd, in a network of 65536 subnets that
// holds 100 other leases. Each claimed lease is revoked again (untimed)
// so that every iteration sees the same store.
func BenchmarkClaim(b *testing.B) {
	s := New(Config{Client: newClient(b), Prefix: testPrefix(b), LeaseTTL: time.Hour})
	cfg := mustParse(b, `{"Network": "10.0.0.0/8"}`)
	ctx := ctxT(b, time.Hour)
	for i := range 100 {
		if _, err := s.Claim(ctx, subnet.ClaimRequest{Config: cfg, Record: record(fmt.Sprintf("other-%d", i))}); err != nil {
			b.Fatal(err)
		}
	}
	i := 0
	for b.Loop() {
		i++
		l, err := s.Claim(ctx, subnet.ClaimRequest{Config: cfg, Record: record(fmt.Sprintf("bench-%d", i))})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if _, err := s.c.Revoke(ctx, clientv3.LeaseID(l.LeaseID)); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkClaimContention200 measures 200 nodes claiming at once in a
// /16 of 256 subnets (one op = all 200 claims), each iteration on a fresh
// prefix.
func BenchmarkClaimContention200(b *testing.B) {
	cfg := mustParse(b, `{"Network": "10.244.0.0/16"}`)
	base := New(Config{Client: newClient(b), Prefix: testPrefix(b), LeaseTTL: time.Hour})
	clients := []*Store{base, sibling(b, base), sibling(b, base), sibling(b, base)}
	ctx := ctxT(b, time.Hour)
	for b.Loop() {
		b.StopTimer()
		prefix := testPrefix(b)
		stores := make([]*Store, len(clients))
		for i, c := range clients {
			stores[i] = New(Config{Client: c.c, Prefix: prefix, LeaseTTL: time.Hour})
		}
		b.StartTimer()
		if err := claimAll(ctx, stores, cfg, 200); err != nil {
			b.Fatal(err)
		}
	}
}

// claimAll runs n concurrent claims of distinct nodes over stores and
// checks that they got distinct subnets.
func claimAll(ctx context.Context, stores []*Store, cfg *subnet.Config, n int) error {
	leases := make([]*subnet.Lease, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			leases[i], errs[i] = stores[i%len(stores)].Claim(ctx, subnet.ClaimRequest{
				Config: cfg, Record: record(fmt.Sprintf("node-%03d", i))})
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			return errs[i]
		}
		if p := leases[i].Subnet.String(); seen[p] {
			return fmt.Errorf("%s handed out twice", p)
		} else {
			seen[p] = true
		}
	}
	return nil
}

// BenchmarkEndpointView measures the endpoint reader's view after a pod
// event, 5000 nodes of 30 pods (150 000). TestBenchEndpointView (make
// bench) sets it beside the view of 1000 endpoints.
func BenchmarkEndpointView(b *testing.B) {
	es := benchEndpointSet(b, 5000, 30)
	for b.Loop() {
		es.view()
	}
}

// benchEndpointSet is an endpoint reader's state of nodes leases (one
// /24 each) and pods valid endpoints on each; the first view is checked.
func benchEndpointSet(tb testing.TB, nodes, pods int) *endpointSet {
	es := &endpointSet{leases: map[netip.Prefix]*entry{}, eps: map[string]subnet.Endpoint{}, bad: map[string]string{}}
	for i := range nodes {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)
		name := fmt.Sprintf("node-%d", i)
		es.leases[p] = &entry{subnet: p, ok: true, val: value{Record: subnet.Record{NodeName: name, NodeID: name}, Subnet: p}}
		for j := range pods {
			a := p.Addr().As4()
			a[3] = byte(2 + j)
			e := subnet.Endpoint{Node: name, Key: fmt.Sprintf("weft%08x", j), IPv4: netip.AddrFrom4(a),
				PodIdentity: subnet.PodIdentity{Namespace: "x", Name: fmt.Sprintf("pod-%d-%d", i, j)}}
			es.eps[name+"/"+e.Key] = e
		}
	}
	if v := es.view(); len(v.Endpoints) != nodes*pods || len(v.Rejected) != 0 {
		tb.Fatalf("view: %d endpoints, %d rejected, want %d and 0", len(v.Endpoints), len(v.Rejected), nodes*pods)
	}
	return es
}
