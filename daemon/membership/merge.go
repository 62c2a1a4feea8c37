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

// MergeInput is what [Merge] combines.
type MergeInput struct {
	// Self is this node's name. Members named Self are ignored, and the
	// view's leases held under Self are this node's, not peers.
	Self string
	// View is the authority's lease view (etcd's listing, kept current by
	// its watch, or the persisted snapshot before the first listing).
	View subnet.View
	// Members is what gossip reports ([Membership.Members]).
	Members []Member
	// Network is the network config in force. Without it (nil) no gossip
	// claim is used provisionally: none could be checked against the
	// network's spaces.
	Network *subnet.Config
	// Authoritative is true when View is a listing the authority gave and
	// the authority answers now. Gossip claims the view does not confirm
	// are then not used: they lapse on the first successful listing after
	// an outage. False while the authority is unreachable, or before its
	// first listing (View is then the snapshot, or empty).
	Authoritative bool
}

// Merge builds the desired peer set from the authority's lease view and
// the gossip members. The authority (the store) is the only one who says
// which node holds which subnet; gossip carries liveness and newer copies
// of data the authority already attributes to the same node. The rules:
//
//   - Every lease in the view except self's is a peer, whatever its
//     member's state: a dead or left member keeps its routes. Only the
//     lease's disappearance from the view (or its replacement by a
//     provisional claim of the same node, below) removes a peer.
//   - Same node: a member is the same node as a lease's holder only when
//     its name equals the record's node name and its node ID equals the
//     record's node ID, and neither ID is empty. A claim without a node
//     ID is never the same node as anything.
//   - Update: a member that is the same node as a lease's holder, whose
//     Meta names the lease's primary subnet with the lease's epoch and a
//     higher Version than the record, supplies the peer's public
//     addresses and backend data (Source "gossip"). The subnets and the
//     epoch always stay the lease's. This holds whether or not the
//     authority answers: it is how a node restarted on a new address
//     while etcd is down is followed.
//   - Provisional claim: any other claim (a member's Meta with a subnet
//     and an epoch) is used only when all of these hold: in.Authoritative
//     is false; in.Network is set; the member is alive or suspect (a dead
//     or left member's claims lapse); each of its subnets is one of the
//     network's subnets at the configured length (IPv4 in Network at
//     SubnetLen, IPv6 in IPv6Network at IPv6SubnetLen; SubnetMin and
//     SubnetMax are not applied, they bound only new claims); no subnet
//     overlaps one of self's leases, or a lease the view attributes to
//     another node (a subnet held by the same node at an older epoch may
//     be re-claimed); a subnet the view does not hold is claimed at an
//     epoch newer than the view's revision (an older one was a lease
//     deleted since, which gossip must not bring back); and, for a
//     subnet the view holds, the claim's epoch is newer than the
//     lease's. Such a peer has Provisional set. Its newer epoch ends the
//     same node's leases of older epochs (a node holds one lease at a
//     time).
//   - When several provisional claims name one primary subnet, the
//     higher epoch wins, then the higher version, then the livelier
//     state, then the smaller name; a claim whose IPv6 subnet overlaps a
//     claim already taken loses.
//
// A peer's State is that of the member named after it (StateUnknown if
// there is none). The result is sorted by name, then subnet. Merge is
// pure: it keeps no state between calls and does not modify its input.
// It does not check peer entries beyond the above (addresses, MACs,
// keys): [backend.CheckPeers] does that, for every source alike.
func Merge(in MergeInput) []PeerView {
	self := in.Self
	view := in.View
	byName := make(map[string]*Member, len(in.Members))
	claims := make(map[netip.Prefix][]*Member)
	for i := range in.Members {
		m := &in.Members[i]
		if m.Name == self || m.Name == "" {
			continue
		}
		byName[m.Name] = m
		if p := m.Meta.Primary(); p.IsValid() && m.Meta.Epoch > 0 {
			claims[p.Masked()] = append(claims[p.Masked()], m)
		}
	}

	// The view's leases other than self's, one per primary subnet: where
	// two name one, the newer epoch. A store's view holds one each, sorted
	// by it; the map is made only for a view that is not so, or for the
	// provisional claims.
	ls := make([]*subnet.Lease, 0, len(view.Leases))
	var selfSubnets []netip.Prefix
	var prev netip.Prefix
	unique := true
	for i := range view.Leases {
		l := &view.Leases[i]
		p := l.Primary().Masked()
		if !p.IsValid() {
			continue
		}
		if prev.IsValid() && comparePrefix(prev, p) >= 0 {
			unique = false
		}
		prev = p
		if l.Record.NodeName == self {
			selfSubnets = appendValid(selfSubnets, l.Subnet, l.IPv6Subnet)
			continue
		}
		ls = append(ls, l)
	}
	var leases map[netip.Prefix]*subnet.Lease
	if !unique || (!in.Authoritative && in.Network != nil) {
		leases = make(map[netip.Prefix]*subnet.Lease, len(ls))
		for _, l := range ls {
			// Two leases with one primary subnet cannot come from one
			// etcd revision; if a view holds them anyway, the newer epoch
			// wins.
			p := l.Primary().Masked()
			if old, ok := leases[p]; !ok || l.Epoch > old.Epoch {
				leases[p] = l
			}
		}
		if !unique {
			ls = ls[:0]
			for _, l := range leases {
				ls = append(ls, l)
			}
		}
	}

	var provisionals map[netip.Prefix]*Member
	if !in.Authoritative && in.Network != nil {
		provisionals = provisionalClaims(in.Network, view, leases, selfSubnets, claims)
	}
	// superseded[name] is the newest provisional claim by member name; it
	// ends that node's leases of older epochs.
	superseded := make(map[string]*Member)
	// The peers are sorted by reference (name and subnets, and where the
	// entry comes from), then made once each in their place: a PeerView
	// is large to move.
	type ref struct {
		name string
		l    *subnet.Lease // nil: a provisional claim, m
		m    *Member
	}
	subnets := func(r *ref) (netip.Prefix, netip.Prefix) {
		if r.l != nil {
			return r.l.Subnet, r.l.IPv6Subnet
		}
		return r.m.Meta.Subnet, r.m.Meta.IPv6Subnet
	}
	refs := make([]ref, 0, len(ls)+len(provisionals))
	for _, m := range provisionals {
		refs = append(refs, ref{name: m.Name, m: m})
		if prev, ok := superseded[m.Name]; !ok || m.Meta.Epoch > prev.Meta.Epoch {
			superseded[m.Name] = m
		}
	}
	for _, l := range ls {
		rec := &l.Record
		if by, ok := superseded[rec.NodeName]; ok && by.Meta.Epoch > l.Epoch && sameNode(by, rec) {
			continue
		}
		if _, ok := provisionals[l.Primary().Masked()]; ok {
			continue
		}
		refs = append(refs, ref{name: rec.NodeName, l: l})
	}
	if len(refs) == 0 {
		return nil
	}
	slices.SortFunc(refs, func(a, b ref) int {
		if c := cmp.Compare(a.name, b.name); c != 0 {
			return c
		}
		a4, a6 := subnets(&a)
		b4, b6 := subnets(&b)
		return cmp.Or(a4.Addr().Compare(b4.Addr()), a6.Addr().Compare(b6.Addr()))
	})
	out := make([]PeerView, len(refs))
	for i, r := range refs {
		if r.l == nil {
			out[i] = provisional(r.m)
			continue
		}
		out[i] = fromLease(r.l, claims[r.l.Primary().Masked()], byName)
	}
	return out
}

