// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"fmt"
	"slices"
	"time"

	"github.com/weftnet/weft/daemon/status"
)

// status builds the /status document.
func (d *daemon) status() status.Report {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := status.Node{
		Name:               d.nodeName,
		ID:                 d.nodeID,
		Iface:              d.under.Iface,
		PublicIP:           d.data.PublicIP,
		PublicIPv6:         d.data.PublicIPv6,
		GossipAddr:         d.data.GossipAddr,
		BackendType:        d.data.BackendType,
		BackendData:        d.data.BackendData,
		MTU:                d.attrs.MTU,
		Version:            d.data.Version,
		NotReady:           d.notReadyLocked(),
		EtcdReachable:      d.etcdReachable,
		ConfigError:        d.cfgErr,
		PendingRestart:     slices.Clone(d.pendingRestart),
		ForwardingProblem:  d.forwardingProblem,
		MasqueradeProblem:  d.masqProblem,
		ForwardDropWarning: d.forwardDropWarn,
		LastReconcile:      d.lastReconcile,
		ReconcileError:     d.reconcileErr,
	}
	n.Ready = n.NotReady == ""
	_, n.Complete = d.baseViewLocked()
	if d.netCfg != nil {
		n.Network, n.IPv6Network = d.netCfg.Network, d.netCfg.IPv6Network
	}
	if l := d.lease; l != nil {
		n.Subnet, n.IPv6Subnet, n.Epoch, n.LeaseExpiry = l.Subnet, l.IPv6Subnet, l.Epoch, l.Expiry
	}
	st := status.Report{Node: n, Peers: []status.Peer{}, Members: []status.Member{}}
	for _, p := range d.peers { // Merge leaves this node out
		st.Peers = append(st.Peers, status.Peer{
			Name: p.Name, Subnet: p.Subnet, IPv6Subnet: p.IPv6Subnet,
			PublicIP: p.PublicIP, PublicIPv6: p.PublicIPv6, BackendData: p.Data,
			Epoch: p.Epoch, Version: p.Version,
			State: string(p.State), Since: p.Since, Source: p.Source, Provisional: p.Provisional,
			Problem: d.problems[p.Name],
		})
	}
	for _, m := range d.members {
		st.Members = append(st.Members, status.Member{
			Name: m.Name, Addr: m.Addr, State: string(m.State), Since: m.Since,
			Subnet: m.Meta.Subnet, IPv6Subnet: m.Meta.IPv6Subnet, PublicIP: m.Meta.PublicIP,
		})
	}
	return st
}

// notReady returns why the node is not ready, or "".
func (d *daemon) notReady() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.notReadyLocked()
}

func (d *daemon) notReadyLocked() string {
	switch {
	case d.phase != "":
		return d.phase
	case !d.subnetFileWritten:
		return "subnet file not written yet"
	case d.reconciled:
		return ""
	case d.reconcileErr != "":
		return "first reconcile failed: " + d.reconcileErr
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
