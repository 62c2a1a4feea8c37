// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/weftnet/weft/subnet"
)

// wireCount counts the unary gRPC calls of a client (its etcd round trips)
// and the bytes of their requests and replies (protobuf sizes).
type wireCount struct{ calls, sent, recv atomic.Int64 }

func (w *wireCount) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	w.calls.Add(1)
	if m, ok := req.(proto.Message); ok {
		w.sent.Add(int64(proto.Size(m)))
	}
	if m, ok := reply.(proto.Message); ok && err == nil {
		w.recv.Add(int64(proto.Size(m)))
	}
	return err
}

// snap returns the counts so far: calls, bytes sent, bytes received.
func (w *wireCount) snap() (int64, int64, int64) { return w.calls.Load(), w.sent.Load(), w.recv.Load() }

// countingStore returns a store on prefix whose client counts its calls.
func countingStore(t testing.TB, prefix string) (*Store, *wireCount) {
	t.Helper()
	w := &wireCount{}
	c, err := clientv3.New(clientv3.Config{
		Endpoints: []string{server.Endpoint()}, DialTimeout: 10 * time.Second, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(w.intercept)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return New(Config{Client: c, Prefix: prefix, LeaseTTL: time.Hour}), w
}

// writeLeases writes n lease records of distinct nodes straight into
// etcd, in the documented layout (one key per subnet, on one etcd lease
// per 128 keys), taking the first n subnets of cfg's IPv4 space. It is how
// the tests and the benchmark simulate a large cluster.
func writeLeases(t testing.TB, s *Store, cfg *subnet.Config, n int) {
	t.Helper()
	ctx := ctxT(t, 5*time.Minute)
	sp := cfg.IPv4Space()
	for lo := 0; lo < n; lo += 128 {
		g, err := s.c.Grant(ctx, 3600)
		if err != nil {
			t.Fatal(err)
		}
		var ops []clientv3.Op
		for i := lo; i < min(lo+128, n); i++ {
			q := sp.Subnet(uint64(i))
			rec := record(fmt.Sprintf("sim-%05d", i))
			rec.PublicIP = netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
			data, err := json.Marshal(value{Record: rec, Subnet: q})
			if err != nil {
				t.Fatal(err)
			}
			ops = append(ops, clientv3.OpPut(s.LeaseKey(q), string(data), clientv3.WithLease(g.ID)))
		}
		if _, err := s.c.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestClaimQuickCost: with 2000 leases held, a claim of a new node and a
// restarted node's claim (no Prev: found through its name index entry)
// cost a few round trips and a few kilobytes, and list nothing; the first
// claim after records were written by something that keeps no lengths
// marker lists once and writes it.
func TestClaimQuickCost(t *testing.T) {
	s, w := countingStore(t, testPrefix(t))
	cfg := mustParse(t, `{"Network": "10.0.0.0/12"}`) // 4096 /24s
	writeLeases(t, s, cfg, 2000)
	ctx := ctxT(t, time.Minute)
	if _, err := s.Claim(ctx, subnetClaim(cfg, "first")); err != nil {
		t.Fatal(err)
	}
	if got := s.claimLists.Load(); got != 1 {
		t.Errorf("first claim with no marker: %d listings, want 1", got)
	}
	for _, name := range []string{"new", "new"} { // a new node, then the same node again
		c0, s0, r0 := w.snap()
		l, err := s.Claim(ctx, subnetClaim(cfg, name))
		if err != nil {
			t.Fatal(err)
		}
		c1, s1, r1 := w.snap()
		t.Logf("claim of %s (%s): %d round trips, %d bytes sent, %d received", name, l.Subnet, c1-c0, s1-s0, r1-r0)
		// read, candidates, grant, transaction; a re-claim also revokes
		// the old etcd lease.
		if c1-c0 > 6 || r1-r0 > 8000 || s1-s0 > 8000 {
			t.Errorf("claim of %s: %d round trips, %d + %d bytes; want at most 6 and 8000 bytes each way (a listing is ~%d kB)",
				name, c1-c0, s1-s0, r1-r0, 2000*150/1000)
		}
	}
	if got := s.claimLists.Load(); got != 1 {
		t.Errorf("%d listings, want only the first claim's", got)
	}
	view, err := s.List(ctx)
	if err != nil || len(view.Leases) != 2002 {
		t.Fatalf("List: %d leases, %v; want 2002 (the re-claim kept its subnet)", len(view.Leases), err)
	}
}

// TestClaimQuickConcurrent: 200 concurrent claimers in a sparse network
// take the quick path only (no listing) and get distinct subnets; etcd
// agrees with what each was told.
func TestClaimQuickConcurrent(t *testing.T) {
	s := newStore(t)
	cfg := mustParse(t, `{"Network": "10.0.0.0/12"}`)
	if _, err := s.Claim(ctxT(t, 10*time.Second), subnetClaim(cfg, "first")); err != nil {
		t.Fatal(err)
	}
	stores := []*Store{sibling(t, s), sibling(t, s), sibling(t, s), sibling(t, s)}
	if err := claimAll(ctxT(t, time.Minute), stores, cfg, 200); err != nil {
		t.Fatal(err)
	}
	var lists, conflicts int64
	for _, st := range stores {
		lists += st.claimLists.Load()
		conflicts += st.claimConflicts.Load()
	}
	t.Logf("200 claims: %d listings, %d lost races", lists, conflicts)
	if lists != 0 {
		t.Errorf("%d claims listed all keys in a network 5%% full; want 0", lists)
	}
	kv := keysIn(t, s, s.LeasesPrefix())
	owners := map[string]bool{}
	for _, v := range kv {
		owners[v.NodeID] = true
	}
	if len(kv) != 201 || len(owners) != 201 {
		t.Errorf("etcd holds %d keys of %d owners, want 201 of 201", len(kv), len(owners))
	}
}

// TestClaimNearlyFull: in a network of 64 subnets, 62 concurrent claimers
// and then two more find every subnet, the random candidates missing the
// last ones and the listing finding them; then the network is exhausted,
// said from the listing with the network and its size.
func TestClaimNearlyFull(t *testing.T) {
	s := newStore(t)
	cfg := mustParse(t, `{"Network": "10.244.0.0/24", "SubnetLen": 30}`)
	stores := []*Store{s, sibling(t, s), sibling(t, s), sibling(t, s)}
	if err := claimAll(ctxT(t, time.Minute), stores, cfg, 62); err != nil {
		t.Fatal(err)
	}
	lists := s.claimLists.Load()
	var got []netip.Prefix
	for _, name := range []string{"last-1", "last-2"} {
		l, err := s.Claim(ctxT(t, 10*time.Second), subnetClaim(cfg, name))
		if err != nil {
			t.Fatalf("claim %s with %d subnets free: %v", name, 64-62-len(got), err)
		}
		got = append(got, l.Subnet)
	}
	if len(keysIn(t, s, s.LeasesPrefix())) != 64 {
		t.Fatalf("etcd holds %d keys, want all 64", len(keysIn(t, s, s.LeasesPrefix())))
	}
	_, err := s.Claim(ctxT(t, 10*time.Second), subnetClaim(cfg, "one-too-many"))
	if !errors.Is(err, subnet.ErrExhausted) || err.Error() != "network exhausted: all 64 /30 subnets of 10.244.0.0/24 are leased" {
		t.Fatalf("claim in a full network: %v", err)
	}
	if s.claimLists.Load() == lists {
		t.Errorf("no claim listed the keys; exhaustion must come from a listing")
	}
	checkNoOverlap(t, s)
}

// TestClaimQuickAvoidsTombstones: with 30 of 64 subnets recently released
// and 2 held, 32 new nodes all get subnets never released; the 33rd gets a
// released one (the listing's last resort), not an error.
func TestClaimQuickAvoidsTombstones(t *testing.T) {
	s := newStore(t)
	cfg := mustParse(t, `{"Network": "10.244.0.0/24", "SubnetLen": 30}`)
	ctx := ctxT(t, 2*time.Minute)
	released := map[netip.Prefix]bool{}
	for i := range 32 {
		l, err := s.Claim(ctx, subnetClaim(cfg, fmt.Sprintf("old-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if i < 30 {
			if err := s.Release(ctx, l); err != nil {
				t.Fatal(err)
			}
			released[l.Subnet] = true
		}
	}
	lists := s.claimLists.Load()
	for i := range 32 {
		l, err := s.Claim(ctx, subnetClaim(cfg, fmt.Sprintf("new-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if released[l.Subnet] {
			t.Fatalf("new-%d got %s, released a moment ago, while %d never-released subnets were free", i, l.Subnet, 32-i)
		}
	}
	t.Logf("32 claims beside 30 tombstones: %d listings", s.claimLists.Load()-lists)
	l, err := s.Claim(ctx, subnetClaim(cfg, "late"))
	if err != nil || !released[l.Subnet] {
		t.Fatalf("claim with only released subnets free: %+v, %v; want a released one", l, err)
	}
}

// TestClaimNameRace: nodes of one name but different node IDs claiming at
// once: exactly one gets a lease, every other is refused with
// ErrNodeConflict (the name index entry guards the transaction).
func TestClaimNameRace(t *testing.T) {
	s := newStore(t)
	cfg := mustParse(t, `{"Network": "10.244.0.0/16"}`)
	if _, err := s.Claim(ctxT(t, 10*time.Second), subnetClaim(cfg, "bystander")); err != nil {
		t.Fatal(err)
	}
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	ready := make(chan struct{})
	for i := range n {
		st := sibling(t, s)
		wg.Go(func() {
			rec := record("twin")
			rec.NodeID = fmt.Sprintf("twin-id-%d", i)
			<-ready
			_, errs[i] = st.Claim(ctxT(t, 30*time.Second), subnet.ClaimRequest{Config: cfg, Record: rec})
		})
	}
	close(ready)
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, subnet.ErrNodeConflict):
			t.Errorf("twin %d: %v, want success or ErrNodeConflict", i, err)
		}
	}
	if won != 1 {
		t.Errorf("%d twins got a lease, want exactly 1", won)
	}
	twins := 0
	for _, v := range keysIn(t, s, s.LeasesPrefix()) {
		if v.NodeName == "twin" {
			twins++
		}
	}
	if twins != 1 {
		t.Errorf("etcd holds %d keys named twin, want 1", twins)
	}
}

// TestClaimLengthsMarker: after a forced SubnetLen change the marker names
// both lengths and claims list (the overlap guard); once the leases of the
// old length are gone, a listing claim shrinks the marker and claims are
// quick again.
func TestClaimLengthsMarker(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t, time.Minute)
	old := mustParse(t, `{"Network": "10.244.0.0/16"}`)
	a, err := s.Claim(ctx, subnetClaim(old, "a"))
	if err != nil {
		t.Fatal(err)
	}
	marker := func() string {
		t.Helper()
		resp, err := s.c.Get(ctx, s.LengthsKey())
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("marker: %+v, %v", resp, err)
		}
		return string(resp.Kvs[0].Value)
	}
	if m := marker(); m != `{"ipv4":[24],"ipv6":[]}` {
		t.Errorf("marker %s", m)
	}
	cfg := mustParse(t, `{"Network": "10.244.0.0/16", "SubnetLen": 25}`)
	lists := s.claimLists.Load()
	if _, err := s.Claim(ctx, subnetClaim(cfg, "b")); err != nil {
		t.Fatal(err)
	}
	if s.claimLists.Load() == lists {
		t.Errorf("a claim at /25 beside a /24 lease did not list the keys")
	}
	if m := marker(); m != `{"ipv4":[24,25],"ipv6":[]}` {
		t.Errorf("marker %s, want both lengths", m)
	}
	if err := s.Release(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, subnetClaim(cfg, "c")); err != nil {
		t.Fatal(err)
	}
	if m := marker(); m != `{"ipv4":[25],"ipv6":[]}` {
		t.Errorf("marker %s after the /24 lease went, want only /25", m)
	}
	lists = s.claimLists.Load()
	if _, err := s.Claim(ctx, subnetClaim(cfg, "d")); err != nil {
		t.Fatal(err)
	}
	if got := s.claimLists.Load() - lists; got != 0 {
		t.Errorf("claim with one length left: %d listings, want 0", got)
	}
	checkNoOverlap(t, s)
}
