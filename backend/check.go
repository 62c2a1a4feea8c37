// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package backend

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/weftnet/weft/subnet"
)

// CheckInput is what [CheckPeers] checks peer entries against: the
// network and this node.
type CheckInput struct {
	// Network is the network config in force. Without it every entry is
	// rejected: no subnet can be checked.
	Network *subnet.Config
	// Local is this node's subnets.
	Local Local
	// SelfIPs are this node's own addresses (its public IPs).
	SelfIPs []netip.Addr
	// SelfWireGuardKey is this node's WireGuard public key (base64), if
	// it has one.
	SelfWireGuardKey string
}

// Rejected is a peer entry [CheckPeers] refused, with why.
type Rejected struct {
	Peer Peer
	// Reason says why, in words fit for a log line and /status.
	Reason string
}

// CheckPeers checks every peer entry before a backend sees it, whatever
// its source (the store, gossip, a snapshot), and returns the entries it
// accepts (in their input order; when it accepts them all, that is peers
// itself, not a copy) and those it rejects, each with a reason.
// An entry is accepted when:
//
//   - it has a subnet; its IPv4 subnet is one of the network's subnets:
//     inside Network, of length SubnetLen, its own network address (not
//     bounded by SubnetMin/SubnetMax, which only limit new claims); its
//     IPv6 subnet likewise inside IPv6Network at IPv6SubnetLen;
//   - it has a public IP; each public IP (PublicIPv6 must be IPv6) is a
//     unicast address that is not unspecified, loopback, link-local,
//     multicast or broadcast, not one of this node's, and not inside the
//     pod networks;
//   - its VTEP MAC, when set, is a unicast, non-zero Ethernet address;
//   - its WireGuard key, when set, is 32 bytes of base64, not all zero
//     and not this node's key; its WireGuard port is 0 (the default) to
//     65535;
//   - none of its subnets overlaps this node's subnets or a subnet of an
//     entry accepted before it; its VTEP MAC is no accepted entry's; its
//     WireGuard key is no accepted entry's of another name (one node may
//     hold two leases for a while, with one key).
//
// Entries are taken oldest lease first (lower epoch), then by name, then
// by primary subnet, so that in a conflict the older lease wins, the same
// way on every node and in every backend. CheckPeers is pure.
func CheckPeers(in CheckInput, peers []Peer) (accepted []Peer, rejected []Rejected) {
	accepted, rejected, _ = checkAll(in, peers)
	return accepted, rejected
}

// checkAll is CheckPeers, and also returns the index of its outcome.
func checkAll(in CheckInput, peers []Peer) (accepted []Peer, rejected []Rejected, x *PeerIndex) {
	order := make([]int, len(peers))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(i, j int) int { return checkOrder(&peers[i], &peers[j]) })

	// Every accepted subnet has the configured length of its family
	// (checkSubnets), so two of them overlap only when they are equal: a
	// map finds a conflict at once, and the check stays linear in the
	// number of peers. This node's subnets may have another length (after
	// a forced SubnetLen change); the few of them are compared one by one.
	c := newChecker(in)
	x = newPeerIndex(c, len(peers))
	ok := make([]bool, len(peers))
	reasons := make([]string, len(peers))
	nok := 0
	for _, i := range order {
		e := c.alone(&peers[i])
		alone := len(e.why) == 0
		if alone {
			// Conflicts with older entries: only an entry that is
			// otherwise valid is weighed against the others.
			c.conflicts(&e, func(s netip.Prefix) string {
				j := c.owner[s]
				return fmt.Sprintf("subnet %s overlaps %s (peer %s, epoch %d)", s, s, peers[j].Name, peers[j].Epoch)
			})
		}
		if len(e.why) > 0 {
			reasons[i] = strings.Join(e.why, "; ")
			x.reject(e, reasons[i], alone)
			continue
		}
		ok[i] = true
		nok++
		c.take(&e, i)
		x.accept(e)
	}
	if nok == len(peers) {
		// The common case: nothing to leave out, and no copy of
		// thousands of entries.
		return peers, nil, x
	}
	if nok > 0 {
		accepted = make([]Peer, 0, nok)
	}
	for i, p := range peers {
		if ok[i] {
			accepted = append(accepted, p)
		} else {
			rejected = append(rejected, Rejected{Peer: p, Reason: reasons[i]})
		}
	}
	return accepted, rejected, x
}

