// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/sirupsen/logrus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/subnet"
)

// maxClaimAttempts bounds the transactions one Claim tries. After a failed
// attempt Claim reads again; claimers collide again only when they pick
// the same subnet at the same moment.
const maxClaimAttempts = 64

// ttlSeconds converts a lease TTL to etcd's whole seconds (rounding up).
func ttlSeconds(ttl time.Duration) int64 {
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	return max(int64((ttl+time.Second-1)/time.Second), 1)
}

func (s *Store) grant(ctx context.Context, ttl int64) (clientv3.LeaseID, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.c.Grant(cctx, ttl)
	if err != nil {
		return 0, fmt.Errorf("grant etcd lease: %w", err)
	}
	s.mu.Lock()
	s.ttls[resp.ID] = ttl
	s.mu.Unlock()
	return resp.ID, nil
}

// revoke revokes an etcd lease, best effort (it expires anyway).
func (s *Store) revoke(ctx context.Context, id clientv3.LeaseID) {
	if id == 0 {
		return
	}
	cctx, cancel := s.cleanup(ctx)
	defer cancel()
	if _, err := s.c.Revoke(cctx, id); err != nil {
		s.log.WithError(err).WithField("lease", fmt.Sprintf("%x", int64(id))).Debug("revoke etcd lease")
	}
	s.mu.Lock()
	delete(s.ttls, id)
	s.mu.Unlock()
}

func (s *Store) grantedTTL(id clientv3.LeaseID) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ttl, ok := s.ttls[id]
	return ttl, ok
}

// claimPlan is one attempt of a claim: which subnet of each family to
// take, and whether that is our own existing key.
type claimPlan struct {
	v4, v6      netip.Prefix
	own4, own6  *entry   // our existing key for v4/v6, if we re-bind it
	stale       []*entry // our keys that are no longer wanted
	oldLeaseIDs []clientv3.LeaseID
	// listedAt is set when leases of another length were in the list the
	// plan was made from, or when the plan rewrites the lengths marker:
	// the transaction then also requires that no lease key changed since
	// that revision.
	listedAt int64
	// lengthsRev is the ModRevision of the lengths marker the plan was
	// made with (0: missing); lengths, when set, is its new value.
	lengthsRev int64
	lengths    *lengthSet
	// guardIndex makes the transaction require that the node's name
	// index entry still has ModRevision indexRev (0: missing).
	guardIndex bool
	indexRev   int64
}

// maxOverlapMarks bounds how many subnets one claim marks as taken because
// they overlap leases of another length.
const maxOverlapMarks = 1 << 16

// markOverlaps marks as taken every subnet of sp that overlaps a lease of
// another length inside sp's network, other than our own (which the
// claim deletes). It reports whether there was such a lease.
//
// At the configured length the claim transaction's own guard (the key
// does not exist yet) keeps claims apart, at O(1) cost. Leases of another
// length exist only after a forced SubnetLen change; that guard cannot see
// them, so then (and only then) the claim avoids every subnet overlapping
// one, and its transaction checks the whole list (listedAt). Keys that
// are not subnets of the network (0.0.0.0/1) are no leases of it: View.Check
// rejects them, and they take nothing here.
func markOverlaps(sp subnet.Space, leases map[netip.Prefix]*entry, ours map[*entry]bool, taken map[netip.Prefix]bool, marks *int) (bool, error) {
	found := false
	for q, e := range leases {
		if q.Bits() == sp.Bits || ours[e] || q.Addr().Is4() != sp.Network.Addr().Is4() ||
			q.Bits() <= sp.Network.Bits() || !sp.Network.Contains(q.Addr()) {
			continue
		}
		ps, ok := sp.Overlapping(q, maxOverlapMarks-*marks)
		if !ok {
			return false, fmt.Errorf("claim: leases of other lengths than /%d (left by a SubnetLen change) overlap more than %d subnets of %s; "+
				"remove them with weftctl leases rm, or restore the SubnetLen they were claimed with", sp.Bits, maxOverlapMarks, sp.Network)
		}
		*marks += len(ps)
		for _, x := range ps {
			taken[x] = true
		}
		found = true
	}
	return found, nil
}

