// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package subnettest provides [Store], an in-memory [subnet.Store] for
// tests of code that consumes leases: the daemon's merging of lease views
// with gossip, its reaction to a lost lease or a changed config, its
// reconcile triggers.
//
// It is NOT a test of leasing. Transactions, etcd leases, TTLs, expiry,
// revisions and compaction are only imitated, and races cannot happen the
// way they do against etcd. Leasing itself is tested in subnet/etcd against
// a real etcd server.
package subnettest

import (
	"context"
	cryptorand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/weftnet/weft/subnet"
)

// Store is an in-memory lease store. The zero value is not usable: call
// [New]. All methods are safe for concurrent use.
type Store struct {
	// mu guards the following.
	mu      sync.Mutex
	cfg     *subnet.Config
	cfgErr  error
	leases  map[netip.Prefix]subnet.Lease // by primary subnet
	rev     int64
	leaseID int64
	// changed is closed and replaced on every change.
	changed chan struct{}
	// claimErr, when set, is returned by Claim (see SetClaimError).
	claimErr error
	// probeErr, when set, is returned by Probe (see SetProbeError).
	probeErr error
	// gossipKey is the cluster's gossip key (nil until GossipKey makes
	// one or SetGossipKey sets one).
	gossipKey []byte
}

// leaseTTL is the expiry the fake writes into a claimed lease. Nothing
// expires in the fake; leases go only by [Store.Delete].
const leaseTTL = 24 * time.Hour

var (
	_ subnet.Store      = (*Store)(nil)
	_ subnet.GossipKeys = (*Store)(nil)
)

// New returns an empty store with no config.
func New() *Store {
	return &Store{leases: map[netip.Prefix]subnet.Lease{}, changed: make(chan struct{})}
}

// changedLocked records a change and wakes the watchers.
func (s *Store) changedLocked() {
	s.rev++
	close(s.changed)
	s.changed = make(chan struct{})
}

// wait returns a channel closed at the next change.
func (s *Store) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// SetConfig sets the network config (c is validated as GetConfig would
// report it; an invalid one is reported as a [*subnet.ConfigError]).
func (s *Store) SetConfig(c *subnet.Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c == nil {
		s.cfg, s.cfgErr = nil, nil
	} else if err := c.Validate(); err != nil {
		s.cfg, s.cfgErr = nil, &subnet.ConfigError{Key: "the test store", Err: err}
	} else {
		cc := *c
		cc.SetDefaults()
		s.cfg, s.cfgErr = &cc, nil
	}
	s.changedLocked()
}

// SetClaimError makes Claim fail with err (nil: succeed again).
func (s *Store) SetClaimError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.claimErr = err
}

// SetProbeError makes Probe fail with err, as an unreachable store
// would (nil: answer again). The other methods are not affected: use
// SetClaimError for claims.
func (s *Store) SetProbeError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.probeErr = err
}

// Probe returns the error set with SetProbeError, or ctx's error.
func (s *Store) Probe(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.probeErr
}

// Put adds or replaces a lease, as another node's claim would. A zero
// Epoch, ModRevision or LeaseID is filled in.
func (s *Store) Put(l subnet.Lease) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changedLocked()
	if l.Epoch == 0 {
		l.Epoch = s.rev
	}
	if l.ModRevision == 0 {
		l.ModRevision = s.rev
	}
	if l.LeaseID == 0 {
		s.leaseID++
		l.LeaseID = s.leaseID
	}
	s.leases[l.Primary()] = l
}

// Delete removes the lease whose primary subnet is p, as an expiry or an
// eviction would; the holder's KeepAlive returns ErrLeaseLost. It reports
// whether there was such a lease.
func (s *Store) Delete(p netip.Prefix) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.leases[p]; !ok {
		return false
	}
	delete(s.leases, p)
	s.changedLocked()
	return true
}

// GetConfig returns the config set with SetConfig.
func (s *Store) GetConfig(ctx context.Context) (*subnet.Config, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.configLocked()
}

func (s *Store) configLocked() (*subnet.Config, error) {
	switch {
	case s.cfgErr != nil:
		return nil, s.cfgErr
	case s.cfg == nil:
		return nil, fmt.Errorf("%w in the test store", subnet.ErrNoConfig)
	}
	c := *s.cfg
	return &c, nil
}

// WatchConfig calls fn with the config now and after every SetConfig,
// until ctx is done.
func (s *Store) WatchConfig(ctx context.Context, fn func(*subnet.Config, error)) error {
	s.mu.Lock()
	c, err := s.configLocked()
	ch := s.changed
	s.mu.Unlock()
	fn(c, err)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
		}
		s.mu.Lock()
		nc, nerr := s.configLocked()
		ch = s.changed
		s.mu.Unlock()
		if !sameConfig(c, err, nc, nerr) {
			c, err = nc, nerr
			fn(c, err)
		}
	}
}

func sameConfig(a *subnet.Config, aerr error, b *subnet.Config, berr error) bool {
	if (aerr == nil) != (berr == nil) || (a == nil) != (b == nil) {
		return false
	}
	if aerr != nil {
		return aerr.Error() == berr.Error()
	}
	return a == nil || *a == *b
}

