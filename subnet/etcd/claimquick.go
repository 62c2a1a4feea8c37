// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcd

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/subnet"
)

// The quick claim reads quickCandidates random subnets per family (and
// their tombstones) per round, for at most quickRounds rounds, before it
// falls back to reading all lease keys. With a fraction f of the network
// leased, all candidates of a round are taken with probability f^4, and
// a claim lists with f^12: one claim in 16 reads a second round and one
// in 4000 lists when half the network is leased; one in 30 lists when
// three quarters are.
const (
	quickCandidates = 4
	quickRounds     = 3
)

// Reasons for quickPlan to hand over to the listing claim.
const (
	whyNoMarker     = "no lengths marker yet"
	whyOtherLengths = "leases of another prefix length may exist"
	whyNoFree       = "the random candidates were all taken or recently released"
)

// nodeConflict is the error for a live record of our name that carries
// another node ID.
func nodeConflict(name, id string, e *entry) error {
	return fmt.Errorf("%w: node name %q has a live lease on %s held by node ID %s, but this node's ID is %s: "+
		"two nodes share the name, or the node was reinstalled; if the other node is gone, remove its lease with "+
		"'weftctl leases rm %s' or wait for it to expire",
		subnet.ErrNodeConflict, name, e.subnet, e.val.NodeID, id, e.subnet)
}

// quickPlan decides a claim from O(1) keys: the lengths marker, the name
// index entry, the lease keys of the subnets that entry and req.Prev name,
// and random candidates. It returns a nil plan and the reason when only a
// listing can decide: the marker is missing or names other lengths than
// the config's (a SubnetLen change left leases that the candidates' own
// keys would not show), or no candidate was free (a nearly full network:
// exhaustion is declared only from a listing).
func (s *Store) quickPlan(ctx context.Context, req *subnet.ClaimRequest, r *rand.Rand) (*claimPlan, string, error) {
	name, id := req.Record.NodeName, req.Record.NodeID
	spaces := [2]subnet.Space{req.Config.IPv4Space(), req.Config.IPv6Space()}
	var prev [2]netip.Prefix
	if req.Prev != nil {
		prev = [2]netip.Prefix{req.Prev.Subnet, req.Prev.IPv6Subnet}
	}

	// Random candidates of the families not yet chosen, with their
	// tombstones, counted only.
	tried := [2]map[netip.Prefix]bool{{}, {}}
	candidates := func(chosen [2]netip.Prefix) (cands [2][]netip.Prefix, ops []clientv3.Op) {
		for f, sp := range spaces {
			if !sp.IsValid() || chosen[f].IsValid() {
				continue
			}
			cands[f] = sample(sp, r, tried[f], quickCandidates)
			for _, q := range cands[f] {
				ops = append(ops, clientv3.OpGet(s.LeaseKey(q), clientv3.WithCountOnly()),
					clientv3.OpGet(s.ReleasedKey(q), clientv3.WithCountOnly()))
			}
		}
		return cands, ops
	}

	// Round trip 1: marker, index entry, Prev's keys, and a first round
	// of candidates (a new node needs nothing else).
	ops := []clientv3.Op{clientv3.OpGet(s.LengthsKey()), clientv3.OpGet(s.NameKey(name))}
	for _, q := range prev {
		if q.IsValid() {
			ops = append(ops, clientv3.OpGet(s.LeaseKey(q)))
		}
	}
	nfirst := len(ops)
	cands, cops := candidates([2]netip.Prefix{})
	resp, err := s.readTxn(ctx, append(ops, cops...))
	if err != nil {
		return nil, "", err
	}
	candResps := resp.Responses[nfirst:]
	p := &claimPlan{guardIndex: true}
	rs := resp.Responses
	m := rs[0].GetResponseRange().Kvs
	if len(m) == 0 {
		if m, err = s.seedLengths(ctx, req.Config); err != nil || len(m) == 0 {
			return nil, whyNoMarker, err
		}
	}
	lengths := parseLengths(m[0].Value)
	if lengths == nil {
		return nil, whyNoMarker, nil
	}
	p.lengthsRev = m[0].ModRevision
	for _, sp := range spaces {
		if sp.IsValid() && !lengths.only(sp.Network.Addr().Is4(), sp.Bits) {
			return nil, whyOtherLengths, nil
		}
	}
	// Keys read, by subnet: nil for a key that does not exist.
	read := map[netip.Prefix]*entry{}
	i := 2
	for _, q := range prev {
		if !q.IsValid() {
			continue
		}
		kvs := rs[i].GetResponseRange().Kvs
		i++
		read[q] = nil
		if len(kvs) == 1 {
			if read[q], err = s.parseEntry(kvs[0]); err != nil {
				return nil, "", fmt.Errorf("claim: read %s: %w", s.LeaseKey(q), err)
			}
		}
	}
	if kvs := rs[1].GetResponseRange().Kvs; len(kvs) == 1 {
		p.indexRev = kvs[0].ModRevision
		var idx nameIndex
		// An index entry that does not parse is only a lost hint.
		if json.Unmarshal(kvs[0].Value, &idx) == nil {
			var more []netip.Prefix
			for _, q := range []netip.Prefix{idx.Subnet, idx.IPv6Subnet} {
				if _, done := read[q]; q.IsValid() && !done {
					more = append(more, q)
				}
			}
			if err := s.readKeys(ctx, more, read); err != nil {
				return nil, "", err
			}
		}
	}

	// Our own live keys among those read; another node ID under our name
	// refuses the claim.
	var ours []*entry
	for _, e := range read {
		if e == nil || !e.ok || e.val.NodeName != name {
			continue
		}
		if e.val.NodeID != id {
			return nil, "", nodeConflict(name, id, e)
		}
		ours = append(ours, e)
	}
	var chosen [2]netip.Prefix
	var own [2]*entry
	for f, sp := range spaces {
		if !sp.IsValid() {
			continue
		}
		// Our own live key: prefer the one Prev names, then the oldest.
		for _, e := range ours {
			if sp.Contains(e.subnet) && (own[f] == nil || e.subnet == prev[f] ||
				(own[f].subnet != prev[f] && e.kv.CreateRevision < own[f].kv.CreateRevision)) {
				own[f] = e
			}
		}
		if own[f] != nil {
			chosen[f] = own[f].subnet
		} else if e, ok := read[prev[f]]; ok && e == nil && sp.Contains(prev[f]) {
			chosen[f] = prev[f]
		}
	}

	for round := 0; ; round++ {
		if round > 0 {
			var cops []clientv3.Op
			if cands, cops = candidates(chosen); len(cops) == 0 {
				break
			}
			if round == quickRounds {
				return nil, whyNoFree, nil
			}
			resp, err := s.readTxn(ctx, cops)
			if err != nil {
				return nil, "", err
			}
			candResps = resp.Responses
		}
		i := 0
		for f, sp := range spaces {
			for _, q := range cands[f] {
				leased := candResps[i].GetResponseRange().Count > 0
				released := candResps[i+1].GetResponseRange().Count > 0
				i += 2
				if !leased && !released && !chosen[f].IsValid() {
					chosen[f] = q
				}
			}
			// Every subnet of a small space was tried: only the
			// listing can choose among tombstones or say it is full.
			if sp.IsValid() && !chosen[f].IsValid() && uint64(len(tried[f])) >= sp.Size() {
				return nil, whyNoFree, nil
			}
		}
	}

	p.v4, p.v6 = chosen[0], chosen[1]
	p.own4, p.own6 = own[0], own[1]
	seen := map[clientv3.LeaseID]bool{}
	for _, e := range ours {
		if e != p.own4 && e != p.own6 {
			p.stale = append(p.stale, e)
		}
		if id := clientv3.LeaseID(e.kv.Lease); id != 0 && !seen[id] {
			seen[id] = true
			p.oldLeaseIDs = append(p.oldLeaseIDs, id)
		}
	}
	// Our length joins the marker if it is new there (a first claim in a
	// marker written empty): adding keeps the marker a superset.
	for _, q := range chosen {
		if q.IsValid() && !lengths.has(q) {
			if p.lengths == nil {
				p.lengths = lengths.clone()
			}
			p.lengths.add(q)
		}
	}
	return p, "", nil
}