// plan decides what to claim from snapshot sn.
func (s *Store) plan(sn *snapshot, req *subnet.ClaimRequest, r *rand.Rand) (*claimPlan, error) {
	name, id := req.Record.NodeName, req.Record.NodeID
	var ours []*entry
	for _, e := range sn.leases {
		if !e.ok || e.val.NodeName != name {
			continue
		}
		if e.val.NodeID != id {
			return nil, nodeConflict(name, id, e)
		}
		ours = append(ours, e)
	}
	taken := make(map[netip.Prefix]bool, len(sn.leases))
	for p := range sn.leases {
		taken[p] = true
	}
	p := &claimPlan{}
	isOurs := make(map[*entry]bool, len(ours))
	for _, e := range ours {
		isOurs[e] = true
	}
	marks := 0
	for _, sp := range []subnet.Space{req.Config.IPv4Space(), req.Config.IPv6Space()} {
		if !sp.IsValid() {
			continue
		}
		found, err := markOverlaps(sp, sn.leases, isOurs, taken, &marks)
		if err != nil {
			return nil, err
		}
		if found {
			p.listedAt = sn.rev
		}
	}
	var prev4, prev6 netip.Prefix
	if req.Prev != nil {
		prev4, prev6 = req.Prev.Subnet, req.Prev.IPv6Subnet
	}
	choose := func(sp subnet.Space, prev netip.Prefix) (netip.Prefix, *entry, error) {
		if !sp.IsValid() {
			return netip.Prefix{}, nil, nil
		}
		// Our own live key: prefer the one Prev names, then the oldest.
		var own *entry
		for _, e := range ours {
			if !sp.Contains(e.subnet) {
				continue
			}
			if own == nil || e.subnet == prev || (own.subnet != prev && e.kv.CreateRevision < own.kv.CreateRevision) {
				own = e
			}
		}
		if own != nil {
			return own.subnet, own, nil
		}
		if prev.IsValid() && sp.Contains(prev) && !taken[prev] {
			return prev, nil, nil
		}
		q, ok := sp.Pick(r, taken, sn.released)
		if !ok {
			return netip.Prefix{}, nil, sp.Exhausted()
		}
		return q, nil, nil
	}
	var err error
	if p.v4, p.own4, err = choose(req.Config.IPv4Space(), prev4); err != nil {
		return nil, err
	}
	if p.v6, p.own6, err = choose(req.Config.IPv6Space(), prev6); err != nil {
		return nil, err
	}
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
	// The lengths marker becomes exactly what the list shows after this
	// claim; rewriting it needs the list guard.
	gone := make(map[*entry]bool, len(p.stale))
	for _, e := range p.stale {
		gone[e] = true
	}
	want := &lengthSet{}
	for q, e := range sn.leases {
		if !gone[e] {
			want.add(q)
		}
	}
	for _, q := range []netip.Prefix{p.v4, p.v6} {
		if q.IsValid() {
			want.add(q)
		}
	}
	p.lengthsRev = sn.lengthsRev
	if !want.equal(sn.lengths) {
		p.lengths = want
		p.listedAt = sn.rev
	}
	return p, nil
}