// checkOrder is the order in which CheckPeers takes entries: older lease
// first (lower epoch), then by name, then by primary subnet.
func checkOrder(a, b *Peer) int {
	return cmp.Or(cmp.Compare(a.Epoch, b.Epoch), cmp.Compare(a.Name, b.Name),
		comparePrefix(primary(a), primary(b)), comparePrefix(a.IPv6Subnet, b.IPv6Subnet))
}

// checker holds what accepted entries hold (subnets, VTEP MACs, WireGuard
// keys), against which the next entry is checked.
type checker struct {
	in      CheckInput
	local   []netip.Prefix
	selfKey [32]byte
	// owner maps an accepted subnet to its holder's index (CheckPeers)
	// or primary subnet (PeerIndex, as an index into nothing: see there).
	owner    map[netip.Prefix]int
	macOwner map[string]string
	keyOwner map[[32]byte]string
}

func newChecker(in CheckInput) *checker {
	c := &checker{in: in, owner: map[netip.Prefix]int{}, macOwner: map[string]string{}, keyOwner: map[[32]byte]string{}}
	for _, s := range []netip.Prefix{in.Local.Subnet, in.Local.IPv6Subnet} {
		if s.IsValid() {
			c.local = append(c.local, s.Masked())
		}
	}
	c.selfKey, _ = decodeKey(in.SelfWireGuardKey)
	return c
}

// entry is one peer entry being checked: what it holds, and what is wrong
// with it.
type entry struct {
	p       *Peer
	subnets []netip.Prefix
	mac     string
	key     [32]byte
	hasKey  bool
	why     []string
}

func (e *entry) complain(format string, args ...any) {
	e.why = append(e.why, fmt.Sprintf(format, args...))
}

// alone checks what can be checked of p without the other entries.
func (c *checker) alone(p *Peer) entry {
	e := entry{p: p}
	e.subnets = checkSubnets(c.in.Network, p, e.complain)
	checkPublicIP(c.in, "public IP", p.PublicIP, false, e.complain)
	if p.PublicIPv6.IsValid() {
		checkPublicIP(c.in, "public IPv6", p.PublicIPv6, true, e.complain)
	}
	if p.Data.VTEPMAC != "" {
		var err error
		if e.mac, err = checkMAC(p.Data.VTEPMAC); err != nil {
			e.complain("%v", err)
		}
	}
	if p.Data.WireGuardKey != "" {
		k, err := decodeKey(p.Data.WireGuardKey)
		switch {
		case err != nil:
			e.complain("%v", err)
		case k == [32]byte{}:
			e.complain("WireGuard key is all zero")
		case k == c.selfKey:
			e.complain("WireGuard key is this node's")
		default:
			e.key, e.hasKey = k, true
		}
	}
	if port := p.Data.WireGuardPort; port < 0 || port > 65535 {
		e.complain("WireGuard port %d is out of range", port)
	}
	return e
}

// conflicts checks e against this node and the accepted entries; taken
// describes the conflict with the holder of an accepted subnet.
func (c *checker) conflicts(e *entry, taken func(netip.Prefix) string) {
	for _, s := range e.subnets {
		if o := overlapping(c.local, s); o.IsValid() {
			e.complain("subnet %s overlaps %s (this node's subnet)", s, o)
		} else if _, dup := c.owner[s]; dup {
			e.complain("%s", taken(s))
		}
	}
	if o, dup := c.macOwner[e.mac]; e.mac != "" && dup {
		e.complain("VTEP MAC %s is also peer %s's", e.mac, o)
	}
	if o, dup := c.keyOwner[e.key]; e.hasKey && dup && o != e.p.Name {
		e.complain("WireGuard key is also peer %s's", o)
	}
}