// seedLengths writes the lengths marker of a network that has no lease
// key yet: the config's lengths (a superset of none). It returns the
// marker as it is now, or nothing when lease keys exist without one (the
// listing claim then writes it). So a cluster starting at once on a new
// network does not list at all.
func (s *Store) seedLengths(ctx context.Context, cfg *subnet.Config) ([]*mvccpb.KeyValue, error) {
	ls := &lengthSet{}
	for _, sp := range []subnet.Space{cfg.IPv4Space(), cfg.IPv6Space()} {
		if sp.IsValid() {
			ls.add(sp.First())
		}
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.c.Txn(cctx).If(
		// No key under leases/ (a compare over an empty range compares
		// a zero key), and no marker.
		clientv3.Compare(clientv3.CreateRevision(s.LeasesPrefix()), "=", 0).WithPrefix(),
		clientv3.Compare(clientv3.CreateRevision(s.LengthsKey()), "=", 0),
	).Then(clientv3.OpPut(s.LengthsKey(), ls.encode())).Else(clientv3.OpGet(s.LengthsKey())).Commit()
	if err != nil {
		return nil, fmt.Errorf("claim: write the lengths marker: %w", err)
	}
	if resp.Succeeded {
		return []*mvccpb.KeyValue{{Key: []byte(s.LengthsKey()), Value: []byte(ls.encode()), ModRevision: resp.Header.Revision}}, nil
	}
	return resp.Responses[0].GetResponseRange().Kvs, nil
}

// readTxn runs ops as one read-only transaction.
func (s *Store) readTxn(ctx context.Context, ops []clientv3.Op) (*clientv3.TxnResponse, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.c.Txn(cctx).Then(ops...).Commit()
	if err != nil {
		return nil, fmt.Errorf("claim: read lease keys: %w", err)
	}
	return resp, nil
}

// readKeys reads the lease keys of subnets qs into read (nil: no key).
func (s *Store) readKeys(ctx context.Context, qs []netip.Prefix, read map[netip.Prefix]*entry) error {
	if len(qs) == 0 {
		return nil
	}
	ops := make([]clientv3.Op, len(qs))
	for i, q := range qs {
		ops[i] = clientv3.OpGet(s.LeaseKey(q))
	}
	resp, err := s.readTxn(ctx, ops)
	if err != nil {
		return err
	}
	for i, q := range qs {
		read[q] = nil
		if kvs := resp.Responses[i].GetResponseRange().Kvs; len(kvs) == 1 {
			if read[q], err = s.parseEntry(kvs[0]); err != nil {
				return fmt.Errorf("claim: read %s: %w", s.LeaseKey(q), err)
			}
		}
	}
	return nil
}

// sample returns up to k subnets of sp, chosen at random, that are not in
// tried, and adds them to tried.
func sample(sp subnet.Space, r *rand.Rand, tried map[netip.Prefix]bool, k int) []netip.Prefix {
	size := sp.Size()
	var out []netip.Prefix
	for range 8 * k {
		if len(out) == k || uint64(len(tried)) >= size {
			break
		}
		q := sp.Subnet(r.Uint64N(size))
		if !tried[q] {
			tried[q] = true
			out = append(out, q)
		}
	}
	return out
}
