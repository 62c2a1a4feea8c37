// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/subnet"
)

// KeepAlive keeps lease l alive until ctx is done, then returns nil (see
// [subnet.Store.KeepAlive]). It is the one goroutine that renews l; run
// it once per lease.
//
//	           etcd error: back off
//	              ┌─────┐
//	              ▼     │
//	start ──► verify ───┴── keys ours, etcd lease alive ──► hold
//	              ▲       (re-bound to a new one if not)      │
//	              │                                           │
//	              └─ renewal stream closed; own key deleted, ─┘
//	                 rewritten or moved to another etcd lease
//
//	verify: key gone or another node's ──► return ErrLeaseLost
//
// verify reads our keys and checks their node ID. If their etcd lease is
// still alive it is kept; otherwise a new etcd lease is granted and only
// our own keys are re-bound to it, guarded by the ModRevision just read.
// hold runs etcd's KeepAlive stream and watches our keys, so that a
// revocation or an eviction is noticed at once rather than at the next
// renewal. onChange (which may be nil) is called with the lease after every
// recovery, and when the first verify finds the lease changed.
func (s *Store) KeepAlive(ctx context.Context, l *subnet.Lease, onChange func(*subnet.Lease)) error {
	cur := *l
	bo := newBackoff(250*time.Millisecond, 10*time.Second)
	recovered := false
	failing := false // the last verify failed
	for {
		nl, rev, err := s.verify(ctx, &cur)
		if ctx.Err() != nil {
			return nil
		}
		if isLost(err) {
			s.log.WithError(err).Warn("lease lost")
			return err
		}
		if err != nil {
			// Warn once per outage; the retries go to debug.
			d := bo.next()
			log := s.log.WithError(err).WithField("retryIn", d.Seconds())
			if failing {
				log.Debug("cannot check lease, retrying")
			} else {
				log.Warn("cannot check lease, retrying")
			}
			failing = true
			if !sleep(ctx, d) {
				return nil
			}
			continue
		}
		failing = false
		changed := nl.LeaseID != cur.LeaseID || nl.ModRevision != cur.ModRevision
		cur = *nl
		if (recovered || changed) && onChange != nil {
			c := cur
			onChange(&c)
		}
		if recovered {
			s.log.WithFields(leaseFields(&cur)).Info("lease renewal recovered")
		}
		start := time.Now()
		err = s.hold(ctx, &cur, rev)
		if ctx.Err() != nil {
			return nil
		}
		s.log.WithError(err).Info("lease renewal interrupted, recovering")
		recovered = true
		if time.Since(start) < time.Second {
			// Do not spin when the stream breaks at once (no leader yet).
			if !sleep(ctx, bo.next()) {
				return nil
			}
		} else {
			bo.reset()
		}
	}
}