// take records what accepted entry e holds; i identifies it in owner.
func (c *checker) take(e *entry, i int) {
	for _, s := range e.subnets {
		c.owner[s] = i
	}
	if e.mac != "" {
		c.macOwner[e.mac] = e.p.Name
	}
	if e.hasKey {
		c.keyOwner[e.key] = e.p.Name
	}
}

// PeerIndex is the outcome of [CheckPeers] over a set of entries, kept so
// that a change of a few of them is decided without checking every entry
// again (weftd's path between resyncs). What [PeerIndex.Apply] decides is
// exactly what CheckPeers would decide over the changed set. When a change
// could make CheckPeers decide differently about an entry the change does
// not touch, Apply declines and the caller checks the whole set again:
// that is when a changed entry conflicts with an accepted one (the older
// lease wins, which may be the one already accepted or not), names a
// subnet, VTEP MAC or WireGuard key that an entry rejected for a conflict
// names too, or frees one that such an entry names. Entries are matched
// by primary subnet; a set holding two entries with one primary subnet
// gets no index.
type PeerIndex struct {
	c        *checker
	accepted map[netip.Prefix]indexed
	rejected map[netip.Prefix]indexed
	// conflicted counts the subnets, MACs and keys held by entries
	// rejected for a conflict (they were valid alone); keys counts the
	// accepted entries holding each WireGuard key (one node's two leases
	// may share one).
	conflicted holdings
	keys       map[[32]byte]int
	broken     bool // two entries with one primary subnet
}

// indexed is an entry as the index holds it.
type indexed struct {
	peer     Peer
	e        entry
	conflict bool // rejected for a conflict, not for what it is alone
}

// holdings counts subnets, MACs and keys.
type holdings struct {
	subnets map[netip.Prefix]int
	macs    map[string]int
	keys    map[[32]byte]int
}

func (h *holdings) add(e *entry, n int) {
	for _, s := range e.subnets {
		h.subnets[s] += n
	}
	if e.mac != "" {
		h.macs[e.mac] += n
	}
	if e.hasKey {
		h.keys[e.key] += n
	}
}

func (h *holdings) names(e *entry) bool {
	if slices.ContainsFunc(e.subnets, func(s netip.Prefix) bool { return h.subnets[s] > 0 }) {
		return true
	}
	return (e.mac != "" && h.macs[e.mac] > 0) || (e.hasKey && h.keys[e.key] > 0)
}

// NewPeerIndex checks peers as [CheckPeers] does and returns the index of
// the outcome with it.
func NewPeerIndex(in CheckInput, peers []Peer) (*PeerIndex, []Peer, []Rejected) {
	a, r, x := checkAll(in, peers)
	return x, a, r
}

func newPeerIndex(c *checker, n int) *PeerIndex {
	return &PeerIndex{
		c: c, accepted: make(map[netip.Prefix]indexed, n), rejected: map[netip.Prefix]indexed{},
		conflicted: holdings{subnets: map[netip.Prefix]int{}, macs: map[string]int{}, keys: map[[32]byte]int{}},
		keys:       map[[32]byte]int{},
	}
}

func (x *PeerIndex) has(k netip.Prefix) bool {
	_, a := x.accepted[k]
	_, r := x.rejected[k]
	return a || r
}

func (x *PeerIndex) accept(e entry) {
	k := primary(e.p)
	x.broken = x.broken || x.has(k)
	// The index keeps one copy of the entry (peer); its entry needs no
	// pointer to it (remove reads subnets, MAC and key), and one to the
	// caller's slice would keep that slice alive.
	x.accepted[k] = indexed{peer: *e.p, e: entry{subnets: e.subnets, mac: e.mac, key: e.key, hasKey: e.hasKey}}
	if e.hasKey {
		x.keys[e.key]++
	}
}

