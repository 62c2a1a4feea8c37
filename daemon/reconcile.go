// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"cmp"
	"context"
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"runtime/debug"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/daemon/membership"
	"github.com/weftnet/weft/subnet"
)

// debounceLoop calls fn("change") for kicks and fn("resync") once per
// resync tick, until ctx is done. A kick after a quiet spell (no call for
// at least delay) runs fn at once, so that a single change is applied
// without waiting; kicks that come within delay of the last call are
// collected into one call when delay has passed since it. A burst of
// kicks thus gives at most two calls: one at once, one for the rest. fn
// never runs concurrently with itself. beat, when set, is called on every
// turn of the loop.
func debounceLoop(ctx context.Context, kick <-chan struct{}, delay, resync time.Duration, fn func(reason string), beat func()) {
	tick := time.NewTicker(resync)
	defer tick.Stop()
	var wait <-chan time.Time
	var timer *time.Timer
	var last time.Time // when fn("change") last ran
	change := func() {
		fn("change")
		last = time.Now()
	}
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
			switch quiet := time.Since(last); {
			case wait != nil:
				// Already collected for the pending call.
			case quiet >= delay:
				change()
			default:
				timer = time.NewTimer(delay - quiet)
				wait = timer.C
			}
		case <-wait:
			wait, timer = nil, nil
			change()
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

// baseViewLocked returns the lease view to merge: the store's once it
// arrived, else the saved snapshot, else nothing (an incomplete view). The
// caller holds d.lease.mu.
func (d *daemon) baseViewLocked() (subnet.View, bool) {
	switch {
	case d.lease.haveView:
		return d.lease.view, true
	case d.lease.snapshot != nil:
		return *d.lease.snapshot, true
	}
	return subnet.View{}, false
}

// bulkChanges is the number of kernel changes, or of peers in a resync,
// from which a full reconcile returns the memory it used to the OS at once
// (see reconcileOnce).
const bulkChanges = 1000

// reconcileOnce builds the desired state and hands it to the backend.
func (d *daemon) reconcileOnce(ctx context.Context, reason string) {
	start := time.Now()
	d.lease.mu.Lock()
	lease := d.lease.cur
	base, complete := d.baseViewLocked()
	haveView := d.lease.haveView
	d.lease.mu.Unlock()
	netCfg, authoritative := d.netConfig(), d.reachable.Load() && haveView
	var members []membership.Member
	if d.gossip != nil {
		members = d.gossip.Members()
	}
	if reason == "resync" {
		// A resync always compares everything, and records its check
		// anew: the last one's index is dropped before the new one is
		// built, not held beside it (megabytes at thousands of peers).
		d.applied.forget()
	}
	peers := membership.Merge(membership.MergeInput{
		Self: d.nodeName, View: base, Members: members, Network: netCfg, Authoritative: authoritative,
	})
	desired := buildDesired(lease, d.nodeName, peers, complete)
	t := d.apply(ctx, d.checkInput(netCfg, desired.Local), desired, peers, members, authoritative)
	desired, peers, res, err := t.desired, t.peers, t.res, t.err
	d.recordRejected(t.rejected)
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

	d.checkBridgeNetfilter()
	// Ready means the data plane holds a complete list of peers: the
	// store's first (every peer it lists programmed), or the saved
	// snapshot of an earlier one while the store does not answer (a start
	// during an outage). Gossip alone or an empty start never is.
	full := haveView || (complete && !d.reachable.Load())
	prev := d.recordReconcile(desired, peers, members, res, err, full)
	d.logReconcile(prev, desired, t, logrus.Fields{"reason": reason, "applied": t.how(), "complete": complete}, took)
	if complete && t.diff == nil && d.applied.snapshotStale(base, peers) {
		// After full reconciles only (a resync at the latest): writing
		// thousands of leases on every change would cost more than the
		// change.
		d.saveSnapshot(foldGossip(base, peers))
		if len(base.Leases) > 0 {
			d.applied.snapshotOf = &base.Leases[0]
		}
	}
	if t.diff == nil && (res.Added+res.Updated+res.Removed >= bulkChanges || (reason == "resync" && len(desired.Peers) >= bulkChanges)) {
		// The heap of a bulk change (a start from empty, many nodes
		// changing at once) peaks at several times what weftd keeps; the
		// runtime would return that over minutes. One collection now
		// (a few milliseconds at thousands of peers) returns it at once.
		// So after each resync of thousands of peers: each allocates
		// megabytes it drops at once, and without a collection right
		// after, the next resync starts from a heap grown by the last
		// one's garbage (at 5000 peers the highest RSS fell from about
		// 86 to 71 MiB, for some 80 ms more CPU per resync).
		debug.FreeOSMemory()
	}
	if reason == "resync" {
		if d.repairMasquerade() {
			m.driftRepairs.Inc()
		}
		if d.repairAntispoof() {
			m.driftRepairs.Inc()
		}
		if r, ok := d.be.(backend.MemoryReleaser); ok {
			r.ReleaseMemory()
		}
	}
}

// reconcileOutcome is what a reconcile replaced in d.recon.
type reconcileOutcome struct {
	desired  backend.Desired
	had      bool // a reconcile ran before
	problems map[string]string
	err      string
}

// recordReconcile stores a reconcile's outcome in d.recon (marking the node
// ready after its first success on a complete list of peers: full) and
// returns what it replaced.
func (d *daemon) recordReconcile(desired backend.Desired, peers []membership.PeerView, members []membership.Member, res backend.Result, err error, full bool) reconcileOutcome {
	d.progress.mu.Lock()
	fileWritten := d.progress.subnetFileWritten
	d.progress.mu.Unlock()
	r := &d.recon
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := reconcileOutcome{desired: r.lastDesired, had: !r.last.IsZero(), problems: r.problems, err: r.err}
	r.lastDesired = desired
	r.last = time.Now()
	r.peers = peers
	r.members = members
	r.problems = res.Problems
	r.err = ""
	if err != nil {
		r.err = err.Error()
	} else if !r.reconciled && fileWritten && full {
		r.reconciled = true
		d.metrics.ready.Set(1)
		d.log.WithField("peers", len(desired.Peers)).Info("ready: subnet file written and the first complete list of peers programmed")
	}
	return prev
}

// logReconcile logs what a reconcile changed and what went wrong, each
// change once.
func (d *daemon) logReconcile(prev reconcileOutcome, desired backend.Desired, t changeTurn, turn logrus.Fields, took time.Duration) {
	m := d.metrics
	res, err := t.res, t.err
	log := d.log.WithFields(turn).WithField("peers", len(desired.Peers))
	if err != nil {
		m.reconcileErrors.Inc()
		if err.Error() != prev.err {
			log.WithError(err).Error("reconcile failed")
		}
	} else if prev.err != "" {
		log.Info("reconcile succeeded again")
	}
	if res.Changed() && t.diff == nil && prev.had && desiredEqual(prev.desired, desired) {
		m.driftRepairs.Inc()
		log.WithFields(logrus.Fields{"added": res.Added, "updated": res.Updated, "removed": res.Removed}).
			Warnf("reconcile changed %d entries without any input change (drift repaired)", res.Added+res.Updated+res.Removed)
	}
	diff := t.diff
	if diff == nil {
		full := diffPeers(prev.desired.Peers, desired.Peers)
		diff = &full
	}
	// Each peer's line says which turn applied it (reason, "in full" or
	// "as N changes").
	plog := d.log.WithFields(turn)
	for _, p := range diff.Added {
		plog.WithFields(peerFields(p)).Info("peer added")
	}
	for _, p := range diff.Updated {
		plog.WithFields(peerFields(p)).Info("peer updated")
	}
	for _, p := range diff.Removed {
		plog.WithFields(peerFields(p)).Info("peer removed")
	}
	logProblems(d.log, prev.problems, res.Problems)
	log.WithFields(logrus.Fields{"added": res.Added, "updated": res.Updated, "removed": res.Removed, "seconds": took.Seconds()}).Debug("reconciled")
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
	digest := leasesDigest(v.Leases)
	d.recon.mu.Lock()
	same := digest == d.recon.savedSnapshot
	d.recon.mu.Unlock()
	if same {
		return
	}
	if err := d.state.saveSnapshot(subnet.View{Leases: v.Leases, Complete: true, Revision: v.Revision}); err != nil {
		d.log.WithError(err).Warn("save peer snapshot")
		return
	}
	d.recon.mu.Lock()
	d.recon.savedSnapshot = digest
	d.recon.mu.Unlock()
}

// snapshotSeed seeds [leasesDigest] (digests are compared within one run
// only).
var snapshotSeed = maphash.MakeSeed()

// leasesDigest identifies leases, in any order, without the fields that
// change on every renewal (so that the snapshot is rewritten only when
// peers change); no leases give 0. It keeps 64 bits, not a copy of
// thousands of leases: two sets of leases that differ share a digest with
// a chance of 2⁻⁶⁴, and the snapshot would then wait for the next change.
func leasesDigest(ls []subnet.Lease) uint64 {
	if len(ls) == 0 {
		return 0
	}
	type keyed struct {
		primary netip.Prefix
		hash    uint64
	}
	ks := make([]keyed, len(ls))
	for i, l := range ls {
		l.Expiry = time.Time{}
		l.ModRevision = 0
		l.LeaseID = 0
		ks[i] = keyed{l.Primary(), maphash.Comparable(snapshotSeed, l)}
	}
	slices.SortFunc(ks, func(a, b keyed) int { return cmp.Or(comparePrefix(a.primary, b.primary), cmp.Compare(a.hash, b.hash)) })
	var h maphash.Hash
	h.SetSeed(snapshotSeed)
	var b [8]byte
	for _, k := range ks {
		binary.LittleEndian.PutUint64(b[:], k.hash)
		h.Write(b[:])
	}
	return h.Sum64()
}
