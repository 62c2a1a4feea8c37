// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcd

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/subnet"
)

// keysIn returns the raw keys and values under prefix.
func keysIn(t testing.TB, s *Store, prefix string) map[string]value {
	t.Helper()
	resp, err := s.c.Get(ctxT(t, 10*time.Second), prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]value{}
	for _, kv := range resp.Kvs {
		var v value
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			t.Fatalf("%s: %v", kv.Key, err)
		}
		out[string(kv.Key)] = v
	}
	return out
}

func TestClaimConcurrent200(t *testing.T) {
	s := newStore(t)
	cfg := mustParse(t, `{"Network": "10.244.0.0/16"}`)
	// Four clients, as if 200 nodes shared four etcd connections.
	stores := []*Store{s, sibling(t, s), sibling(t, s), sibling(t, s)}
	const n = 200
	leases := make([]*subnet.Lease, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			leases[i], errs[i] = stores[i%len(stores)].Claim(ctxT(t, 60*time.Second),
				subnet.ClaimRequest{Config: cfg, Record: record(fmt.Sprintf("node-%03d", i))})
		})
	}
	wg.Wait()
	t.Logf("%d concurrent claims took %.3f s", n, time.Since(start).Seconds())
	bySubnet := map[netip.Prefix]string{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("claim %d: %v", i, errs[i])
		}
		p := leases[i].Subnet
		if other, dup := bySubnet[p]; dup {
			t.Fatalf("%s given to both %s and %s", p, other, leases[i].Record.NodeName)
		}
		if !cfg.IPv4Space().Contains(p) {
			t.Fatalf("%s is not a subnet of the network", p)
		}
		bySubnet[p] = leases[i].Record.NodeName
	}
	// etcd itself holds 200 keys with 200 distinct owners, each the node
	// that was told it won.
	kv := keysIn(t, s, s.LeasesPrefix())
	if len(kv) != n {
		t.Fatalf("etcd holds %d lease keys, want %d", len(kv), n)
	}
	owners := map[string]bool{}
	for key, v := range kv {
		owners[v.NodeID] = true
		p, _ := subnet.ParseKeyName(strings.TrimPrefix(key, s.LeasesPrefix()))
		if bySubnet[p] != v.NodeName {
			t.Errorf("%s: etcd says %s, the claim said %s", key, v.NodeName, bySubnet[p])
		}
	}
	if len(owners) != n {
		t.Errorf("etcd holds %d distinct owners, want %d", len(owners), n)
	}
}

