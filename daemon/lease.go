// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/weftnet/weft/subnet"
)

// ErrSubnetTaken is returned by Run when this node's subnet is now leased
// by another node: the node's pods hold addresses of a subnet that is no
// longer its own and must be recreated.
var ErrSubnetTaken = errors.New("this node's subnet is leased by another node")

// fatalClaimError reports whether a Claim error cannot be cured by
// retrying.
func fatalClaimError(err error) bool {
	return errors.Is(err, subnet.ErrNodeConflict) || errors.Is(err, subnet.ErrExhausted) || errors.Is(err, subnet.ErrLeaseTaken) ||
		errors.Is(err, subnet.ErrSubnetRefused)
}

// acquireLease gets the lease to start with: a claim in etcd (Prev: the
// saved lease), or, with etcd unreachable, the saved lease (lease.ok stays
// false and the lease loop claims it in the background).
func (d *daemon) acquireLease(ctx context.Context, nc *subnet.Config, online bool) (*subnet.Lease, error) {
	prev, err := d.state.lease()
	if err != nil {
		d.log.WithError(err).Warn("ignoring the saved lease")
	}
	if prev != nil && !leaseFits(prev, nc) {
		d.log.WithField("subnet", prev.Primary()).Warn("the saved lease does not fit the network config; claiming a new subnet")
		prev = nil
	}
	deadline := time.Now().Add(startWait)
	var waitedFor string
	for attempt := 0; ; attempt++ {
		if online || attempt > 0 {
			rec := d.ownRecord()
			cctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
			l, err := d.store.Claim(cctx, subnet.ClaimRequest{Config: nc, Record: rec, Prev: prev})
			cancel()
			if err == nil {
				d.setReachable(true)
				if prev != nil && !sameSubnets(prev, l) {
					d.log.WithFields(logrus.Fields{"old": prev.Primary(), "new": l.Primary()}).Warn("our previous subnet is leased by another node: got a new subnet; pods created before this start hold old addresses and must be recreated")
				}
				d.metrics.leaseClaims.Inc()
				d.adoptLease(ctx, l, true)
				return l, nil
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if fatalClaimError(err) {
				return nil, fmt.Errorf("claim a subnet: %w", err)
			}
			if errors.Is(err, subnet.ErrNotAssigned) {
				// The store answers; it has no subnet for us yet: wait,
				// not ready, as long as it takes.
				d.waitAssigned(err, &waitedFor)
				deadline = time.Now().Add(startWait)
				if err := sleep(ctx, min(backoff(attempt), 2*time.Second)); err != nil {
					return nil, err
				}
				continue
			}
			d.log.WithError(err).Warn("claim a subnet")
		}
		if prev != nil {
			d.log.WithField("subnet", prev.Primary()).Warn(d.cfg.storeKind() + " unreachable: starting with the lease saved in the state dir; it is claimed again in the background")
			d.lease.mu.Lock()
			d.lease.cur = prev
			d.lease.mu.Unlock()
			return prev, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("cannot start: no subnet could be claimed from %s within %s and %s has no saved lease", d.cfg.storeName(), startWait, d.cfg.StateDir)
		}
		if err := sleep(ctx, min(backoff(attempt), max(time.Until(deadline), 100*time.Millisecond))); err != nil {
			return nil, err
		}
	}
}

// waitAssigned reports a claim waiting for the store to assign a subnet
// (Kubernetes: the Node's podCIDRs): in the phase that /readyz and /status
// show, and in the log once per distinct reason.
func (d *daemon) waitAssigned(err error, last *string) {
	d.setReachable(true)
	if reason := err.Error(); reason != *last {
		*last = reason
		d.log.WithError(err).Error("waiting for this node's subnet")
		d.setPhase("waiting for this node's subnet: " + reason)
	}
}

// leaseFits reports whether l's subnets belong to nc's networks.
func leaseFits(l *subnet.Lease, nc *subnet.Config) bool {
	in := func(p, network netip.Prefix) bool {
		return !p.IsValid() || (network.IsValid() && network.Contains(p.Addr()) && p.Bits() >= network.Bits())
	}
	if nc.Network.IsValid() != l.Subnet.IsValid() || nc.IPv6Network.IsValid() != l.IPv6Subnet.IsValid() {
		return false
	}
	return in(l.Subnet, nc.Network) && in(l.IPv6Subnet, nc.IPv6Network)
}

func sameSubnets(a, b *subnet.Lease) bool {
	return a.Subnet == b.Subnet && a.IPv6Subnet == b.IPv6Subnet
}

// adoptLease makes l ours after etcd confirmed it: our data version is
// raised above what the record shows (if the state dir was lost), the
// record is updated when it carries other data, and the lease is saved and
// published by gossip.
func (d *daemon) adoptLease(ctx context.Context, l *subnet.Lease, confirmed bool) {
	ls := &d.lease
	ls.mu.Lock()
	if l.Record.NodeID == d.nodeID && l.Record.Version > ls.data.Version {
		ls.data.Version = l.Record.Version
		if !sameData(ls.data, dataOf(l.Record)) {
			ls.data.Version++
		}
		if err := d.state.setDataVersion(ls.data); err != nil {
			d.log.WithError(err).Warn("save data version")
		}
	}
	ls.cur = l
	ls.ok = ls.ok || confirmed
	want := d.record(ls.data)
	ls.mu.Unlock()
	if confirmed && !recordMatches(l.Record, want) {
		if nl, err := d.updateRecord(ctx, l, want); err != nil {
			d.log.WithError(err).Warn("update our lease record; retrying later")
			poke(d.updatec)
		} else {
			l = nl
		}
	}
	if err := d.state.saveLease(l); err != nil {
		d.log.WithError(err).Warn("save lease")
	}
	d.log.WithFields(fields(logrus.Fields{"subnet": l.Subnet, "ipv6Subnet": l.IPv6Subnet, "epoch": l.Epoch, "leaseID": l.LeaseID})).Info("lease acquired")
	d.pushMeta()
	d.trigger()
}

// setLease replaces our lease (after the store changed it).
func (d *daemon) setLease(l *subnet.Lease) {
	d.lease.mu.Lock()
	d.lease.cur = l
	d.lease.mu.Unlock()
}

// ownRecord returns our record with our current data.
func (d *daemon) ownRecord() subnet.Record {
	d.lease.mu.Lock()
	defer d.lease.mu.Unlock()
	return d.record(d.lease.data)
}

func dataOf(r subnet.Record) ownData {
	return ownData{PublicIP: r.PublicIP, PublicIPv6: r.PublicIPv6, GossipAddr: r.GossipAddr, BackendType: r.BackendType, BackendData: r.BackendData}
}

// updateRecord writes our data to our lease record.
func (d *daemon) updateRecord(ctx context.Context, l *subnet.Lease, rec subnet.Record) (*subnet.Lease, error) {
	cctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
	defer cancel()
	nl, err := d.store.UpdateRecord(cctx, l, rec)
	if err != nil {
		return nil, err
	}
	d.setLease(nl)
	if err := d.state.saveLease(nl); err != nil {
		d.log.WithError(err).Warn("save lease")
	}
	d.log.WithFields(fields(logrus.Fields{"version": rec.Version, "publicIP": rec.PublicIP})).Info("lease record updated with our data")
	return nl, nil
}

// onLeaseChange is KeepAlive's callback after a recovery.
func (d *daemon) onLeaseChange(l *subnet.Lease) {
	d.setLease(l)
	d.metrics.leaseRecoveries.Inc()
	if err := d.state.saveLease(l); err != nil {
		d.log.WithError(err).Warn("save lease")
	}
	d.log.WithFields(logrus.Fields{"subnet": l.Primary(), "leaseID": l.LeaseID}).Info("lease recovered")
	d.pushMeta()
	d.trigger()
}

// leaseLoop owns the lease: it keeps it alive, re-claims the same subnet
// when our key is lost, and writes our data to the record when it differs.
// It returns an error only when the subnet is now another node's.
//
//	        ┌──────────── lost / update ─────────────┐
//	        ▼                                         │
//	[claim (unless confirmed)] ─► [KeepAlive] ────────┘
//	        │ subnet taken
//	        ▼
//	   return ErrSubnetTaken
func (d *daemon) leaseLoop(ctx context.Context) error {
	d.log.Debug("lease loop: started")
	defer d.log.Debug("lease loop: stopped")
	for {
		d.lease.mu.Lock()
		lease, ok := d.lease.cur, d.lease.ok
		d.lease.mu.Unlock()
		if !ok {
			l, err := d.reclaim(ctx, lease)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			lease = l
			// A poke from a view that arrived before the claim is stale.
			select {
			case <-d.lostc:
			default:
			}
		}
		err := d.holdLease(ctx, lease)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, subnet.ErrLeaseLost) {
			d.lease.mu.Lock()
			d.lease.ok = false
			d.lease.mu.Unlock()
			continue
		}
		if err != nil {
			d.log.WithError(err).Warn("lease keep-alive stopped; restarting it")
			if serr := sleep(ctx, time.Second); serr != nil {
				return nil
			}
		}
	}
}

