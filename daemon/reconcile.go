// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"context"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/daemon/membership"
	"github.com/weftnet/weft/subnet"
)

// debounceLoop calls fn once per burst of kicks (delay after the first
// kick of a burst; kicks during the wait join it) and once per resync
// tick, until ctx is done. fn never runs concurrently with itself. beat,
// when set, is called on every turn of the loop.
func debounceLoop(ctx context.Context, kick <-chan struct{}, delay, resync time.Duration, fn func(reason string), beat func()) {
	tick := time.NewTicker(resync)
	defer tick.Stop()
	var wait <-chan time.Time
	var timer *time.Timer
	for {
		if beat != nil {
			beat()
		}
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return
		case <-kick:
			if wait == nil {
				timer = time.NewTimer(delay)
				wait = timer.C
			}
		case <-wait:
			wait, timer = nil, nil
			fn("change")
		case <-tick.C:
			fn("resync")
		}
	}
}

// reconcileLoop is the daemon's one reconcile loop.
func (d *daemon) reconcileLoop(ctx context.Context) error {
	d.log.Debug("reconcile loop: started")
	defer d.log.Debug("reconcile loop: stopped")
	debounceLoop(ctx, d.kick, debounceDelay, d.cfg.ResyncInterval,
		func(reason string) { d.reconcileOnce(ctx, reason) },
		func() { d.heartbeat.Store(time.Now().UnixNano()) })
	return nil
}

// baseViewLocked returns the lease view to merge: etcd's once it arrived,
// else the saved snapshot, else nothing (an incomplete view).
func (d *daemon) baseViewLocked() (subnet.View, bool) {
	switch {
	case d.haveView:
		return d.view, true
	case d.snapshot != nil:
		return *d.snapshot, true
	}
	return subnet.View{}, false
}

// reconcileOnce builds the desired state and hands it to the backend.
func (d *daemon) reconcileOnce(ctx context.Context, reason string) {
	start := time.Now()
	d.mu.Lock()
	lease := d.lease
	base, complete := d.baseViewLocked()
	d.mu.Unlock()
	var members []membership.Member
	if d.gossip != nil {
		members = d.gossip.Members()
	}
	peers := membership.Merge(d.nodeName, base, members)
	desired := buildDesired(lease, d.nodeName, peers, complete)

	res, err := d.be.Reconcile(ctx, desired)
	took := time.Since(start)
	if ctx.Err() != nil {
		return
	}
	m := d.metrics
	m.reconciles.Inc()
	m.reconcileDuration.Observe(took.Seconds())
	m.peers.Set(float64(len(desired.Peers)))
	m.changes.WithLabelValues("added").Add(float64(res.Added))
	m.changes.WithLabelValues("updated").Add(float64(res.Updated))
	m.changes.WithLabelValues("removed").Add(float64(res.Removed))
	m.setMembers(members)

	d.mu.Lock()
	prev, hadPrev := d.lastDesired, !d.lastReconcile.IsZero()
	prevProblems, prevErr := d.problems, d.reconcileErr
	d.lastDesired = desired
	d.lastReconcile = time.Now()
	d.peers = peers
	d.members = members
	d.problems = res.Problems
	d.reconcileErr = ""
	if err != nil {
		d.reconcileErr = err.Error()
	} else if !d.reconciled && d.subnetFileWritten {
		d.reconciled = true
		m.ready.Set(1)
		d.log.Info("ready: subnet file written and first reconcile done")
	}
	d.mu.Unlock()

	log := d.log.WithFields(logrus.Fields{"reason": reason, "peers": len(desired.Peers), "complete": complete})
	if err != nil {
		m.reconcileErrors.Inc()
		if err.Error() != prevErr {
			log.WithError(err).Error("reconcile failed")
		}
	} else if prevErr != "" {
		log.Info("reconcile succeeded again")
	}
	if hadPrev && desiredEqual(prev, desired) && res.Changed() {
		m.driftRepairs.Inc()
		log.WithFields(logrus.Fields{"added": res.Added, "updated": res.Updated, "removed": res.Removed}).
			Warnf("reconcile changed %d entries without any input change (drift repaired)", res.Added+res.Updated+res.Removed)
	}
	diff := diffPeers(prev.Peers, desired.Peers)
	for _, p := range diff.Added {
		d.log.WithFields(peerFields(p)).Info("peer added")
	}
	for _, p := range diff.Updated {
		d.log.WithFields(peerFields(p)).Info("peer updated")
	}
	for _, p := range diff.Removed {
		d.log.WithFields(peerFields(p)).Info("peer removed")
	}
	logProblems(d.log, prevProblems, res.Problems)
	log.WithFields(logrus.Fields{"added": res.Added, "updated": res.Updated, "removed": res.Removed, "seconds": took.Seconds()}).Debug("reconciled")

	if complete {
		d.saveSnapshot(foldGossip(base, peers))
	}
	if reason == "resync" {
		if d.repairMasquerade() {
			m.driftRepairs.Inc()
		}
		if r, ok := d.be.(backend.MemoryReleaser); ok {
			r.ReleaseMemory()
		}
	}
}

// logProblems logs a peer the backend cannot serve when its problem appears
// or changes, and when it clears: once, not on every reconcile. Backends
// only report problems (backend.Result.Problems); this is the one place
// that logs them.
func logProblems(log logrus.FieldLogger, prev, cur map[string]string) {
	for name, why := range cur {
		if prev[name] != why {
			log.WithFields(logrus.Fields{"peer": name, "problem": why}).Error("backend cannot serve peer")
		}
	}
	for name := range prev {
		if _, ok := cur[name]; !ok {
			log.WithField("peer", name).Info("peer problem cleared")
		}
	}
}

func peerFields(p backend.Peer) logrus.Fields {
	return fields(logrus.Fields{"peer": p.Name, "subnet": primaryOf(p), "publicIP": p.PublicIP, "epoch": p.Epoch, "version": p.Version})
}

// saveSnapshot persists v when its leases differ from the saved ones.
func (d *daemon) saveSnapshot(v subnet.View) {
	norm := normLeases(v.Leases)
	d.mu.Lock()
	same := slices.EqualFunc(norm, d.savedSnap, func(a, b subnet.Lease) bool { return a == b })
	d.mu.Unlock()
	if same {
		return
	}
	if err := d.state.saveSnapshot(subnet.View{Leases: v.Leases, Complete: true, Revision: v.Revision}); err != nil {
		d.log.WithError(err).Warn("save peer snapshot")
		return
	}
	d.mu.Lock()
	d.savedSnap = norm
	d.mu.Unlock()
}

// normLeases returns leases without the fields that change on every
// renewal (so that the snapshot is rewritten only when peers change).
func normLeases(ls []subnet.Lease) []subnet.Lease {
	out := make([]subnet.Lease, len(ls))
	for i, l := range ls {
		l.Expiry = time.Time{}
		l.ModRevision = 0
		l.LeaseID = 0
		out[i] = l
	}
	slices.SortFunc(out, func(a, b subnet.Lease) int { return comparePrefix(a.Primary(), b.Primary()) })
	return out
}