func TestClaimRaceOneKey(t *testing.T) {
	s := newStore(t)
	cfg := mustParse(t, `{"Network": "10.244.0.0/16"}`)
	want := netip.MustParsePrefix("10.244.7.0/24")
	const n = 50
	leases := make([]*subnet.Lease, n)
	var wg sync.WaitGroup
	ready := make(chan struct{})
	for i := range n {
		st := sibling(t, s)
		wg.Go(func() {
			<-ready
			var err error
			leases[i], err = st.Claim(ctxT(t, 60*time.Second), subnet.ClaimRequest{
				Config: cfg, Record: record(fmt.Sprintf("racer-%02d", i)),
				Prev: &subnet.Lease{Subnet: want},
			})
			if err != nil {
				t.Errorf("racer %d: %v", i, err)
			}
		})
	}
	close(ready)
	wg.Wait()
	if t.Failed() {
		return
	}
	var winners []string
	for _, l := range leases {
		if l.Subnet == want {
			winners = append(winners, l.Record.NodeName)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d racers got %s: %v; want exactly one", len(winners), want, winners)
	}
	kv := keysIn(t, s, s.LeaseKey(want))
	if got := kv[s.LeaseKey(want)].NodeName; got != winners[0] {
		t.Errorf("etcd says %s holds %s, the winner was %s", got, want, winners[0])
	}
	if got := len(keysIn(t, s, s.LeasesPrefix())); got != n {
		t.Errorf("etcd holds %d keys, want %d (every loser got another subnet)", got, n)
	}
}

func TestClaimDualStack(t *testing.T) {
	s := newStore(t)
	// 16 IPv6 subnets for 256 IPv4 ones: IPv6 is the scarce family.
	cfg := mustParse(t, `{"Network": "10.244.0.0/16", "IPv6Network": "fd10:244::/60"}`)
	const n = 16
	leases := make([]*subnet.Lease, n)
	var wg sync.WaitGroup
	for i := range n {
		st := sibling(t, s)
		wg.Go(func() {
			var err error
			leases[i], err = st.Claim(ctxT(t, 60*time.Second), subnet.ClaimRequest{Config: cfg, Record: record(fmt.Sprintf("ds-%02d", i))})
			if err != nil {
				t.Errorf("claim %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	seen4, seen6 := map[netip.Prefix]bool{}, map[netip.Prefix]bool{}
	for _, l := range leases {
		if !l.Subnet.IsValid() || !l.IPv6Subnet.IsValid() {
			t.Fatalf("lease %+v lacks a family", l)
		}
		if seen4[l.Subnet] || seen6[l.IPv6Subnet] {
			t.Fatalf("duplicate subnet in %+v", l)
		}
		seen4[l.Subnet], seen6[l.IPv6Subnet] = true, true
	}
	// Both keys of a lease are on one etcd lease and name each other.
	resp, err := s.c.Get(ctxT(t, 10*time.Second), s.LeasesPrefix(), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 2*n {
		t.Fatalf("etcd holds %d keys, want %d", len(resp.Kvs), 2*n)
	}
	for _, l := range leases {
		for _, p := range []netip.Prefix{l.Subnet, l.IPv6Subnet} {
			r, err := s.c.Get(ctxT(t, 10*time.Second), s.LeaseKey(p))
			if err != nil || len(r.Kvs) != 1 {
				t.Fatalf("get %s: %v", p, err)
			}
			var v value
			json.Unmarshal(r.Kvs[0].Value, &v)
			if r.Kvs[0].Lease != l.LeaseID || v.Subnet != l.Subnet || v.IPv6Subnet != l.IPv6Subnet || v.NodeID != l.Record.NodeID {
				t.Errorf("key %s: lease %x value %+v; want lease %x of %+v", p, r.Kvs[0].Lease, v, l.LeaseID, l)
			}
		}
	}
	// List pairs them back.
	view, err := s.List(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(view.Leases) != n {
		t.Fatalf("List returned %d leases, want %d", len(view.Leases), n)
	}
	byName := map[string]subnet.Lease{}
	for _, l := range view.Leases {
		byName[l.Record.NodeName] = l
	}
	for _, l := range leases {
		got := byName[l.Record.NodeName]
		if got.Subnet != l.Subnet || got.IPv6Subnet != l.IPv6Subnet || got.Epoch != l.Epoch {
			t.Errorf("List has %+v, Claim said %+v", got, l)
		}
	}
	// The 17th dual-stack node exhausts the IPv6 network; nothing is written.
	_, err = s.Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: record("one-too-many")})
	if !errors.Is(err, subnet.ErrExhausted) {
		t.Fatalf("17th claim: %v, want ErrExhausted", err)
	}
	if want := "network exhausted: all 16 /64 subnets of fd10:244::/60 are leased"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if got := len(keysIn(t, s, s.LeasesPrefix())); got != 2*n {
		t.Errorf("after a failed claim etcd holds %d keys, want %d", got, 2*n)
	}
}

func TestClaimIPv6Only(t *testing.T) {
	s := newStore(t)
	cfg := mustParse(t, `{"IPv6Network": "fd10:244::/56", "Backend": {"Type": "wireguard"}}`)
	l, err := s.Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: record("six")})
	if err != nil {
		t.Fatal(err)
	}
	if l.Subnet.IsValid() || !cfg.IPv6Space().Contains(l.IPv6Subnet) || l.Primary() != l.IPv6Subnet {
		t.Fatalf("lease %+v", l)
	}
	view, err := s.List(ctxT(t, 10*time.Second))
	if err != nil || len(view.Leases) != 1 || view.Leases[0].IPv6Subnet != l.IPv6Subnet || view.Leases[0].Epoch != l.Epoch {
		t.Fatalf("List = %+v, %v", view, err)
	}
}

func TestClaimExhausted(t *testing.T) {
	s := newStore(t)
	cfg := mustParse(t, `{"Network": "10.244.0.0/29", "SubnetLen": 30}`)
	for _, name := range []string{"a", "b"} {
		if _, err := s.Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: record(name)}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: record("c")})
	if !errors.Is(err, subnet.ErrExhausted) {
		t.Fatalf("third claim: %v, want ErrExhausted", err)
	}
	if want := "network exhausted: all 2 /30 subnets of 10.244.0.0/29 are leased"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	// The granted etcd lease of the failed claim is revoked again: only
	// the two claims' leases remain.
	leases, err := s.c.Leases(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[int64]bool{}
	for _, l := range leases.Leases {
		ids[int64(l.ID)] = true
	}
	view, _ := s.List(ctxT(t, 10*time.Second))
	for _, l := range view.Leases {
		if !ids[l.LeaseID] {
			t.Errorf("lease %x of %s not found", l.LeaseID, l.Record.NodeName)
		}
	}
}

func TestClaimRestartSameSubnet(t *testing.T) {
	s := newStore(t)
	cfg := mustParse(t, `{"Network": "10.244.0.0/16", "IPv6Network": "fd10:244::/56"}`)
	first, err := s.Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: record("n1")})
	if err != nil {
		t.Fatal(err)
	}
	// Other nodes come and go meanwhile.
	for i := range 5 {
		if _, err := s.Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: record(fmt.Sprintf("other-%d", i))}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("record in etcd", func(t *testing.T) {
		// A restarted daemon: new process (new client), no Prev.
		rec := record("n1")
		rec.Version = 2
		rec.PublicIP = netip.MustParseAddr("198.18.0.7")
		again, err := sibling(t, s).Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: rec})
		if err != nil {
			t.Fatal(err)
		}
		if again.Subnet != first.Subnet || again.IPv6Subnet != first.IPv6Subnet || again.Epoch != first.Epoch {
			t.Fatalf("after restart got %+v, want the subnets and epoch of %+v", again, first)
		}
		if again.LeaseID == first.LeaseID {
			t.Errorf("the re-claim kept the old etcd lease")
		}
		// The record carries the new data; the old etcd lease is revoked.
		if got := keysIn(t, s, s.LeaseKey(first.Subnet))[s.LeaseKey(first.Subnet)]; got.PublicIP != rec.PublicIP || got.Version != 2 {
			t.Errorf("record after re-claim: %+v", got)
		}
		ttl, err := s.c.TimeToLive(ctxT(t, 10*time.Second), clientv3.LeaseID(first.LeaseID))
		if err != nil || ttl.TTL > 0 {
			t.Errorf("old etcd lease still alive: %+v, %v", ttl, err)
		}
		if got := len(keysIn(t, s, s.LeasesPrefix())); got != 12 {
			t.Errorf("etcd holds %d keys, want 12", got)
		}
		first = again
	})

	t.Run("record gone, Prev from the state dir", func(t *testing.T) {
		if _, err := s.c.Revoke(ctxT(t, 10*time.Second), clientv3.LeaseID(first.LeaseID)); err != nil {
			t.Fatal(err)
		}
		again, err := sibling(t, s).Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: record("n1"), Prev: first})
		if err != nil {
			t.Fatal(err)
		}
		if again.Subnet != first.Subnet || again.IPv6Subnet != first.IPv6Subnet {
			t.Fatalf("got %+v, want the subnets of %+v", again, first)
		}
		if again.Epoch <= first.Epoch {
			t.Errorf("a new claim must have a new epoch: %d, before %d", again.Epoch, first.Epoch)
		}
		first = again
	})

	t.Run("Prev taken by another node", func(t *testing.T) {
		if _, err := s.c.Revoke(ctxT(t, 10*time.Second), clientv3.LeaseID(first.LeaseID)); err != nil {
			t.Fatal(err)
		}
		thief, err := s.Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: record("thief"), Prev: first})
		if err != nil || thief.Subnet != first.Subnet {
			t.Fatalf("thief got %+v, %v", thief, err)
		}
		again, err := s.Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: record("n1"), Prev: first})
		if err != nil {
			t.Fatal(err)
		}
		if again.Subnet == first.Subnet {
			t.Fatalf("n1 took %s from the node holding it", again.Subnet)
		}
		if got := keysIn(t, s, s.LeaseKey(first.Subnet))[s.LeaseKey(first.Subnet)].NodeName; got != "thief" {
			t.Errorf("%s now held by %q, want thief", first.Subnet, got)
		}
	})
}