// Claim gets a lease for req.Record's node (see [subnet.Store.Claim]).
//
// In the common case it reads O(1) keys (quickPlan): the lengths marker,
// the node's name index entry, the keys of the subnets these and req.Prev
// name, and a few random candidate subnets with their tombstones. Only
// when that cannot decide (no marker yet, leases of another length, or
// the random candidates keep being taken in a nearly full network) does
// it read all lease keys and tombstones (plan). Then it tries one
// transaction that creates the chosen keys if they do not exist (or
// re-binds our own existing keys, guarded by their ModRevision) on a new
// etcd lease. When the transaction fails, Claim reads and decides again.
func (s *Store) Claim(ctx context.Context, req subnet.ClaimRequest) (*subnet.Lease, error) {
	if req.Config == nil {
		return nil, errors.New("claim: no network config")
	}
	if req.Record.NodeName == "" || req.Record.NodeID == "" {
		return nil, errors.New("claim: the record needs a node name and a node ID")
	}
	if err := req.Record.Validate(); err != nil {
		return nil, fmt.Errorf("claim: invalid record (other nodes would reject it): %w", err)
	}
	if err := req.Config.Validate(); err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	ttl := ttlSeconds(s.leaseTTL)
	r := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))

	var leaseID clientv3.LeaseID
	granted := false
	defer func() {
		if leaseID != 0 && !granted {
			s.revoke(ctx, leaseID)
		}
	}()
	list := s.alwaysList
	for attempt := 1; attempt <= maxClaimAttempts; attempt++ {
		var p *claimPlan
		if !list {
			var why string
			var err error
			if p, why, err = s.quickPlan(ctx, &req, r); err != nil {
				return nil, err
			}
			if p == nil {
				s.log.WithField("reason", why).Debug("claim reads all lease keys")
				// Without a marker the listing claim writes one: try
				// the quick way again after it.
				list = why != whyNoMarker
			}
		}
		if p == nil {
			s.claimLists.Add(1)
			sn, err := s.readAll(ctx)
			if err != nil {
				return nil, fmt.Errorf("claim: %w", err)
			}
			if p, err = s.plan(sn, &req, r); err != nil {
				return nil, err
			}
		}
		// Grant only once there is a plan: a refused claim (name
		// conflict, exhausted network) costs no etcd lease.
		if leaseID == 0 {
			var err error
			if leaseID, err = s.grant(ctx, ttl); err != nil {
				return nil, fmt.Errorf("claim: %w", err)
			}
		}
		resp, err := s.claimTxn(ctx, p, &req, leaseID)
		if err != nil {
			return nil, fmt.Errorf("claim: %w", err)
		}
		if !resp.Succeeded {
			s.claimConflicts.Add(1)
			s.log.WithField("attempt", attempt).Debug("claim transaction lost a race, deciding again")
			continue
		}
		granted = true
		for _, old := range p.oldLeaseIDs {
			if old != leaseID {
				s.revoke(ctx, old)
			}
		}
		l := &subnet.Lease{
			Subnet:      p.v4,
			IPv6Subnet:  p.v6,
			Record:      req.Record,
			Epoch:       resp.Header.Revision,
			ModRevision: resp.Header.Revision,
			LeaseID:     int64(leaseID),
			Expiry:      time.Now().Add(time.Duration(ttl) * time.Second),
		}
		own := p.own4
		if !p.v4.IsValid() {
			own = p.own6
		}
		if own != nil {
			l.Epoch = own.kv.CreateRevision
		}
		s.log.WithFields(leaseFields(l)).WithFields(logrus.Fields{"epoch": l.Epoch, "renewed": own != nil, "attempts": attempt}).Info("lease acquired")
		return l, nil
	}
	return nil, fmt.Errorf("claim: gave up after %d attempts that each lost a race for a subnet", maxClaimAttempts)
}

// nameIndex is what a node's name index entry (<prefix>/names/<name>)
// holds: the node ID and the subnets of its latest claim. It lives on the
// claim's etcd lease. It is only a hint: Claim believes a lease key, never
// the index.
type nameIndex struct {
	NodeID     string       `json:"nodeID"`
	Subnet     netip.Prefix `json:"subnet,omitzero"`
	IPv6Subnet netip.Prefix `json:"ipv6Subnet,omitzero"`
}

func (s *Store) nameIndexOp(rec subnet.Record, v4, v6 netip.Prefix, leaseID clientv3.LeaseID) (clientv3.Op, error) {
	data, err := json.Marshal(nameIndex{NodeID: rec.NodeID, Subnet: v4, IPv6Subnet: v6})
	if err != nil {
		return clientv3.Op{}, fmt.Errorf("encode name index: %w", err)
	}
	return clientv3.OpPut(s.NameKey(rec.NodeName), string(data), clientv3.WithLease(leaseID)), nil
}

