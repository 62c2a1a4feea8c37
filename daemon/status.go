// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"fmt"
	"slices"
	"time"

	"github.com/weftnet/weft/daemon/status"
)

// status builds the /status document. It takes each group's lock in turn
// (never two at once), so the groups are each consistent in themselves.
func (d *daemon) status() status.Report {
	n := status.Node{
		Name:     d.nodeName,
		ID:       d.nodeID,
		Iface:    d.under.Iface,
		NotReady: d.notReady(),
		Store:    d.storeLabel(),
	}
	n.StoreReachable = d.reachable.Load()
	n.EtcdReachable = n.StoreReachable
	n.Ready = n.NotReady == ""

	d.netconf.mu.Lock()
	n.ConfigError = d.netconf.err
	n.PendingRestart = slices.Clone(d.netconf.pendingRestart)
	if c := d.netconf.inForce; c != nil {
		n.Network, n.IPv6Network = c.Network, c.IPv6Network
	}
	d.netconf.mu.Unlock()

	d.lease.mu.Lock()
	data := d.lease.data
	n.PublicIP, n.PublicIPv6, n.GossipAddr = data.PublicIP, data.PublicIPv6, data.GossipAddr
	n.BackendType, n.BackendData, n.Version = data.BackendType, data.BackendData, data.Version
	n.MTU = d.lease.attrs.MTU
	_, n.Complete = d.baseViewLocked()
	rejected := slices.Clone(d.lease.view.Rejected)
	if l := d.lease.cur; l != nil {
		n.Subnet, n.IPv6Subnet, n.Epoch, n.LeaseExpiry = l.Subnet, l.IPv6Subnet, l.Epoch, l.Expiry
	}
	d.lease.mu.Unlock()

	d.progress.mu.Lock()
	n.ForwardingProblem = d.progress.forwardingProblem
	n.GossipKeySource = d.progress.gossipKeySource
	d.progress.mu.Unlock()
	bn := d.bridgeNetfilter()
	n.BridgeNetfilter = &bn
	if d.cfg.GossipBind != "" {
		n.GossipEncryption, n.GossipWarning = d.cfg.GossipEncryption, d.gossipWarning()
		if fn := d.metrics.refused.Load(); fn != nil {
			n.GossipRefused = (*fn)()
		}
	}

	d.masq.mu.Lock()
	n.MasqueradeProblem, n.ForwardDropWarning = d.masq.problem, d.masq.forwardDropWarn
	d.masq.mu.Unlock()

	pol := d.policyStatus()

	d.recon.mu.Lock()
	defer d.recon.mu.Unlock()
	n.LastReconcile, n.ReconcileError = d.recon.last, d.recon.err
	st := status.Report{Node: n, Peers: []status.Peer{}, Members: []status.Member{}, RejectedLeases: rejected, Policy: pol}
	for _, p := range d.recon.peers { // Merge leaves this node out
		st.Peers = append(st.Peers, status.Peer{
			Name: p.Name, Subnet: p.Subnet, IPv6Subnet: p.IPv6Subnet,
			PublicIP: p.PublicIP, PublicIPv6: p.PublicIPv6, BackendData: p.Data,
			Epoch: p.Epoch, Version: p.Version,
			State: string(p.State), Since: p.Since, Source: p.Source, Provisional: p.Provisional,
			Problem: d.recon.problems[p.Name],
		})
	}
	st.Rejected = slices.Clone(d.recon.rejected)

	for _, m := range d.recon.members {
		st.Members = append(st.Members, status.Member{
			Name: m.Name, Addr: m.Addr, State: string(m.State), Since: m.Since,
			Subnet: m.Meta.Subnet, IPv6Subnet: m.Meta.IPv6Subnet, PublicIP: m.Meta.PublicIP,
		})
	}
	return st
}

// notReady returns why the node is not ready, or "".
func (d *daemon) notReady() string {
	d.progress.mu.Lock()
	phase, written := d.progress.phase, d.progress.subnetFileWritten
	d.progress.mu.Unlock()
	d.recon.mu.Lock()
	reconciled, rerr, ran := d.recon.reconciled, d.recon.err, !d.recon.last.IsZero()
	d.recon.mu.Unlock()
	if phase != "" {
		return phase
	}
	// Without br_netfilter kube-proxy's Services and network policy do not
	// work between pods of this node: not ready, naming the fix.
	if bn := d.bridgeNetfilter(); !bn.Loaded {
		return bn.Problem
	}
	switch {
	case !written:
		return "subnet file not written yet"
	case reconciled:
		return ""
	case rerr != "":
		return "first reconcile failed: " + rerr
	case ran:
		return "waiting for the first complete list of peers from the store"
	}
	return "first reconcile not done yet"
}

// health reports whether the daemon's loops are running: the reconcile
// loop turns at least once per resync interval.
func (d *daemon) health() error {
	if !d.started.Load() {
		return nil
	}
	last := time.Unix(0, d.heartbeat.Load())
	if limit := 3*d.cfg.ResyncInterval + 30*time.Second; time.Since(last) > limit {
		return fmt.Errorf("reconcile loop has not run for %s", time.Since(last).Round(time.Second))
	}
	return nil
}