// verify checks that l's keys are ours and attached to a live etcd lease,
// re-binding them to a new one if not. It returns the current lease and
// the etcd revision it reflects.
func (s *Store) verify(ctx context.Context, l *subnet.Lease) (*subnet.Lease, int64, error) {
	es, rev, err := s.ownKeys(ctx, l)
	if err != nil {
		return nil, 0, err
	}
	id := clientv3.LeaseID(es[0].kv.Lease)
	same := id != 0
	for _, e := range es[1:] {
		same = same && clientv3.LeaseID(e.kv.Lease) == id
	}
	nl := *l
	nl.Record = es[0].val.Record
	nl.Epoch = es[0].kv.CreateRevision
	nl.ModRevision = es[0].kv.ModRevision
	if same {
		cctx, cancel := s.call(ctx)
		resp, err := s.c.TimeToLive(cctx, id)
		cancel()
		switch {
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
		case err != nil:
			return nil, 0, fmt.Errorf("read TTL of etcd lease %x: %w", int64(id), err)
		case resp.TTL > 0:
			s.mu.Lock()
			if _, ok := s.ttls[id]; !ok && resp.GrantedTTL > 0 {
				s.ttls[id] = resp.GrantedTTL
			}
			s.mu.Unlock()
			nl.LeaseID = int64(id)
			nl.Expiry = time.Now().Add(time.Duration(resp.TTL) * time.Second)
			return &nl, rev, nil
		}
	}
	// The etcd lease is gone (or the keys are split over leases): grant a
	// new one and re-bind our keys, unchanged, guarded by what we read.
	ttl, ok := s.grantedTTL(clientv3.LeaseID(l.LeaseID))
	if !ok {
		ttl, ok = s.grantedTTL(id)
	}
	if !ok {
		ttl = ttlSeconds(DefaultLeaseTTL)
	}
	newID, err := s.grant(ctx, ttl)
	if err != nil {
		return nil, 0, err
	}
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	for _, e := range es {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.LeaseKey(e.subnet)), "=", e.kv.ModRevision))
		// The value stays as read (the guard above): only the etcd lease
		// changes.
		ops = append(ops, clientv3.OpPut(s.LeaseKey(e.subnet), "", clientv3.WithIgnoreValue(), clientv3.WithLease(newID)))
	}
	// The name index entry moves along (it was on the lost etcd lease):
	// our keys are live, so the name is ours to point with.
	idx, err := s.nameIndexOp(nl.Record, l.Subnet, l.IPv6Subnet, newID)
	if err != nil {
		s.revoke(ctx, newID)
		return nil, 0, err
	}
	ops = append(ops, idx)
	cctx, cancel := s.call(ctx)
	resp, err := s.c.Txn(cctx).If(cmps...).Then(ops...).Commit()
	cancel()
	if err != nil || !resp.Succeeded {
		s.revoke(ctx, newID)
		if err != nil {
			return nil, 0, fmt.Errorf("re-bind lease keys: %w", err)
		}
		return nil, 0, errors.New("re-bind lease keys: they changed while re-binding")
	}
	nl.LeaseID = int64(newID)
	nl.ModRevision = resp.Header.Revision
	nl.Expiry = time.Now().Add(time.Duration(ttl) * time.Second)
	s.log.WithFields(leaseFields(&nl)).Info("lease keys re-bound to a new etcd lease")
	return &nl, resp.Header.Revision, nil
}

// hold renews l's etcd lease and watches l's keys from revision rev+1. It
// returns why it stopped: the renewal stream closed, a key was deleted,
// rewritten by someone else or moved to another etcd lease, or the watch
// broke.
func (s *Store) hold(ctx context.Context, l *subnet.Lease, rev int64) error {
	hctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	kch, err := s.c.KeepAlive(hctx, clientv3.LeaseID(l.LeaseID))
	if err != nil {
		return fmt.Errorf("start lease renewal: %w", err)
	}
	keys := s.leaseKeys(l)
	wchs := make([]clientv3.WatchChan, 2)
	for i, k := range keys {
		wchs[i] = s.c.Watch(hctx, k, clientv3.WithRev(rev+1))
	}
	if s.testHookHold != nil {
		s.testHookHold()
	}
	check := func(wr clientv3.WatchResponse, ok bool) error {
		if !ok {
			return errors.New("watch of own lease key closed")
		}
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watch of own lease key: %w", err)
		}
		for _, ev := range wr.Events {
			key := string(ev.Kv.Key)
			if ev.Type == mvccpb.DELETE {
				return fmt.Errorf("%s was deleted", key)
			}
			var v value
			if err := json.Unmarshal(ev.Kv.Value, &v); err != nil || v.NodeID != l.Record.NodeID {
				return fmt.Errorf("%s was rewritten by someone else", key)
			}
			if ev.Kv.Lease != l.LeaseID {
				return fmt.Errorf("%s moved to etcd lease %x", key, ev.Kv.Lease)
			}
		}
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case resp, ok := <-kch:
			if !ok {
				return errors.New("etcd closed the lease renewal stream (lease expired or revoked, no leader, or no reply within the TTL)")
			}
			l.Expiry = time.Now().Add(time.Duration(resp.TTL) * time.Second)
		case wr, ok := <-wchs[0]:
			if err := check(wr, ok); err != nil {
				return err
			}
		case wr, ok := <-wchs[1]:
			if err := check(wr, ok); err != nil {
				return err
			}
		}
	}
}