// Claim imitates the real store's choices: the node's own lease, else
// req.Prev's subnets when free, else random free subnets (released
// subnets are not tracked). It refuses a node name held by another node
// ID and reports exhaustion like the real store.
func (s *Store) Claim(ctx context.Context, req subnet.ClaimRequest) (*subnet.Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if req.Config == nil {
		return nil, fmt.Errorf("claim: no network config")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.claimErr != nil {
		return nil, s.claimErr
	}
	taken := map[netip.Prefix]bool{}
	for p, l := range s.leases {
		if l.Record.NodeName == req.Record.NodeName {
			if l.Record.NodeID != req.Record.NodeID {
				return nil, fmt.Errorf("%w: node name %q has a live lease on %s held by node ID %s, but this node's ID is %s",
					subnet.ErrNodeConflict, req.Record.NodeName, p, l.Record.NodeID, req.Record.NodeID)
			}
			l.Record = req.Record
			l.ModRevision = s.rev + 1
			s.leases[p] = l
			s.changedLocked()
			return &l, nil
		}
		taken[l.Subnet], taken[l.IPv6Subnet] = true, true
	}
	r := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	pick := func(sp subnet.Space, prev netip.Prefix) (netip.Prefix, error) {
		if !sp.IsValid() {
			return netip.Prefix{}, nil
		}
		if prev.IsValid() && sp.Contains(prev) && !taken[prev] {
			return prev, nil
		}
		p, ok := sp.Pick(r, taken, nil)
		if !ok {
			return netip.Prefix{}, sp.Exhausted()
		}
		return p, nil
	}
	var prev subnet.Lease
	if req.Prev != nil {
		prev = *req.Prev
	}
	v4, err := pick(req.Config.IPv4Space(), prev.Subnet)
	if err != nil {
		return nil, err
	}
	v6, err := pick(req.Config.IPv6Space(), prev.IPv6Subnet)
	if err != nil {
		return nil, err
	}
	s.changedLocked()
	s.leaseID++
	l := subnet.Lease{Subnet: v4, IPv6Subnet: v6, Record: req.Record, Epoch: s.rev, ModRevision: s.rev,
		LeaseID: s.leaseID, Expiry: time.Now().Add(leaseTTL)}
	s.leases[l.Primary()] = l
	return &l, nil
}

// ownedLocked reports whether l's lease is still held by l's node.
func (s *Store) ownedLocked(l *subnet.Lease) (subnet.Lease, error) {
	cur, ok := s.leases[l.Primary()]
	if !ok {
		return subnet.Lease{}, fmt.Errorf("%w: %s is no longer in the store", subnet.ErrLeaseLost, l.Primary())
	}
	if cur.Record.NodeID != l.Record.NodeID || cur.Record.NodeName != l.Record.NodeName {
		return subnet.Lease{}, fmt.Errorf("%w: %s is now held by node %q", subnet.ErrLeaseLost, l.Primary(), cur.Record.NodeName)
	}
	return cur, nil
}

// KeepAlive blocks until ctx is done (returning nil) or until the lease is
// deleted or taken by another node (returning an error wrapping
// ErrLeaseLost). It never calls onChange: the fake has no renewal to
// recover.
func (s *Store) KeepAlive(ctx context.Context, l *subnet.Lease, onChange func(*subnet.Lease)) error {
	for {
		s.mu.Lock()
		_, err := s.ownedLocked(l)
		ch := s.changed
		s.mu.Unlock()
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
		}
	}
}

// UpdateRecord replaces the record of our lease.
func (s *Store) UpdateRecord(ctx context.Context, l *subnet.Lease, rec subnet.Record) (*subnet.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.ownedLocked(l)
	if err != nil {
		return nil, fmt.Errorf("update record: %w", err)
	}
	if rec.NodeID != cur.Record.NodeID || rec.NodeName != cur.Record.NodeName {
		return nil, fmt.Errorf("update record: the new record is for node %q (ID %s)", rec.NodeName, rec.NodeID)
	}
	s.changedLocked()
	cur.Record = rec
	cur.ModRevision = s.rev
	s.leases[cur.Primary()] = cur
	return &cur, nil
}

// Release deletes our lease; releasing a lease that is gone is no error.
// (Not part of [subnet.Store]: the daemon never releases; it is here for
// tests that free a subnet as an operator would.)
func (s *Store) Release(ctx context.Context, l *subnet.Lease) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.ownedLocked(l); err != nil {
		return nil
	}
	delete(s.leases, l.Primary())
	s.changedLocked()
	return nil
}

// List returns a complete view.
func (s *Store) List(ctx context.Context) (subnet.View, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.viewLocked(), nil
}

// Leases returns the current leases sorted by primary subnet.
func (s *Store) Leases() []subnet.Lease {
	v, _ := s.List(context.Background())
	return v.Leases
}

func (s *Store) viewLocked() subnet.View {
	v := subnet.View{Complete: true, Revision: s.rev, Leases: make([]subnet.Lease, 0, len(s.leases))}
	for _, l := range s.leases {
		v.Leases = append(v.Leases, l)
	}
	// Addr.Compare puts IPv4 before IPv6.
	slices.SortFunc(v.Leases, func(a, b subnet.Lease) int { return a.Primary().Addr().Compare(b.Primary().Addr()) })
	return v
}

// WatchLeases calls fn with the complete view now and after every change,
// until ctx is done. fn is never called concurrently.
func (s *Store) WatchLeases(ctx context.Context, fn func(subnet.View)) error {
	for {
		s.mu.Lock()
		v := s.viewLocked()
		ch := s.changed
		s.mu.Unlock()
		fn(v)
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
		}
	}
}

// GossipKey returns the store's gossip key, creating 32 random bytes on
// the first call (see [subnet.GossipKeys]).
func (s *Store) GossipKey(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gossipKey == nil {
		k := make([]byte, 32)
		if _, err := cryptorand.Read(k); err != nil {
			return nil, fmt.Errorf("gossip key: read random bytes: %w", err)
		}
		s.gossipKey = k
	}
	return slices.Clone(s.gossipKey), nil
}

// SetGossipKey sets the gossip key GossipKey returns, as an operator who
// stored one would (nil: none, the next GossipKey creates one).
func (s *Store) SetGossipKey(k []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gossipKey = slices.Clone(k)
}
