// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcd

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/subnet"
)

// WatchLeases calls fn with a complete view of all leases after the initial
// list and after every change, until ctx is done; then it returns nil.
//
// It lists the leases, then watches from the next revision (requiring a
// leader, with progress notifications), advancing its revision with every
// response. When the watch breaks (compaction, lost leader, closed
// stream) it lists again and hands fn the new complete view, so a change
// is never lost. Every view fn receives is complete (View.Complete is
// true) and reflects one etcd revision. fn is never called concurrently;
// it runs on WatchLeases' goroutine, so it should be quick.
func (s *Store) WatchLeases(ctx context.Context, fn func(subnet.View)) error {
	bo := newBackoff(250*time.Millisecond, 10*time.Second)
	// failing is set after an interruption until a list succeeds again:
	// an outage is logged once, its retries at debug.
	failing := false
	for {
		err := s.watchLeasesOnce(ctx, func(v subnet.View) {
			failing = false
			fn(v)
		}, bo)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, rpctypes.ErrCompacted) {
			// The relist reads the current revision, so relisting at once
			// cannot loop on the compacted one.
			s.log.WithError(err).Info("lease watch hit a compaction, relisting")
			continue
		}
		d := bo.next()
		log := s.log.WithError(err).WithField("retryIn", d.Seconds())
		if failing {
			log.Debug("lease watch interrupted, relisting")
		} else {
			log.Info("lease watch interrupted, relisting")
		}
		failing = true
		if !sleep(ctx, d) {
			return nil
		}
	}
}

func (s *Store) watchLeasesOnce(ctx context.Context, fn func(subnet.View), bo *backoff) error {
	sn, err := s.listLeases(ctx)
	if err != nil {
		return err
	}
	// Parsed once per change, not once per view.
	entries, stray, rev := sn.leases, sn.stray, sn.rev
	list := newLeaseList(entries)
	view := func() subnet.View { return viewWith(rev, list.refresh(entries), entries, stray) }
	fn(view())
	if s.testHookWatchListed != nil {
		s.testHookWatchListed(rev)
	}

	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer wcancel()
	wch := s.c.Watch(wctx, s.LeasesPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithProgressNotify())
	for wr := range wch {
		if err := wr.Err(); err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) {
				return fmt.Errorf("watch from revision %d: %w (compacted at %d)", rev+1, err, wr.CompactRevision)
			}
			return fmt.Errorf("watch leases: %w", err)
		}
		bo.reset()
		if wr.Header.Revision > rev {
			rev = wr.Header.Revision
		}
		if len(wr.Events) == 0 {
			continue // progress notification or creation
		}
		changed := false
		for _, ev := range wr.Events {
			switch ev.Type {
			case mvccpb.PUT:
				e, err := s.parseEntry(ev.Kv)
				if err != nil {
					name := strings.TrimPrefix(string(ev.Kv.Key), s.LeasesPrefix())
					changed = changed || stray[name] == ""
					s.addEntry(entries, stray, ev.Kv)
					continue
				}
				old := entries[e.subnet]
				changed = changed || old == nil || old.val != e.val || old.ok != e.ok || old.reason != e.reason ||
					old.kv.CreateRevision != e.kv.CreateRevision || old.kv.Lease != e.kv.Lease
				list.put(e.subnet, old, e)
				entries[e.subnet] = e
			case mvccpb.DELETE:
				if p, ok := s.leaseKeySubnet(string(ev.Kv.Key)); ok && entries[p] != nil {
					changed = true
					list.deleted()
					delete(entries, p)
				} else if name := strings.TrimPrefix(string(ev.Kv.Key), s.LeasesPrefix()); stray[name] != "" {
					changed = true
					delete(stray, name)
				}
			}
		}
		if len(entries)+len(stray) > s.maxListKeys {
			// Listing again reports it (and fails until keys go).
			return s.checkListed(s.LeasesPrefix(), nil, true)
		}
		if changed {
			fn(view())
		}
	}
	return errors.New("watch closed")
}

// WatchConfig calls fn with the current network config (or the error
// saying why there is none usable), then with every change, until ctx is
// done; then it returns nil. A deleted config is reported as an error
// wrapping [subnet.ErrNoConfig], an invalid one with its validation error.
// fn is never called concurrently, and not twice in a row for the same
// stored value.
func (s *Store) WatchConfig(ctx context.Context, fn func(*subnet.Config, error)) error {
	bo := newBackoff(250*time.Millisecond, 10*time.Second)
	var last *mvccpb.KeyValue
	first, reported := true, false
	deliver := func(kv *mvccpb.KeyValue) {
		if !first && sameKV(last, kv) {
			return
		}
		first = false
		last = kv
		if kv == nil {
			fn(nil, s.noConfig())
			return
		}
		fn(s.parseConfig(kv.Value))
	}
	for {
		err := func() error {
			cctx, cancel := s.call(ctx)
			resp, err := s.c.Get(cctx, s.ConfigKey())
			cancel()
			if err != nil {
				if first && !reported {
					// The caller learns why there is no config yet.
					reported = true
					fn(nil, fmt.Errorf("read network config from etcd: %w", err))
				}
				return err
			}
			var kv *mvccpb.KeyValue
			if len(resp.Kvs) > 0 {
				kv = resp.Kvs[0]
			}
			deliver(kv)
			wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
			defer wcancel()
			for wr := range s.c.Watch(wctx, s.ConfigKey(), clientv3.WithRev(resp.Header.Revision+1)) {
				if err := wr.Err(); err != nil {
					return err
				}
				bo.reset()
				for _, ev := range wr.Events {
					if ev.Type == mvccpb.DELETE {
						deliver(nil)
					} else {
						deliver(ev.Kv)
					}
				}
			}
			return errors.New("watch closed")
		}()
		if ctx.Err() != nil {
			return nil
		}
		d := bo.next()
		s.log.WithError(err).WithField("retryIn", d.Seconds()).Debug("config watch interrupted, reading again")
		if !sleep(ctx, d) {
			return nil
		}
	}
}

func sameKV(a, b *mvccpb.KeyValue) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.ModRevision == b.ModRevision
}

// leaseKeySubnet returns the subnet a full lease key names.
func (s *Store) leaseKeySubnet(key string) (netip.Prefix, bool) {
	if !strings.HasPrefix(key, s.LeasesPrefix()) {
		return netip.Prefix{}, false
	}
	p, err := parseLeaseKey(strings.TrimPrefix(key, s.LeasesPrefix()))
	return p, err == nil
}