func (x *PeerIndex) reject(e entry, reason string, conflict bool) {
	k := primary(e.p)
	x.broken = x.broken || x.has(k)
	x.rejected[k] = indexed{peer: *e.p, e: entry{subnets: e.subnets, mac: e.mac, key: e.key, hasKey: e.hasKey, why: []string{reason}}, conflict: conflict}
	if conflict {
		x.conflicted.add(&e, 1)
	}
}

// Apply applies changes to the indexed set (each Old must be an entry of
// the set as it is, each New an entry to add, replacing its Old) and
// returns what CheckPeers decides about the New entries. ok is false when
// only a check of the whole set can decide (see [PeerIndex]); the index
// is then spent, and the caller builds a new one with NewPeerIndex.
func (x *PeerIndex) Apply(changes []Change) (accepted []Peer, rejected []Rejected, ok bool) {
	if x == nil || x.broken {
		return nil, nil, false
	}
	x.broken = true // until Apply has finished
	for _, ch := range changes {
		if ch.Old != nil && !x.remove(ch.Old) {
			return nil, nil, false
		}
	}
	for _, ch := range changes {
		if ch.New == nil {
			continue
		}
		p := *ch.New
		if x.has(primary(&p)) {
			return nil, nil, false
		}
		e := x.c.alone(&p)
		if len(e.why) > 0 {
			r := Rejected{Peer: p, Reason: strings.Join(e.why, "; ")}
			x.rejected[primary(&p)] = indexed{peer: p, e: entry{why: []string{r.Reason}}}
			rejected = append(rejected, r)
			continue
		}
		// Anything held by an accepted entry or named by one rejected
		// for a conflict: the order of leases decides, over the whole set.
		if x.conflicted.names(&e) || slices.ContainsFunc(e.subnets, func(s netip.Prefix) bool { _, t := x.c.owner[s]; return t }) {
			return nil, nil, false
		}
		if _, t := x.c.macOwner[e.mac]; e.mac != "" && t {
			return nil, nil, false
		}
		if o, t := x.c.keyOwner[e.key]; e.hasKey && t && o != p.Name {
			return nil, nil, false
		}
		x.c.conflicts(&e, nil) // only this node's subnets are left to overlap
		if len(e.why) > 0 {
			// Decided by this node's subnets alone, as CheckPeers does,
			// but named by the entry now: later changes weigh it.
			r := Rejected{Peer: p, Reason: strings.Join(e.why, "; ")}
			x.reject(e, r.Reason, true)
			rejected = append(rejected, r)
			continue
		}
		x.c.take(&e, 0)
		x.accept(e)
		accepted = append(accepted, p)
	}
	x.broken = false
	return accepted, rejected, true
}

// remove takes old out of the index. It fails when old is not an entry of
// it, or when it was accepted and frees something an entry rejected for a
// conflict names.
func (x *PeerIndex) remove(old *Peer) bool {
	k := primary(old)
	if r, ok := x.rejected[k]; ok && r.peer == *old {
		delete(x.rejected, k)
		if r.conflict {
			x.conflicted.add(&r.e, -1)
		}
		return true
	}
	a, ok := x.accepted[k]
	if !ok || a.peer != *old {
		return false
	}
	delete(x.accepted, k)
	e := &a.e
	for _, s := range e.subnets {
		delete(x.c.owner, s)
	}
	if e.mac != "" {
		delete(x.c.macOwner, e.mac)
	}
	if e.hasKey {
		if x.keys[e.key]--; x.keys[e.key] == 0 {
			delete(x.keys, e.key)
			delete(x.c.keyOwner, e.key)
		}
	}
	return !x.conflicted.names(e)
}