func (s *Store) claimTxn(ctx context.Context, p *claimPlan, req *subnet.ClaimRequest, leaseID clientv3.LeaseID) (*clientv3.TxnResponse, error) {
	data, err := json.Marshal(value{Record: req.Record, Subnet: p.v4, IPv6Subnet: p.v6})
	if err != nil {
		return nil, fmt.Errorf("encode lease record: %w", err)
	}
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	for _, t := range []struct {
		p   netip.Prefix
		own *entry
	}{{p.v4, p.own4}, {p.v6, p.own6}} {
		if !t.p.IsValid() {
			continue
		}
		key := s.LeaseKey(t.p)
		if t.own != nil {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", t.own.kv.ModRevision))
		} else {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
		}
		ops = append(ops, clientv3.OpPut(key, string(data), clientv3.WithLease(leaseID)),
			clientv3.OpDelete(s.ReleasedKey(t.p)))
	}
	for _, e := range p.stale {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.LeaseKey(e.subnet)), "=", e.kv.ModRevision))
		ops = append(ops, clientv3.OpDelete(s.LeaseKey(e.subnet)))
	}
	if p.listedAt != 0 {
		// No lease key was written since the list the plan was made from,
		// so no lease of another length appeared over our choice.
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.LeasesPrefix()), "<", p.listedAt+1).WithPrefix())
	}
	// The lengths marker is what it was when we decided (see lengths.go).
	cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.LengthsKey()), "=", p.lengthsRev))
	if p.lengths != nil {
		ops = append(ops, clientv3.OpPut(s.LengthsKey(), p.lengths.encode()))
	}
	if p.guardIndex {
		// Two nodes of one name claiming at once: one of them fails here,
		// reads the other's index entry and is refused.
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.NameKey(req.Record.NodeName)), "=", p.indexRev))
	}
	idx, err := s.nameIndexOp(req.Record, p.v4, p.v6, leaseID)
	if err != nil {
		return nil, err
	}
	ops = append(ops, idx)
	cctx, cancel := s.call(ctx)
	defer cancel()
	return s.c.Txn(cctx).If(cmps...).Then(ops...).Commit()
}

// leaseKeys returns the keys of l's subnets, primary first.
func (s *Store) leaseKeys(l *subnet.Lease) []string {
	var keys []string
	for _, p := range []netip.Prefix{l.Subnet, l.IPv6Subnet} {
		if p.IsValid() {
			keys = append(keys, s.LeaseKey(p))
		}
	}
	return keys
}

// ownKeys reads l's keys and checks that each exists and carries l's node
// name and ID. It returns the entries in the order of leaseKeys, the
// revision read, or an error wrapping ErrLeaseLost.
func (s *Store) ownKeys(ctx context.Context, l *subnet.Lease) ([]*entry, int64, error) {
	keys := s.leaseKeys(l)
	if len(keys) == 0 {
		return nil, 0, errors.New("lease has no subnet")
	}
	ops := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		ops[i] = clientv3.OpGet(k)
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.c.Txn(cctx).Then(ops...).Commit()
	if err != nil {
		return nil, 0, fmt.Errorf("read own lease keys: %w", err)
	}
	out := make([]*entry, len(keys))
	for i, r := range resp.Responses {
		kvs := r.GetResponseRange().Kvs
		if len(kvs) == 0 {
			return nil, 0, fmt.Errorf("%w: %s is no longer in etcd (expired, revoked or evicted)", subnet.ErrLeaseLost, keys[i])
		}
		e, err := s.parseEntry(kvs[0])
		if err != nil {
			return nil, 0, fmt.Errorf("read own lease keys: %w", err)
		}
		if !e.ok {
			return nil, 0, fmt.Errorf("%w: %s holds a record that was rejected: %s", subnet.ErrLeaseLost, keys[i], e.reason)
		}
		if e.val.NodeID != l.Record.NodeID || e.val.NodeName != l.Record.NodeName {
			return nil, 0, fmt.Errorf("%w: %s is now held by node %q (ID %s)", subnet.ErrLeaseLost, keys[i], e.val.NodeName, e.val.NodeID)
		}
		out[i] = e
	}
	return out, resp.Header.Revision, nil
}