// holdLease keeps lease alive until the store says it is lost, the lease
// watch says so (lostc: ErrLeaseLost) or asks for our record to be updated
// (updatec: the update is written, then nil).
func (d *daemon) holdLease(ctx context.Context, lease *subnet.Lease) error {
	kctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.store.KeepAlive(kctx, lease, d.onLeaseChange) }()
	d.metrics.leaseRenewals.Inc()
	select {
	case err := <-done:
		return err
	case <-d.lostc:
		cancel()
		<-done
		return subnet.ErrLeaseLost
	case <-d.updatec:
		cancel()
		<-done
		return d.writeBackRecord(ctx)
	}
}

// writeBackRecord writes our data to our record when it differs. A
// failure other than a lost lease is retried later (through updatec).
func (d *daemon) writeBackRecord(ctx context.Context) error {
	// Compare with (and guard the write by) our record as the store last
	// showed it, not our copy of the lease.
	d.lease.mu.Lock()
	cur, want := d.lease.cur, d.record(d.lease.data)
	if d.lease.haveView {
		if own, _ := findOwn(d.lease.view, cur.Primary(), d.nodeID); own != nil && own.ModRevision >= cur.ModRevision {
			c := *own
			cur = &c
		}
	}
	d.lease.mu.Unlock()
	if recordMatches(cur.Record, want) {
		return nil
	}
	_, err := d.updateRecord(ctx, cur, want)
	if err != nil && !errors.Is(err, subnet.ErrLeaseLost) {
		d.log.WithError(err).Warn("update our lease record; retrying")
		if serr := sleep(ctx, time.Second); serr == nil {
			poke(d.updatec)
		}
		return nil
	}
	return err
}

