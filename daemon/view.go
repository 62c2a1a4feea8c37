// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"github.com/sirupsen/logrus"

	"github.com/weftnet/weft/daemon/membership"
	"github.com/weftnet/weft/subnet"
)

// The lease view: the lease watch hands every complete view to onView,
// which keeps it in d.lease, tells the lease loop when our own record needs
// it, and feeds gossip the addresses of new nodes.

// onView handles a complete lease view from the store. Leases that do not
// belong to the network in force (or whose record is malformed) move to
// v.Rejected: they are never peers, and /status shows why.
func (d *daemon) onView(v subnet.View) {
	if nc := d.netConfig(); nc != nil {
		v = d.lease.checker.Check(v, nc)
	}
	d.logRejected(v.Rejected)
	d.setReachable(true)
	d.lease.mu.Lock()
	d.lease.view = v
	d.lease.haveView = d.lease.haveView || v.Complete
	lease, leaseOK, data := d.lease.cur, d.lease.ok, d.lease.data
	d.lease.mu.Unlock()
	if lease != nil && !leaseOK {
		// Started from the saved lease, or re-claiming: the store answers
		// again, so the lease loop should retry now.
		poke(d.lostc)
	}
	if lease != nil && leaseOK && v.Revision >= lease.ModRevision {
		own, other := findOwn(v, lease.Primary(), d.nodeID)
		switch {
		case own == nil && other != nil:
			d.log.WithFields(logrus.Fields{"subnet": lease.Primary(), "holder": other.NodeName}).Error("our subnet is held by another node in the store")
			poke(d.lostc)
		case own == nil:
			d.log.WithField("subnet", lease.Primary()).Warn("our lease record is gone from the store; re-claiming the same subnet")
			poke(d.lostc)
		case !recordMatches(own.Record, d.record(data)):
			poke(d.updatec)
		}
	}
	// The reconcile first: telling gossip of the view's nodes reads every
	// lease, and can run beside it.
	d.trigger()
	d.joinFrom(v)
	d.pruneGossip(v)
}

// pruneGossip tells gossip which names the store's view holds: those are
// always admitted to the member table, the others count against its cap
// and are forgotten a while after they died or left.
func (d *daemon) pruneGossip(v subnet.View) {
	if d.gossip == nil || !v.Complete {
		return
	}
	keep := make([]string, 0, len(v.Leases))
	for _, l := range v.Leases {
		if l.Record.NodeName != "" && l.Record.NodeName != d.nodeName {
			keep = append(keep, l.Record.NodeName)
		}
	}
	if n := d.gossip.Prune(keep); n > 0 {
		d.log.WithField("forgot", n).Debug("gossip: forgot members the store does not name")
	}
}

// joinFrom hands the gossip addresses of v's records to gossip (each
// address once).
func (d *daemon) joinFrom(v subnet.View) {
	if d.gossip == nil {
		return
	}
	d.lease.mu.Lock()
	if d.lease.joined == nil {
		d.lease.joined = map[string]bool{}
	}
	fresh := gossipAddrs(v, d.nodeID, d.lease.joined)
	d.lease.mu.Unlock()
	if len(fresh) > 0 {
		d.gossip.Join(fresh)
	}
}

// record returns this node's lease record for data.
func (d *daemon) record(data ownData) subnet.Record {
	return subnet.Record{
		NodeName:    d.nodeName,
		NodeID:      d.nodeID,
		PublicIP:    data.PublicIP,
		PublicIPv6:  data.PublicIPv6,
		GossipAddr:  data.GossipAddr,
		BackendType: data.BackendType,
		BackendData: data.BackendData,
		Version:     data.Version,
	}
}

func recordMatches(have, want subnet.Record) bool { return have == want }

// pushMeta publishes our metadata by gossip.
func (d *daemon) pushMeta() {
	if d.gossip == nil {
		return
	}
	d.lease.mu.Lock()
	l, data := d.lease.cur, d.lease.data
	d.lease.mu.Unlock()
	if l == nil {
		return
	}
	err := d.gossip.SetMeta(membership.Meta{
		NodeID: d.nodeID,
		Subnet: l.Subnet, IPv6Subnet: l.IPv6Subnet,
		PublicIP: data.PublicIP, PublicIPv6: data.PublicIPv6,
		Data: data.BackendData, Epoch: l.Epoch, Version: data.Version,
	})
	if err != nil {
		d.log.WithError(err).Error("publish gossip metadata")
	}
}

// logRejected logs each rejected lease record once per reason (a view
// comes with every change of any lease).
func (d *daemon) logRejected(rs []subnet.RejectedLease) {
	d.lease.mu.Lock()
	defer d.lease.mu.Unlock()
	seen := make(map[subnet.RejectedLease]bool, len(rs))
	for _, r := range rs {
		seen[r] = true
		if !d.lease.rejectedLogged[r] {
			d.log.WithFields(logrus.Fields{"key": r.Key, "reason": r.Reason}).Warn("lease record in the store rejected; it is not a peer")
		}
	}
	d.lease.rejectedLogged = seen
}