// UpdateRecord replaces our record's data on all our keys, guarded by
// their ModRevision after checking the node ID; the keys stay on their
// etcd lease. It retries when the keys changed in between (our own
// keepalive re-binding them) and fails with ErrLeaseLost when they are
// gone or no longer ours.
func (s *Store) UpdateRecord(ctx context.Context, l *subnet.Lease, rec subnet.Record) (*subnet.Lease, error) {
	if rec.NodeName != l.Record.NodeName || rec.NodeID != l.Record.NodeID {
		return nil, fmt.Errorf("update record: the new record is for node %q (ID %s), the lease for %q (ID %s)",
			rec.NodeName, rec.NodeID, l.Record.NodeName, l.Record.NodeID)
	}
	if err := rec.Validate(); err != nil {
		return nil, fmt.Errorf("update record: invalid record (other nodes would reject it): %w", err)
	}
	data, err := json.Marshal(value{Record: rec, Subnet: l.Subnet, IPv6Subnet: l.IPv6Subnet})
	if err != nil {
		return nil, fmt.Errorf("encode lease record: %w", err)
	}
	for range 8 {
		es, _, err := s.ownKeys(ctx, l)
		if err != nil {
			return nil, fmt.Errorf("update record: %w", err)
		}
		var cmps []clientv3.Cmp
		var ops []clientv3.Op
		for _, e := range es {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.LeaseKey(e.subnet)), "=", e.kv.ModRevision))
			ops = append(ops, clientv3.OpPut(s.LeaseKey(e.subnet), string(data), clientv3.WithIgnoreLease()))
		}
		cctx, cancel := s.call(ctx)
		resp, err := s.c.Txn(cctx).If(cmps...).Then(ops...).Commit()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("update record: %w", err)
		}
		if !resp.Succeeded {
			continue
		}
		nl := *l
		nl.Record = rec
		nl.ModRevision = resp.Header.Revision
		nl.LeaseID = es[0].kv.Lease
		nl.Epoch = es[0].kv.CreateRevision
		return &nl, nil
	}
	return nil, errors.New("update record: our keys kept changing; try again")
}

// Release deletes our lease keys (only if they are still ours) and writes
// released/ tombstones for them, then revokes the etcd lease. Releasing a
// lease that is already gone is not an error.
func (s *Store) Release(ctx context.Context, l *subnet.Lease) error {
	for range 8 {
		es, _, err := s.ownKeys(ctx, l)
		if isLost(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("release: %w", err)
		}
		ok, err := s.deleteWithTombstones(ctx, es, l.Record)
		if err != nil {
			return fmt.Errorf("release: %w", err)
		}
		if ok {
			s.revoke(ctx, clientv3.LeaseID(es[0].kv.Lease))
			s.log.WithFields(leaseFields(l)).Info("lease released")
			return nil
		}
	}
	return errors.New("release: our keys kept changing; try again")
}

// deleteWithTombstones deletes the entries' keys, guarded by their
// ModRevision, and writes a tombstone for each. It reports false when a
// guard failed.
func (s *Store) deleteWithTombstones(ctx context.Context, es []*entry, rec subnet.Record) (bool, error) {
	tombLease, err := s.grant(ctx, ttlSeconds(s.releasedTTL))
	if err != nil {
		return false, err
	}
	data, err := json.Marshal(tombstone{NodeName: rec.NodeName, NodeID: rec.NodeID, ReleasedAt: time.Now().UTC()})
	if err != nil {
		return false, err
	}
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	for _, e := range es {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.LeaseKey(e.subnet)), "=", e.kv.ModRevision))
		ops = append(ops, clientv3.OpDelete(s.LeaseKey(e.subnet)),
			clientv3.OpPut(s.ReleasedKey(e.subnet), string(data), clientv3.WithLease(tombLease)))
	}
	if rec.NodeName != "" {
		// The name index entry goes in the same revision (it would go
		// with the etcd lease, but in a revision of its own that
		// watchers of leases/ never see).
		ops = append(ops, clientv3.OpDelete(s.NameKey(rec.NodeName)))
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.c.Txn(cctx).If(cmps...).Then(ops...).Commit()
	if err != nil || !resp.Succeeded {
		s.revoke(ctx, tombLease)
	} else {
		s.mu.Lock()
		delete(s.ttls, tombLease)
		s.mu.Unlock()
	}
	if err != nil {
		return false, fmt.Errorf("delete lease keys: %w", err)
	}
	return resp.Succeeded, nil
}

