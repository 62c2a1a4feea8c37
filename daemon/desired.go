// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/daemon/membership"
	"github.com/weftnet/weft/subnet"
)

// buildDesired turns the merged peer view into the backend's desired
// state. It leaves out this node (by name, or by a subnet that is ours: a
// stale record of ours), and peers without a subnet or a public IP, which
// cannot be served. Peers are sorted by name, then subnets, so that two
// desired states built from the same input compare equal.
func buildDesired(self *subnet.Lease, nodeName string, peers []membership.PeerView, complete bool) backend.Desired {
	d := backend.Desired{Complete: complete}
	if len(peers) > 0 {
		d.Peers = make([]backend.Peer, 0, len(peers))
	}
	if self != nil {
		d.Local = backend.Local{Subnet: self.Subnet, IPv6Subnet: self.IPv6Subnet}
	}
	for i := range peers {
		p := &peers[i]
		if p.Name == nodeName || !p.PublicIP.IsValid() {
			continue
		}
		if !p.Subnet.IsValid() && !p.IPv6Subnet.IsValid() {
			continue
		}
		if overlaps(p.Subnet, d.Local.Subnet) || overlaps(p.IPv6Subnet, d.Local.IPv6Subnet) {
			continue
		}
		d.Peers = append(d.Peers, p.Peer)
	}
	sortPeers(d.Peers)
	return d
}

func overlaps(a, b netip.Prefix) bool { return a.IsValid() && b.IsValid() && a.Overlaps(b) }

func sortPeers(ps []backend.Peer) { slices.SortFunc(ps, comparePeers) }

func primaryOf(p backend.Peer) netip.Prefix {
	if p.Subnet.IsValid() {
		return p.Subnet
	}
	return p.IPv6Subnet
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// desiredEqual reports whether two desired states are the same input to a
// backend.
func desiredEqual(a, b backend.Desired) bool {
	return a.Local == b.Local && a.Complete == b.Complete && slices.Equal(a.Peers, b.Peers)
}

// peerDiff names the peers (by primary subnet) added, removed and changed
// between two desired peer sets, for logging.
type peerDiff struct {
	Added, Removed, Updated []backend.Peer
}

func diffPeers(old, cur []backend.Peer) peerDiff {
	byKey := func(ps []backend.Peer) map[netip.Prefix]int {
		m := make(map[netip.Prefix]int, len(ps))
		for i, p := range ps {
			m[primaryOf(p)] = i
		}
		return m
	}
	o, c := byKey(old), byKey(cur)
	var d peerDiff
	for _, p := range cur {
		i, ok := o[primaryOf(p)]
		switch {
		case !ok:
			d.Added = append(d.Added, p)
		case old[i] != p:
			d.Updated = append(d.Updated, p)
		}
	}
	for _, p := range old {
		if _, ok := c[primaryOf(p)]; !ok {
			d.Removed = append(d.Removed, p)
		}
	}
	return d
}

// restartChanges lists the differences between the config in force and a
// new one that weftd cannot apply while running (they change the address
// plan or the data plane's device), as "what: old → new". Differences
// that apply live (SubnetMin, SubnetMax: only future claims use them) are
// not listed.
func restartChanges(old, cur *subnet.Config) []string {
	var out []string
	add := func(what string, a, b any) {
		if a != b {
			out = append(out, fmt.Sprintf("%s: %v → %v", what, show(a), show(b)))
		}
	}
	add("Network", old.Network, cur.Network)
	add("IPv6Network", old.IPv6Network, cur.IPv6Network)
	add("SubnetLen", old.SubnetLen, cur.SubnetLen)
	add("IPv6SubnetLen", old.IPv6SubnetLen, cur.IPv6SubnetLen)
	ob, nb := old.Backend, cur.Backend
	add("Backend.Type", ob.Type, nb.Type)
	add("Backend.VNI", ob.VNI, nb.VNI)
	add("Backend.Port", ob.Port, nb.Port)
	add("Backend.MTU", ob.MTU, nb.MTU)
	add("Backend.DirectRouting", ob.DirectRouting, nb.DirectRouting)
	add("Backend.ListenPort", ob.ListenPort, nb.ListenPort)
	add("Backend.PersistentKeepalive", ob.PersistentKeepalive, nb.PersistentKeepalive)
	return out
}

func show(v any) any {
	if p, ok := v.(netip.Prefix); ok && !p.IsValid() {
		return "none"
	}
	return v
}

// foldGossip returns base with the newer data gossip brought for leases
// etcd confirmed (same subnet and epoch, higher version), so that the
// persisted snapshot carries what the node last knew. Provisional peers
// (an epoch etcd has not confirmed) are left out.
func foldGossip(base subnet.View, peers []membership.PeerView) subnet.View {
	out := subnet.View{Complete: base.Complete, Revision: base.Revision, Leases: slices.Clone(base.Leases)}
	idx := make(map[netip.Prefix]int, len(out.Leases))
	for i := range out.Leases {
		idx[out.Leases[i].Primary()] = i
	}
	for _, p := range peers {
		if p.Source != membership.SourceGossip || p.Provisional {
			continue
		}
		i, ok := idx[primaryOf(p.Peer)]
		if !ok {
			continue
		}
		l := &out.Leases[i]
		if l.Epoch != p.Epoch || p.Version <= l.Record.Version {
			continue
		}
		l.Record.PublicIP = p.PublicIP
		l.Record.PublicIPv6 = p.PublicIPv6
		l.Record.BackendData = p.Data
		l.Record.Version = p.Version
	}
	return out
}

// findOwn returns our lease in v (same primary subnet and node ID), or
// else the record of the node holding that subnet; both are nil when the
// subnet is absent.
func findOwn(v subnet.View, primary netip.Prefix, nodeID string) (own *subnet.Lease, other *subnet.Record) {
	for i := range v.Leases {
		l := &v.Leases[i]
		if l.Primary() != primary {
			continue
		}
		if l.Record.NodeID == nodeID {
			return l, nil
		}
		return nil, &l.Record
	}
	return nil, nil
}

// gossipAddrs returns the gossip addresses of v's records other than
// ours that joined does not hold yet, in the view's order, and adds them to
// joined: each address is handed to gossip once. (A set rather than a
// sorted list: this runs for every lease change, at thousands of leases.)
func gossipAddrs(v subnet.View, nodeID string, joined map[string]bool) []string {
	var out []string
	for i := range v.Leases {
		r := &v.Leases[i].Record
		if r.NodeID != nodeID && r.GossipAddr != "" && !joined[r.GossipAddr] {
			joined[r.GossipAddr] = true
			out = append(out, r.GossipAddr)
		}
	}
	return out
}