func TestClaimNodeConflict(t *testing.T) {
	s := newStore(t)
	cfg := mustParse(t, `{"Network": "10.244.0.0/16"}`)
	l, err := s.Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: record("twin")})
	if err != nil {
		t.Fatal(err)
	}
	other := record("twin")
	other.NodeID = "a-different-id"
	_, err = sibling(t, s).Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: other, Prev: l})
	if !errors.Is(err, subnet.ErrNodeConflict) {
		t.Fatalf("claim by a second node named twin: %v, want ErrNodeConflict", err)
	}
	for _, want := range []string{"id-twin", "a-different-id", l.Subnet.String(), "weftctl leases rm"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	kv := keysIn(t, s, s.LeasesPrefix())
	if len(kv) != 1 || kv[s.LeaseKey(l.Subnet)].NodeID != "id-twin" {
		t.Errorf("etcd after the refused claim: %+v", kv)
	}
}

func TestReleaseTombstone(t *testing.T) {
	s := newStore(t)
	// Four subnets.
	cfg := mustParse(t, `{"Network": "10.244.0.0/28", "SubnetLen": 30}`)
	a, err := s.Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: record("a")})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctxT(t, 10*time.Second), a); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctxT(t, 10*time.Second), a); err != nil {
		t.Errorf("second release: %v", err)
	}
	resp, err := s.c.Get(ctxT(t, 10*time.Second), s.ReleasedKey(a.Subnet))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("tombstone: %+v, %v", resp, err)
	}
	ttl, err := s.c.TimeToLive(ctxT(t, 10*time.Second), clientv3.LeaseID(resp.Kvs[0].Lease))
	if err != nil || ttl.TTL <= 0 || ttl.GrantedTTL != 3600 {
		t.Fatalf("tombstone lease: %+v, %v; want a TTL of 3600 s", ttl, err)
	}
	// The three others are handed out before the released one.
	for _, name := range []string{"b", "c", "d"} {
		l, err := s.Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: record(name)})
		if err != nil {
			t.Fatal(err)
		}
		if l.Subnet == a.Subnet {
			t.Fatalf("%s got the released subnet %s while others were free", name, a.Subnet)
		}
	}
	e, err := s.Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: record("e")})
	if err != nil || e.Subnet != a.Subnet {
		t.Fatalf("last claim: %+v, %v; want the released subnet", e, err)
	}
	if resp, _ := s.c.Get(ctxT(t, 10*time.Second), s.ReleasedKey(a.Subnet)); len(resp.Kvs) != 0 {
		t.Errorf("tombstone of %s still there after it was claimed", a.Subnet)
	}
}