// Evict removes the lease of a subnet (either of a dual-stack lease's
// subnets; given as a CIDR or as a key name such as 10.244.3.0-24) or every
// lease of a node name, writes released/ tombstones for the subnets, and
// returns the evicted leases. The etcd lease is left to expire. A node
// still alive notices (its KeepAlive returns ErrLeaseLost) and claims
// again.
func (s *Store) Evict(ctx context.Context, subnetOrNode string) ([]subnet.Lease, error) {
	target, isSubnet := parseTarget(subnetOrNode)
	for range 8 {
		sn, err := s.readAll(ctx)
		if err != nil {
			return nil, fmt.Errorf("evict: %w", err)
		}
		victims := MatchLeases(leasesOf(sn.leases), subnetOrNode)
		// A key whose record does not parse can still be evicted by subnet.
		if len(victims) == 0 && isSubnet {
			if e := sn.leases[target]; e != nil && !e.ok {
				ok, err := s.deleteWithTombstones(ctx, []*entry{e}, subnet.Record{})
				if err != nil {
					return nil, fmt.Errorf("evict: %w", err)
				}
				if ok {
					return []subnet.Lease{{Subnet: target, Epoch: e.kv.CreateRevision, LeaseID: e.kv.Lease}}, nil
				}
				continue
			}
		}
		if len(victims) == 0 {
			what := "node"
			if isSubnet {
				what = "subnet"
			}
			return nil, fmt.Errorf("evict: no lease for %s %q (weftctl leases lists them)", what, subnetOrNode)
		}
		var es []*entry
		for _, l := range victims {
			for _, p := range []netip.Prefix{l.Subnet, l.IPv6Subnet} {
				if e := sn.leases[p]; p.IsValid() && e != nil {
					es = append(es, e)
				}
			}
		}
		ok, err := s.deleteWithTombstones(ctx, es, victims[0].Record)
		if err != nil {
			return nil, fmt.Errorf("evict: %w", err)
		}
		if ok {
			for _, l := range victims {
				s.log.WithFields(leaseFields(&l)).WithField("node", l.Record.NodeName).Info("lease evicted")
			}
			return victims, nil
		}
	}
	return nil, errors.New("evict: the leases kept changing; try again")
}

// parseTarget reads an Evict argument as a subnet (CIDR or key name).
func parseTarget(subnetOrNode string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(subnetOrNode); err == nil {
		return p.Masked(), true
	}
	if p, err := subnet.ParseKeyName(subnetOrNode); err == nil {
		return p, true
	}
	return netip.Prefix{}, false
}

// MatchLeases returns the leases that subnetOrNode names, as [Store.Evict]
// selects them: a subnet (CIDR such as 10.244.3.0/24, or key name such as
// 10.244.3.0-24) names the lease holding it in either family; anything
// else is a node name and names all leases of that node.
func MatchLeases(leases []subnet.Lease, subnetOrNode string) []subnet.Lease {
	target, isSubnet := parseTarget(subnetOrNode)
	var out []subnet.Lease
	for _, l := range leases {
		if isSubnet && (l.Subnet == target || l.IPv6Subnet == target) || !isSubnet && l.Record.NodeName == subnetOrNode {
			out = append(out, l)
		}
	}
	return out
}

// RecordOps returns the writes that leave l in the store as a claim of l
// would, on the etcd lease leaseID: its lease key (both keys, for a
// dual-stack lease) and its node name's index entry. It includes none of
// a claim's guards: whoever writes them takes care that the subnets are
// free and the lengths marker holds their length (tools that write
// simulated leases do).
func (s *Store) RecordOps(l subnet.Lease, leaseID clientv3.LeaseID) ([]clientv3.Op, error) {
	data, err := json.Marshal(value{Record: l.Record, Subnet: l.Subnet, IPv6Subnet: l.IPv6Subnet})
	if err != nil {
		return nil, fmt.Errorf("encode lease record: %w", err)
	}
	var ops []clientv3.Op
	for _, k := range s.leaseKeys(&l) {
		ops = append(ops, clientv3.OpPut(k, string(data), clientv3.WithLease(leaseID)))
	}
	idx, err := s.nameIndexOp(l.Record, l.Subnet, l.IPv6Subnet, leaseID)
	if err != nil {
		return nil, err
	}
	return append(ops, idx), nil
}
