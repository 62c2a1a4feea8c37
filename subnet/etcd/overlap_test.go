// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcd

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/weftnet/weft/subnet"
)

// leaseSubnets returns every subnet under s's leases/, of any length.
func leaseSubnets(t *testing.T, s *Store) map[netip.Prefix]string {
	t.Helper()
	out := map[netip.Prefix]string{}
	for k, v := range keysIn(t, s, s.LeasesPrefix()) {
		p, err := parseLeaseKey(k[len(s.LeasesPrefix()):])
		if err != nil {
			t.Fatal(err)
		}
		out[p] = v.NodeName
	}
	return out
}

// checkNoOverlap fails if two lease keys of different nodes overlap.
func checkNoOverlap(t *testing.T, s *Store) {
	t.Helper()
	subs := leaseSubnets(t, s)
	for p, a := range subs {
		for q, b := range subs {
			if p != q && a != b && p.Overlaps(q) {
				t.Errorf("%s of %s overlaps %s of %s", p, a, q, b)
			}
		}
	}
}

// TestClaimAvoidsOtherLengths: after a forced SubnetLen change, a claim at
// the new length never overlaps a live lease of the old length, either
// way (shorter or longer), and a node moving to the new length may take a
// subnet inside its own old one (deleted in the same transaction).
func TestClaimAvoidsOtherLengths(t *testing.T) {
	p := netip.MustParsePrefix
	t.Run("longer", func(t *testing.T) {
		s := newStore(t)
		old := mustParse(t, `{"Network": "10.244.0.0/22"}`) // 4 /24s
		a, err := s.Claim(ctxT(t, 10*time.Second), subnetClaim(old, "a"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Claim(ctxT(t, 10*time.Second), subnetClaim(old, "b")); err != nil {
			t.Fatal(err)
		}
		cfg := mustParse(t, `{"Network": "10.244.0.0/22", "SubnetLen": 25}`) // 8 /25s, 4 inside a's and b's /24s
		for i, name := range []string{"c", "d", "e", "f"} {
			if _, err := s.Claim(ctxT(t, 10*time.Second), subnetClaim(cfg, name)); err != nil {
				t.Fatalf("claim %d at /25: %v", i, err)
			}
		}
		checkNoOverlap(t, s)
		if _, err := s.Claim(ctxT(t, 10*time.Second), subnetClaim(cfg, "g")); !errors.Is(err, subnet.ErrExhausted) {
			t.Fatalf("claim with every /25 overlapping or taken: %v, want ErrExhausted", err)
		}
		// a restarts with the new length: it gets a /25 inside its own
		// old /24, the only room left, and its /24 goes.
		na, err := s.Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: record("a"), Prev: a})
		if err != nil {
			t.Fatalf("a moving to /25: %v", err)
		}
		if !a.Subnet.Overlaps(na.Subnet) || na.Subnet.Bits() != 25 {
			t.Errorf("a moved from %s to %s, want a /25 inside it", a.Subnet, na.Subnet)
		}
		if subs := leaseSubnets(t, s); subs[a.Subnet] != "" {
			t.Errorf("a's old %s is still leased: %v", a.Subnet, subs)
		}
		checkNoOverlap(t, s)
	})
	t.Run("shorter", func(t *testing.T) {
		s := newStore(t)
		old := mustParse(t, `{"Network": "10.244.0.0/22", "SubnetLen": 25}`)
		// One /25 in each of three /24s: only 10.244.3.0/24 is free of them.
		for i, sub := range []string{"10.244.0.128/25", "10.244.1.0/25", "10.244.2.0/25"} {
			l, err := s.Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: old, Record: record(string(rune('a' + i))),
				Prev: &subnet.Lease{Subnet: p(sub)}})
			if err != nil || l.Subnet != p(sub) {
				t.Fatalf("claim %s: %+v, %v", sub, l, err)
			}
		}
		cfg := mustParse(t, `{"Network": "10.244.0.0/22"}`)
		l, err := s.Claim(ctxT(t, 10*time.Second), subnetClaim(cfg, "d"))
		if err != nil || l.Subnet != p("10.244.3.0/24") {
			t.Fatalf("claim at /24: %+v, %v; want 10.244.3.0/24, the only /24 holding no /25", l, err)
		}
		// Prev naming a /24 that holds a live /25 is not given back.
		l, err = s.Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: record("e"), Prev: &subnet.Lease{Subnet: p("10.244.1.0/24")}})
		if !errors.Is(err, subnet.ErrExhausted) {
			t.Fatalf("claim of a /24 holding a /25: %+v, %v; want ErrExhausted", l, err)
		}
		checkNoOverlap(t, s)
	})
	t.Run("keys outside the network take nothing", func(t *testing.T) {
		s := newStore(t)
		cfg := mustParse(t, `{"Network": "10.244.0.0/23"}`)
		rogue := value{Record: record("rogue"), Subnet: p("0.0.0.0/1")}
		put(t, s, map[string]string{s.LeaseKey(p("0.0.0.0/1")): recordJSON(t, rogue)})
		for _, name := range []string{"a", "b"} {
			if _, err := s.Claim(ctxT(t, 10*time.Second), subnetClaim(cfg, name)); err != nil {
				t.Fatalf("claim beside a rogue 0.0.0.0/1: %v", err)
			}
		}
	})
}

// TestClaimGuardOtherLengths: with leases of another length present, the
// claim transaction fails when any lease key was written after the list
// the claim decided from (a lease of another length could have appeared
// over its choice); with none, it guards only its own key, and a write
// elsewhere does not disturb it.
func TestClaimGuardOtherLengths(t *testing.T) {
	s := newStore(t)
	r := rand.New(rand.NewPCG(1, 2))
	cfg := mustParse(t, `{"Network": "10.244.0.0/16"}`)
	if _, err := s.Claim(ctxT(t, 10*time.Second), subnetClaim(cfg, "a")); err != nil {
		t.Fatal(err)
	}
	attempt := func(name string, cfg *subnet.Config) (*claimPlan, bool) {
		t.Helper()
		sn, err := s.readAll(ctxT(t, 10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		req := subnetClaim(cfg, name)
		pl, err := s.plan(sn, &req, r)
		if err != nil {
			t.Fatal(err)
		}
		// Another node's write lands between the list and the transaction.
		if _, err := s.Claim(ctxT(t, 10*time.Second), subnetClaim(cfg, name+"-other")); err != nil {
			t.Fatal(err)
		}
		id, err := s.grant(ctxT(t, 10*time.Second), 60)
		if err != nil {
			t.Fatal(err)
		}
		defer s.revoke(ctxT(t, 10*time.Second), id)
		resp, err := s.claimTxn(ctxT(t, 10*time.Second), pl, &req, id)
		if err != nil {
			t.Fatal(err)
		}
		return pl, resp.Succeeded
	}
	if pl, ok := attempt("b", cfg); pl.listedAt != 0 || !ok {
		t.Errorf("same length only: listedAt %d, succeeded %t; want no list guard and success", pl.listedAt, ok)
	}
	longer := mustParse(t, `{"Network": "10.244.0.0/16", "SubnetLen": 25}`)
	if pl, ok := attempt("c", longer); pl.listedAt == 0 || ok {
		t.Errorf("with /24 leases at /25: listedAt %d, succeeded %t; want the list guard to fail the transaction", pl.listedAt, ok)
	}
	checkNoOverlap(t, s)
}