// reclaim claims prev's subnet again (after the key was lost, or in the
// background after an offline start). It retries until etcd answers. If the
// subnet now belongs to another node it returns ErrSubnetTaken.
func (d *daemon) reclaim(ctx context.Context, prev *subnet.Lease) (*subnet.Lease, error) {
	for attempt := 0; ; attempt++ {
		nc := d.netConfig()
		d.lease.mu.Lock()
		rec, view, haveView := d.record(d.lease.data), d.lease.view, d.lease.haveView
		d.lease.mu.Unlock()
		if haveView {
			if _, other := findOwn(view, prev.Primary(), d.nodeID); other != nil {
				return nil, subnetTakenError(prev, other.NodeName, prev)
			}
		}
		cctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
		l, err := d.store.Claim(cctx, subnet.ClaimRequest{Config: nc, Record: rec, Prev: prev})
		cancel()
		if err == nil {
			d.setReachable(true)
			d.metrics.leaseClaims.Inc()
			if !sameSubnets(prev, l) {
				// We hold the new subnet now; keep it for the next start.
				if serr := d.state.saveLease(l); serr != nil {
					d.log.WithError(serr).Warn("save lease")
				}
				return nil, subnetTakenError(prev, d.holderOf(ctx, prev), l)
			}
			d.metrics.leaseRecoveries.Inc()
			d.adoptLease(ctx, l, true)
			return l, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if fatalClaimError(err) {
			return nil, fmt.Errorf("re-claim subnet %s: %w", prev.Primary(), err)
		}
		if attempt == 0 || attempt%10 == 0 {
			d.log.WithError(err).WithField("subnet", prev.Primary()).Warn("re-claim our subnet; retrying")
		}
		// Retry after the back-off, or at once when a lease view shows
		// that etcd answers again (onView pokes lostc).
		t := time.NewTimer(backoff(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-d.lostc:
		case <-t.C:
		}
		t.Stop()
	}
}

// holderOf names the node that now holds prev's subnet, asking etcd for a
// fresh list: the watch may not have shown the new holder yet. It returns ""
// when etcd does not answer or the subnet is free again.
func (d *daemon) holderOf(ctx context.Context, prev *subnet.Lease) string {
	cctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
	defer cancel()
	v, err := d.store.List(cctx)
	if err != nil {
		return ""
	}
	if _, other := findOwn(v, prev.Primary(), d.nodeID); other != nil {
		return other.NodeName
	}
	return ""
}

func subnetTakenError(prev *subnet.Lease, holder string, got *subnet.Lease) error {
	who := "another node"
	if holder != "" {
		who = "node " + holder
	}
	msg := fmt.Sprintf("subnet %s is now leased by %s: this node's pods hold addresses of a subnet that is no longer ours and must be recreated", prev.Primary(), who)
	if got != prev {
		msg += fmt.Sprintf(" (this node now holds %s; restart weftd to use it, then recreate the node's pods)", got.Primary())
	} else {
		msg += " (restart weftd to claim a new subnet, then recreate the node's pods)"
	}
	return fmt.Errorf("%w: %s", ErrSubnetTaken, msg)
}