// fromLease makes the peer of lease l, with the data of the newest of
// claims that updates it (see Merge) and the state of the member named
// after its node.
func fromLease(l *subnet.Lease, claims []*Member, byName map[string]*Member) PeerView {
	rec := &l.Record
	var update []*Member
	for _, m := range claims {
		if m.Meta.Epoch == l.Epoch && m.Meta.Version > rec.Version && sameNode(m, rec) {
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
	return pv
}

// provisionalClaims decides which claims the view does not confirm are
// used while the authority is unreachable, by Merge's rules, keyed by
// primary subnet.
func provisionalClaims(nc *subnet.Config, view subnet.View, leases map[netip.Prefix]*subnet.Lease,
	selfSubnets []netip.Prefix, claims map[netip.Prefix][]*Member,
) map[netip.Prefix]*Member {
	type cand struct {
		p  netip.Prefix
		ms []*Member
	}
	var cands []cand
	for p, ms := range claims {
		ms = slices.DeleteFunc(slices.Clone(ms), func(m *Member) bool {
			if m.State != StateAlive && m.State != StateSuspect {
				return true
			}
			if !claimInNetwork(nc, &m.Meta) {
				return true
			}
			if l, ok := leases[p]; ok {
				return m.Meta.Epoch <= l.Epoch
			}
			// etcd issued epochs up to the view's revision; the view no
			// longer holds the subnet, so such a lease was deleted.
			return view.Revision > 0 && m.Meta.Epoch <= view.Revision
		})
		ms = slices.DeleteFunc(ms, func(m *Member) bool {
			for _, s := range claimSubnets(&m.Meta) {
				if overlapsAny(selfSubnets, s) || overlapsOtherNode(view.Leases, m, s) {
					return true
				}
			}
			return false
		})
		if len(ms) > 0 {
			cands = append(cands, cand{p, ms})
		}
	}
	// Decide in a fixed order, so that IPv6 overlaps between claims of
	// different primary subnets go the same way on every call.
	slices.SortFunc(cands, func(a, b cand) int { return comparePrefix(a.p, b.p) })
	out := make(map[netip.Prefix]*Member, len(cands))
	var taken []netip.Prefix
	for _, c := range cands {
		for len(c.ms) > 0 {
			m := bestClaim(c.ms)
			v6 := m.Meta.IPv6Subnet
			if m.Meta.Subnet.IsValid() && v6.IsValid() && overlapsAny(taken, v6.Masked()) {
				c.ms = slices.DeleteFunc(c.ms, func(o *Member) bool { return o == m })
				continue
			}
			out[c.p] = m
			taken = append(taken, claimSubnets(&m.Meta)...)
			break
		}
	}
	return out
}

// claimInNetwork reports whether every subnet of meta is one of nc's
// subnets at the configured length, and meta has a primary subnet.
func claimInNetwork(nc *subnet.Config, meta *Meta) bool {
	if meta.Subnet.IsValid() && !inSpace(meta.Subnet, nc.Network, nc.SubnetLen) {
		return false
	}
	if meta.IPv6Subnet.IsValid() && !inSpace(meta.IPv6Subnet, nc.IPv6Network, nc.IPv6SubnetLen) {
		return false
	}
	return meta.Primary().IsValid()
}

// inSpace reports whether p is a subnet of network of length bits: same
// family, that length, its own network address, inside network.
func inSpace(p, network netip.Prefix, bits int) bool {
	return p.IsValid() && network.IsValid() && p.Bits() == bits && bits >= network.Bits() &&
		p.Addr().Is4() == network.Addr().Is4() && p.Masked() == p && network.Contains(p.Addr())
}

// claimSubnets returns meta's valid subnets, masked.
func claimSubnets(meta *Meta) []netip.Prefix {
	return appendValid(nil, meta.Subnet, meta.IPv6Subnet)
}

func appendValid(dst []netip.Prefix, ps ...netip.Prefix) []netip.Prefix {
	for _, p := range ps {
		if p.IsValid() {
			dst = append(dst, p.Masked())
		}
	}
	return dst
}

func overlapsAny(ps []netip.Prefix, s netip.Prefix) bool {
	return slices.ContainsFunc(ps, s.Overlaps)
}

// overlapsOtherNode reports whether s overlaps a subnet of a lease in
// leases that is not m's own node's.
func overlapsOtherNode(leases []subnet.Lease, m *Member, s netip.Prefix) bool {
	for i := range leases {
		l := &leases[i]
		if sameNode(m, &l.Record) {
			continue
		}
		if (l.Subnet.IsValid() && l.Subnet.Masked().Overlaps(s)) || (l.IPv6Subnet.IsValid() && l.IPv6Subnet.Masked().Overlaps(s)) {
			return true
		}
	}
	return false
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

// sameNode reports whether member m is the node that holds rec: the same
// name and the same node ID, which must not be empty.
func sameNode(m *Member, rec *subnet.Record) bool {
	return m.Name == rec.NodeName && m.Meta.NodeID != "" && m.Meta.NodeID == rec.NodeID
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}