func TestUpdateRecord(t *testing.T) {
	s := newStore(t)
	cfg := mustParse(t, `{"Network": "10.244.0.0/16", "IPv6Network": "fd10:244::/56"}`)
	l, err := s.Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: record("u")})
	if err != nil {
		t.Fatal(err)
	}
	rec := l.Record
	rec.PublicIP = netip.MustParseAddr("198.18.0.9")
	rec.BackendData.VTEPMAC = "02:00:00:00:00:09"
	rec.Version++
	nl, err := s.UpdateRecord(ctxT(t, 10*time.Second), l, rec)
	if err != nil {
		t.Fatal(err)
	}
	if nl.Epoch != l.Epoch || nl.LeaseID != l.LeaseID || nl.ModRevision <= l.ModRevision || nl.Record != rec {
		t.Errorf("updated lease %+v from %+v", nl, l)
	}
	kv := keysIn(t, s, s.LeasesPrefix())
	for _, p := range []netip.Prefix{l.Subnet, l.IPv6Subnet} {
		if diff := cmp.Diff(rec, kv[s.LeaseKey(p)].Record, cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); diff != "" {
			t.Errorf("%s (-want +got):\n%s", p, diff)
		}
	}
	// With a stale lease (old ModRevision) the update still works: it
	// re-reads and checks the node ID, not the revision it was given.
	rec.Version++
	if _, err := s.UpdateRecord(ctxT(t, 10*time.Second), l, rec); err != nil {
		t.Errorf("update from a stale lease: %v", err)
	}
	// Someone else's record is never overwritten.
	if _, err := s.Evict(ctxT(t, 10*time.Second), "u"); err != nil {
		t.Fatal(err)
	}
	squatter, err := s.Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: record("squatter"), Prev: l})
	if err != nil || squatter.Subnet != l.Subnet {
		t.Fatalf("squatter: %+v, %v", squatter, err)
	}
	_, err = s.UpdateRecord(ctxT(t, 10*time.Second), l, rec)
	if !errors.Is(err, subnet.ErrLeaseLost) {
		t.Fatalf("update of an evicted lease: %v, want ErrLeaseLost", err)
	}
	if got := keysIn(t, s, s.LeaseKey(l.Subnet))[s.LeaseKey(l.Subnet)].NodeName; got != "squatter" {
		t.Errorf("record now of %q", got)
	}
}

