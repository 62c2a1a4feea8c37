// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package policy

import (
	"net/netip"
	"slices"
	"sync"
)

// Family is an address family: 4 or 6.
type Family uint8

// The address families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func familyOf(a netip.Addr) Family {
	if a.Is4() || a.Is4In6() {
		return IPv4
	}
	return IPv6
}

// Names of the sets holding this node's pods that some policy isolates;
// what no rule allows to or from them is dropped.
const (
	IngressIsolated4 = "ingress-isolated4"
	IngressIsolated6 = "ingress-isolated6"
	EgressIsolated4  = "egress-isolated4"
	EgressIsolated6  = "egress-isolated6"
)

// State is the desired packet-filter state of one node, the compiler's
// output. It is plain data: nft.Apply loads it into the kernel, and
// [State.Evaluate] decides a packet with the same rules in Go (for
// `weftctl policy explain` and for tests).
type State struct {
	// Sets are named address sets, each of one family; the four
	// isolation sets are always present.
	Sets []Set
	// Egress rules are tried in order for packets from this node's pods,
	// Ingress rules for packets to them. A packet matching a rule is
	// allowed in that direction; otherwise it is dropped if its pod is in
	// the direction's isolation set and allowed if not.
	Egress, Ingress []Rule
	// Problems are what the compiler could not enforce and skipped (so
	// that enforcement is never wider than the policies).
	Problems []Problem
	// DropLog, when its Group is set, has the dropped packets logged; the
	// compiler leaves it zero.
	DropLog DropLog

	indexOnce sync.Once
	index     map[string]map[netip.Addr]bool
}

// Set is a named set of addresses of one family.
type Set struct {
	Name    string
	Family  Family
	Comment string
	Addrs   []netip.Addr // sorted, unique
}

// Rule allows packets of one family that match every condition given.
type Rule struct {
	// ID names the policy rule, peer and port this rule comes from, for
	// counters and explanations: "ns/name ingress[0] from[1] ports[0] ipv4".
	ID     string
	Family Family
	// Local is the set the pod end must be in: the destination for
	// ingress, the source for egress.
	Local string
	// Peer, when set, is the set the other end must be in.
	Peer string
	// Block, when valid, is a prefix the other end must be in, outside
	// every prefix of Except.
	Block  netip.Prefix
	Except []netip.Prefix
	// Proto, when not 0, is the IP protocol; PortLo..PortHi, when PortLo
	// is not 0, the destination port range (TCP, UDP, SCTP).
	Proto          uint8
	PortLo, PortHi uint16
}

// Problem is a part of a policy the compiler could not enforce; it is
// left out, which only ever denies more.
type Problem struct {
	// Policy is "namespace/name".
	Policy string
	// Field is the path of the part in the object ("spec.ingress[0].ports[1]").
	Field  string
	Detail string
}

// Packet is the first packet of a connection, as the filter sees it.
type Packet struct {
	Src, Dst netip.Addr
	Proto    uint8
	DstPort  uint16
}

// Decision is what [State.Evaluate] found.
type Decision struct {
	Allowed bool
	// Egress and Ingress are the IDs of the rules that allowed the
	// packet in each direction; "" when the pod end is not isolated in
	// that direction (or the packet was dropped there).
	Egress, Ingress string
	// DroppedBy is "egress" or "ingress" when the packet was dropped.
	DroppedBy string
}

// Evaluate decides p as the kernel does with this state loaded (for the
// first packet of a connection; replies of allowed connections always
// pass).
func (s *State) Evaluate(p Packet) Decision {
	s.indexOnce.Do(s.buildIndex)
	var d Decision
	var ok bool
	if d.Egress, ok = s.pass(s.Egress, p, true); !ok {
		d.DroppedBy = "egress"
		return d
	}
	if d.Ingress, ok = s.pass(s.Ingress, p, false); !ok {
		d.DroppedBy = "ingress"
		return d
	}
	d.Allowed = true
	return d
}

func (s *State) buildIndex() {
	s.index = make(map[string]map[netip.Addr]bool, len(s.Sets))
	for _, set := range s.Sets {
		m := make(map[netip.Addr]bool, len(set.Addrs))
		for _, a := range set.Addrs {
			m[a] = true
		}
		s.index[set.Name] = m
	}
}

func (s *State) pass(rules []Rule, p Packet, egress bool) (string, bool) {
	local, peer := p.Dst, p.Src
	isolated := map[Family]string{IPv4: IngressIsolated4, IPv6: IngressIsolated6}
	if egress {
		local, peer = p.Src, p.Dst
		isolated = map[Family]string{IPv4: EgressIsolated4, IPv6: EgressIsolated6}
	}
	fam := familyOf(local)
	for _, r := range rules {
		if r.Family != fam || !s.index[r.Local][local] {
			continue
		}
		if r.Peer != "" && !s.index[r.Peer][peer] {
			continue
		}
		if r.Block.IsValid() && (!r.Block.Contains(peer) || slices.ContainsFunc(r.Except, func(e netip.Prefix) bool { return e.Contains(peer) })) {
			continue
		}
		if r.Proto != 0 && r.Proto != p.Proto {
			continue
		}
		if r.PortLo != 0 && (p.DstPort < r.PortLo || p.DstPort > r.PortHi) {
			continue
		}
		return r.ID, true
	}
	return "", !s.index[isolated[fam]][local]
}
