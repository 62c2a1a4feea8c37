// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package membership

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/subnet"
)

// Merge builds the desired peer set from etcd's lease view and the gossip
// members, by DESIGN.md's rules:
//
//   - Every lease in view except self's is a peer, whatever its member's
//     state: a dead or left member keeps its routes. Only a lease's
//     disappearance from view or a newer epoch removes a peer.
//   - A member whose Meta names the lease's subnet with the lease's epoch
//     (and, when both are set, the record's node ID) and a higher Version
//     than the record supplies the peer's public addresses and backend
//     data (Source "gossip"). Metadata of an older epoch is ignored.
//   - A member whose Meta names a subnet with a newer epoch than the
//     lease's, or a subnet the view does not hold with an epoch newer than
//     the view's revision (an older one was deleted from etcd since),
//     becomes the peer for that subnet provisionally. Its newer epoch also supersedes an older
//     lease held under the member's name (same node ID), since a node holds
//     one lease at a time. Subnets held by self's leases are never taken
//     from gossip.
//   - When several members claim one subnet, the higher epoch wins, then
//     the higher version, then the livelier state, then the smaller name.
//
// A peer's State is that of the member named after it (StateUnknown if
// there is none). Members named self are ignored. The result is sorted by
// name, then subnet. Merge is pure: it keeps no state between calls.
func Merge(self string, view subnet.View, members []Member) []PeerView {
	byName := make(map[string]*Member, len(members))
	claims := make(map[netip.Prefix][]*Member)
	for i := range members {
		m := &members[i]
		if m.Name == self || m.Name == "" {
			continue
		}
		byName[m.Name] = m
		if p := m.Meta.Primary(); p.IsValid() && m.Meta.Epoch > 0 {
			claims[p.Masked()] = append(claims[p.Masked()], m)
		}
	}

	leases := make(map[netip.Prefix]*subnet.Lease, len(view.Leases))
	selfSubnets := make(map[netip.Prefix]bool)
	for i := range view.Leases {
		l := &view.Leases[i]
		p := l.Primary().Masked()
		if !p.IsValid() {
			continue
		}
		if l.Record.NodeName == self {
			selfSubnets[p] = true
			if l.IPv6Subnet.IsValid() {
				selfSubnets[l.IPv6Subnet.Masked()] = true
			}
			continue
		}
		// Two leases with one primary subnet cannot come from one etcd
		// revision; if a view holds them anyway, the newer epoch wins.
		if old, ok := leases[p]; !ok || l.Epoch > old.Epoch {
			leases[p] = l
		}
	}

	// Decide every subnet gossip claims with a newer epoch than etcd's
	// view, or that the view does not hold.
	provisionals := make(map[netip.Prefix]*Member)
	for p, cands := range claims {
		if selfSubnets[p] {
			continue
		}
		if l, ok := leases[p]; ok {
			cands = slices.DeleteFunc(slices.Clone(cands), func(m *Member) bool { return m.Meta.Epoch <= l.Epoch })
		} else if view.Revision > 0 {
			// etcd issued these epochs before the view's revision and
			// the view no longer holds the subnet: the lease was
			// deleted (evicted or expired), and gossip must not bring
			// it back.
			cands = slices.DeleteFunc(slices.Clone(cands), func(m *Member) bool { return m.Meta.Epoch <= view.Revision })
		}
		if len(cands) == 0 {
			continue
		}
		provisionals[p] = bestClaim(cands)
	}
	// superseded[name] is the newest provisional claim by member name; it
	// ends that node's leases of older epochs.
	superseded := make(map[string]*Member)
	var out []PeerView
	for _, m := range provisionals {
		out = append(out, provisional(m))
		if prev, ok := superseded[m.Name]; !ok || m.Meta.Epoch > prev.Meta.Epoch {
			superseded[m.Name] = m
		}
	}

	for p, l := range leases {
		rec := &l.Record
		if by, ok := superseded[rec.NodeName]; ok && by.Meta.Epoch > l.Epoch && sameNode(by.Meta.NodeID, rec.NodeID) {
			continue
		}
		if _, ok := provisionals[p]; ok {
			continue
		}
		var update []*Member
		for _, m := range claims[p] {
			if m.Meta.Epoch == l.Epoch && m.Meta.Version > rec.Version && sameNode(m.Meta.NodeID, rec.NodeID) {
				update = append(update, m)
			}
		}
		pv := PeerView{
			Peer: backend.Peer{
				Name:       rec.NodeName,
				Subnet:     l.Subnet,
				IPv6Subnet: l.IPv6Subnet,
				PublicIP:   rec.PublicIP,
				PublicIPv6: rec.PublicIPv6,
				Data:       rec.BackendData,
				Epoch:      l.Epoch,
				Version:    rec.Version,
			},
			State:  StateUnknown,
			Source: SourceEtcd,
		}
		if len(update) > 0 {
			m := bestClaim(update)
			pv.PublicIP = m.Meta.PublicIP
			pv.PublicIPv6 = m.Meta.PublicIPv6
			pv.Data = m.Meta.Data
			pv.Version = m.Meta.Version
			pv.Source = SourceGossip
		}
		if m, ok := byName[rec.NodeName]; ok {
			pv.State, pv.Since = m.State, m.Since
		}
		out = append(out, pv)
	}

	slices.SortFunc(out, func(a, b PeerView) int {
		if c := cmp.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		if c := a.Subnet.Addr().Compare(b.Subnet.Addr()); c != 0 {
			return c
		}
		return a.IPv6Subnet.Addr().Compare(b.IPv6Subnet.Addr())
	})
	return out
}

// provisional makes a peer from a member's metadata alone.
func provisional(m *Member) PeerView {
	return PeerView{
		Peer: backend.Peer{
			Name:       m.Name,
			Subnet:     m.Meta.Subnet,
			IPv6Subnet: m.Meta.IPv6Subnet,
			PublicIP:   m.Meta.PublicIP,
			PublicIPv6: m.Meta.PublicIPv6,
			Data:       m.Meta.Data,
			Epoch:      m.Meta.Epoch,
			Version:    m.Meta.Version,
		},
		State:       m.State,
		Since:       m.Since,
		Source:      SourceGossip,
		Provisional: true,
	}
}

// bestClaim picks among members claiming one subnet: higher epoch, then
// higher version, then livelier state, then smaller name. cands is not
// empty.
func bestClaim(cands []*Member) *Member {
	return slices.MinFunc(cands, func(a, b *Member) int {
		if c := cmp.Compare(b.Meta.Epoch, a.Meta.Epoch); c != 0 {
			return c
		}
		if c := cmp.Compare(b.Meta.Version, a.Meta.Version); c != 0 {
			return c
		}
		if c := cmp.Compare(stateRank(a.State), stateRank(b.State)); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
}

// stateRank orders states from liveliest (0) to least lively.
func stateRank(s State) int {
	switch s {
	case StateAlive:
		return 0
	case StateSuspect:
		return 1
	case StateLeft:
		return 2
	case StateDead:
		return 3
	}
	return 4
}

// sameNode reports whether two node IDs may be the same node: equal, or
// either unknown.
func sameNode(a, b string) bool {
	return a == "" || b == "" || a == b
}