func TestEvict(t *testing.T) {
	s := newStore(t)
	cfg := mustParse(t, `{"Network": "10.244.0.0/16", "IPv6Network": "fd10:244::/56"}`)
	var ls []*subnet.Lease
	for _, name := range []string{"a", "b", "c"} {
		l, err := s.Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: record(name)})
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	tests := []struct {
		name, arg string
		want      *subnet.Lease
	}{
		{"by node name", "a", ls[0]},
		{"by IPv4 CIDR", ls[1].Subnet.String(), ls[1]},
		{"by IPv6 subnet in key form", subnet.KeyName(ls[2].IPv6Subnet), ls[2]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Evict(ctxT(t, 10*time.Second), tt.arg)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].Subnet != tt.want.Subnet || got[0].IPv6Subnet != tt.want.IPv6Subnet {
				t.Fatalf("evicted %+v, want %+v", got, tt.want)
			}
			kv := keysIn(t, s, s.Prefix()+"/")
			for _, p := range []netip.Prefix{tt.want.Subnet, tt.want.IPv6Subnet} {
				if _, ok := kv[s.LeaseKey(p)]; ok {
					t.Errorf("%s still leased", p)
				}
				if _, ok := kv[s.ReleasedKey(p)]; !ok {
					t.Errorf("no tombstone for %s", p)
				}
			}
		})
	}
	_, err := s.Evict(ctxT(t, 10*time.Second), "nobody")
	if err == nil || err.Error() != `evict: no lease for node "nobody" (weftctl leases lists them)` {
		t.Errorf("evict of an unknown node: %v", err)
	}
	if got := len(keysIn(t, s, s.LeasesPrefix())); got != 0 {
		t.Errorf("%d lease keys left", got)
	}
}

func TestConfig(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t, 10*time.Second)
	_, err := s.GetConfig(ctx)
	if !errors.Is(err, subnet.ErrNoConfig) {
		t.Fatalf("GetConfig on an empty prefix: %v", err)
	}
	want := "no network config at " + s.ConfigKey() + ": run weftctl config set --network <CIDR> (e.g. 10.244.0.0/16) to write one"
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if err := s.PutConfig(ctx, []byte(`{"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard", "VNI": 2}}`)); err == nil ||
		err.Error() != "invalid network config: Backend.VNI is not valid for backend type wireguard" {
		t.Errorf("PutConfig of an invalid config: %v", err)
	}
	if _, err := s.GetConfig(ctx); !errors.Is(err, subnet.ErrNoConfig) {
		t.Errorf("an invalid config was written: %v", err)
	}
	if err := s.PutConfig(ctx, []byte(`{"Network": "10.244.0.0/16"}`)); err != nil {
		t.Fatal(err)
	}
	c, err := s.GetConfig(ctx)
	if err != nil || c.Network.String() != "10.244.0.0/16" || c.Backend.VNI != 1 {
		t.Fatalf("GetConfig = %+v, %v", c, err)
	}
	// Someone writes garbage behind weftctl's back.
	if _, err := s.c.Put(ctx, s.ConfigKey(), `{"Network": "10.244.0.0/16", "Bakend": {}}`); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetConfig(ctx)
	if want := "network config at " + s.ConfigKey() + ` is invalid: unknown key "Bakend" in network config ` +
		"(known keys: Network, IPv6Network, SubnetLen, IPv6SubnetLen, SubnetMin, SubnetMax, Backend)"; err == nil || err.Error() != want {
		t.Errorf("GetConfig of an invalid config: %v\nwant %s", err, want)
	}
}

func TestNewClientErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  ClientConfig
		want string
	}{
		{"no endpoints", ClientConfig{Endpoints: []string{" , "}}, "no etcd endpoints given (e.g. --etcd-endpoints http://127.0.0.1:2379)"},
		{"cert without key", ClientConfig{Endpoints: []string{"https://127.0.0.1:1"}, CertFile: "c.pem"},
			"an etcd client certificate needs both a cert file and a key file (--etcd-certfile and --etcd-keyfile)"},
		{"user without password", ClientConfig{Endpoints: []string{"http://127.0.0.1:1"}, Username: "root"},
			"etcd authentication needs both a username and a password (--etcd-username and --etcd-password)"},
		{"missing CA file", ClientConfig{Endpoints: []string{"https://127.0.0.1:1"}, CAFile: "/nonexistent/ca.pem"},
			"load etcd TLS files: open /nonexistent/ca.pem: no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClient(tt.cfg)
			if err == nil {
				c.Close()
				t.Fatalf("NewClient succeeded, want %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("NewClient: %q, want %q", err, tt.want)
			}
		})
	}
	// Several endpoints, one of them dead, in one comma-separated flag value.
	c, err := NewClient(ClientConfig{Endpoints: []string{"http://127.0.0.1:1," + server.Endpoint()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := New(Config{Client: c, Prefix: testPrefix(t), LeaseTTL: time.Hour})
	if _, err := s.List(ctxT(t, 20*time.Second)); err != nil {
		t.Errorf("List through two endpoints, one dead: %v", err)
	}
}

// TestGarbageRecord: a lease key whose value does not parse still counts
// as taken, is left out of views, and can be evicted by its subnet.
func TestGarbageRecord(t *testing.T) {
	s := newStore(t)
	cfg := mustParse(t, `{"Network": "10.244.0.0/29", "SubnetLen": 30}`)
	bad := cfg.IPv4Space().Subnet(0)
	if _, err := s.c.Put(ctxT(t, 10*time.Second), s.LeaseKey(bad), "not json"); err != nil {
		t.Fatal(err)
	}
	// A stray key that names no subnet is ignored.
	if _, err := s.c.Put(ctxT(t, 10*time.Second), s.LeasesPrefix()+"README", "x"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		l, err := s.Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: record("a")})
		if err != nil || l.Subnet == bad {
			t.Fatalf("claim: %+v, %v; want the subnet without garbage", l, err)
		}
	}
	if _, err := s.Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: record("b")}); !errors.Is(err, subnet.ErrExhausted) {
		t.Fatalf("claim b: %v, want ErrExhausted (the garbage key holds the other subnet)", err)
	}
	view, err := s.List(ctxT(t, 10*time.Second))
	if err != nil || len(view.Leases) != 1 {
		t.Fatalf("List: %+v, %v", view, err)
	}
	ev, err := s.Evict(ctxT(t, 10*time.Second), bad.String())
	if err != nil || len(ev) != 1 || ev[0].Subnet != bad {
		t.Fatalf("evict the garbage: %+v, %v", ev, err)
	}
	if l, err := s.Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: record("b")}); err != nil || l.Subnet != bad {
		t.Errorf("claim b after the eviction: %+v, %v", l, err)
	}
}