// checkSubnets checks p's subnets against the network and returns them.
func checkSubnets(nc *subnet.Config, p *Peer, complain func(string, ...any)) []netip.Prefix {
	if nc == nil {
		complain("no network config to check the entry against")
		return nil
	}
	if !p.Subnet.IsValid() && !p.IPv6Subnet.IsValid() {
		complain("no subnet")
		return nil
	}
	var out []netip.Prefix
	for _, f := range []struct {
		s       netip.Prefix
		v6      bool
		network netip.Prefix
		bits    int
	}{
		{p.Subnet, false, nc.Network, nc.SubnetLen},
		{p.IPv6Subnet, true, nc.IPv6Network, nc.IPv6SubnetLen},
	} {
		s := f.s
		switch {
		case !s.IsValid():
			continue
		case s.Addr().Is6() != f.v6:
			complain("subnet %s is not %s", s, family(f.v6))
		case !f.network.IsValid():
			complain("subnet %s: the network has no %s part", s, family(f.v6))
		case s.Masked() != s:
			complain("subnet %s is not a network address (%s)", s, s.Masked())
		case s.Bits() != f.bits || !f.network.Contains(s.Addr()) || f.bits < f.network.Bits():
			complain("subnet %s is not a /%d of the network %s", s, f.bits, f.network)
		default:
			out = append(out, s)
		}
	}
	return out
}

// checkPublicIP checks one of a peer's public addresses.
func checkPublicIP(in CheckInput, what string, a netip.Addr, v6 bool, complain func(string, ...any)) {
	if !a.IsValid() {
		complain("no %s", what)
		return
	}
	a = a.Unmap()
	switch {
	case v6 && !a.Is6():
		complain("%s %s is not IPv6", what, a)
	case a.IsUnspecified():
		complain("%s %s is unspecified", what, a)
	case a.IsLoopback():
		complain("%s %s is a loopback address", what, a)
	case a.IsMulticast():
		complain("%s %s is a multicast address", what, a)
	case a.IsLinkLocalUnicast():
		complain("%s %s is a link-local address", what, a)
	case !a.IsGlobalUnicast():
		complain("%s %s is not a unicast address", what, a)
	case slices.ContainsFunc(in.SelfIPs, func(s netip.Addr) bool { return s.Unmap() == a }):
		complain("%s %s is this node's own address", what, a)
	case in.Network != nil && (in.Network.Network.Contains(a) || in.Network.IPv6Network.Contains(a)):
		complain("%s %s is inside the pod network", what, a)
	}
}

// checkMAC returns s in canonical form if it is a unicast, non-zero
// Ethernet address.
func checkMAC(s string) (string, error) {
	mac, err := net.ParseMAC(s)
	switch {
	case err != nil || len(mac) != 6:
		return "", fmt.Errorf("VTEP MAC %q is not an Ethernet address", s)
	case mac[0]&1 != 0:
		return "", fmt.Errorf("VTEP MAC %s is not unicast", mac)
	case bytes.Equal(mac, make(net.HardwareAddr, 6)):
		return "", fmt.Errorf("VTEP MAC %s is zero", mac)
	}
	return mac.String(), nil
}

// decodeKey decodes a base64 WireGuard key. Errors never quote the input.
func decodeKey(s string) ([32]byte, error) {
	var k [32]byte
	if s == "" {
		return k, fmt.Errorf("no WireGuard key")
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != 32 {
		return k, fmt.Errorf("WireGuard key is not 32 bytes of base64")
	}
	copy(k[:], b)
	return k, nil
}

func primary(p *Peer) netip.Prefix {
	if p.Subnet.IsValid() {
		return p.Subnet
	}
	return p.IPv6Subnet
}

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

func overlapping(taken []netip.Prefix, p netip.Prefix) netip.Prefix {
	for _, t := range taken {
		if t.Overlaps(p) {
			return t
		}
	}
	return netip.Prefix{}
}

func family(v6 bool) string {
	if v6 {
		return "IPv6"
	}
	return "IPv4"
}
