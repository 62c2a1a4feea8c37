// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package vxlan

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/backend"
)

// This file turns a desired peer set into the kernel state it needs, and
// compares that with what the kernel has. It is pure: no kernel calls, so
// the decisions are unit-tested without root.

const onlinkFlag = 0x4 // RTNH_F_ONLINK

// vtepAddr is the VTEP address of a node: the network address of its
// subnet.
func vtepAddr(p netip.Prefix) netip.Addr { return p.Masked().Addr() }

// plan is the kernel state a Desired maps to.
type plan struct {
	// addrs are the device's addresses (VTEP addresses as /32 and /128).
	addrs []netip.Prefix
	// neighs maps a peer's VTEP address to its VTEP MAC.
	neighs map[netip.Addr]string
	// fdb maps a peer's VTEP MAC to its underlay address.
	fdb map[string]netip.Addr
	// routes are the routes to install (Protocol set by SyncRoutes).
	routes []netlink.Route
	// problems maps a peer name to why it (or one of its subnets) is not
	// served.
	problems map[string]string
	// warnings are errors that did not stop the plan (a failed route
	// lookup for DirectRouting: the peer falls back to the tunnel).
	warnings []error
}

// planInput is what buildPlan needs besides the desired state.
type planInput struct {
	// publicIP is this node's tunnel address; its family is the tunnel's.
	publicIP netip.Addr
	// vxIndex is the VXLAN device's link index.
	vxIndex int
	// directRouting enables direct routes to same-segment peers.
	directRouting bool
	// direct returns the index of the link through which addr is
	// directly reachable, or 0. Only called when directRouting is set.
	direct func(addr netip.Addr) (int, error)
}

func ipOf(a netip.Addr) net.IP { return net.IP(a.AsSlice()) }

func ipNetOf(p netip.Prefix) *net.IPNet {
	p = p.Masked()
	return &net.IPNet{IP: ipOf(p.Addr()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// normMAC parses s as an Ethernet unicast MAC and returns its canonical
// form.
func normMAC(s string) (string, error) {
	if s == "" {
		return "", errors.New("no VTEP MAC")
	}
	if canonicalUnicastMAC(s) {
		return s, nil // as weftd publishes them: nothing to parse or copy
	}
	mac, err := net.ParseMAC(s)
	if err != nil || len(mac) != 6 || mac[0]&1 != 0 {
		return "", fmt.Errorf("VTEP MAC %q is not a unicast Ethernet address", s)
	}
	return mac.String(), nil
}

// canonicalUnicastMAC reports whether s is already an Ethernet unicast MAC
// in net.HardwareAddr's form (six lower-case hex pairs and colons).
func canonicalUnicastMAC(s string) bool {
	if len(s) != 17 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if i%3 == 2 {
			if c != ':' {
				return false
			}
			continue
		}
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	// The group bit is the low bit of the first octet's second digit.
	d := s[1]
	if d >= 'a' {
		d -= 'a' - 10
	} else {
		d -= '0'
	}
	return d&1 == 0
}

// buildPlan maps d to the kernel state it needs. Peers are considered in
// order of lease epoch, then name, so that a conflict (two peers claiming
// overlapping subnets or one VTEP MAC) is decided the same way on every run:
// the older claim is served, the other reported as a problem.
func buildPlan(d backend.Desired, in planInput) plan {
	// Sized for one subnet per peer: a route is a large struct, and
	// growing the slice by doubling would allocate it about twice over.
	p := plan{
		neighs:   make(map[netip.Addr]string, len(d.Peers)),
		fdb:      make(map[string]netip.Addr, len(d.Peers)),
		problems: map[string]string{},
		routes:   make([]netlink.Route, 0, len(d.Peers)),
	}
	p.addrs = d.Local.DeviceAddrs()
	peers := slices.Clone(d.Peers)
	// The older claim wins a conflict; ties go by name.
	slices.SortStableFunc(peers, func(a, b backend.Peer) int {
		return cmp.Or(cmp.Compare(a.Epoch, b.Epoch), cmp.Compare(a.Name, b.Name))
	})

	// Subnets already taken (ours, then each accepted peer's).
	var taken prefixSet
	owner := make(map[netip.Prefix]string, len(d.Peers)+2)
	for _, s := range []netip.Prefix{d.Local.Subnet, d.Local.IPv6Subnet} {
		if s.IsValid() {
			taken.add(s.Masked())
			owner[s.Masked()] = "this node"
		}
	}
	macOwner := make(map[string]string, len(d.Peers))

	for _, peer := range peers {
		var problems []string
		complain := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

		// The tunnel endpoint: the peer's public address of our family.
		var endpoint netip.Addr
		switch pub, pub6 := peer.PublicIP.Unmap(), peer.PublicIPv6.Unmap(); {
		case in.publicIP.Is4() && pub.Is4():
			endpoint = pub
		case in.publicIP.Is6() && pub.Is6():
			endpoint = pub
		case in.publicIP.Is6() && pub6.Is6():
			endpoint = pub6
		}
		mac, macErr := normMAC(peer.Data.VTEPMAC)
		if macErr == nil {
			if o, dup := macOwner[mac]; dup {
				macErr = fmt.Errorf("VTEP MAC %s is also %s's", mac, o)
			}
		}
		usedTunnel := false

		for _, fam := range []struct {
			subnet netip.Prefix
			direct netip.Addr // the public address a direct route would use
			v6     bool
		}{
			{peer.Subnet, peer.PublicIP.Unmap(), false},
			{peer.IPv6Subnet, directV6(peer), true},
		} {
			if !fam.subnet.IsValid() {
				continue
			}
			subnet := fam.subnet.Masked()
			if subnet.Addr().Is6() != fam.v6 {
				complain("subnet %s has the wrong address family", subnet)
				continue
			}
			if o := taken.overlapping(subnet); o.IsValid() {
				complain("subnet %s overlaps %s of %s", subnet, o, owner[o])
				continue
			}
			if in.directRouting && fam.direct.IsValid() && fam.direct.Is6() == fam.v6 {
				idx, err := in.direct(fam.direct)
				if err != nil {
					p.warnings = append(p.warnings, fmt.Errorf("peer %s: %w", peer.Name, err))
				}
				if idx > 0 {
					p.routes = append(p.routes, netlink.Route{
						Dst: ipNetOf(subnet), Gw: ipOf(fam.direct), LinkIndex: idx,
					})
					taken.add(subnet)
					owner[subnet] = peer.Name
					continue
				}
			}
			if !endpoint.IsValid() {
				complain("no public %s address for the tunnel (peer has %s)", family(in.publicIP), peer.PublicIP)
				continue
			}
			if macErr != nil {
				complain("%v", macErr)
				continue
			}
			vtep := vtepAddr(subnet)
			p.neighs[vtep] = mac
			p.fdb[mac] = endpoint
			usedTunnel = true
			p.routes = append(p.routes, netlink.Route{
				Dst: ipNetOf(subnet), Gw: ipOf(vtep), LinkIndex: in.vxIndex, Flags: onlinkFlag,
			})
			taken.add(subnet)
			owner[subnet] = peer.Name
		}
		if usedTunnel {
			macOwner[mac] = peer.Name
		}
		if !peer.Subnet.IsValid() && !peer.IPv6Subnet.IsValid() {
			complain("no subnet")
		}
		if len(problems) > 0 {
			p.problems[peer.Name] = strings.Join(problems, "; ")
		}
	}
	return p
}

// directV6 is the address a direct route to the peer's IPv6 subnet uses.
func directV6(peer backend.Peer) netip.Addr {
	if peer.PublicIPv6.IsValid() {
		return peer.PublicIPv6.Unmap()
	}
	if peer.PublicIP.Unmap().Is6() {
		return peer.PublicIP
	}
	return netip.Addr{}
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// prefixSet holds masked prefixes and finds one that overlaps a given
// prefix without comparing it with every member: two prefixes of one
// family overlap when the shorter contains the longer, so for each length
// in the set one map lookup of the prefix cut to that length finds a
// member containing it. Members longer than the prefix asked about (only
// when lengths are mixed, as after a forced SubnetLen change) are compared
// one by one. A cluster's peers share one length per family, so finding an
// overlap costs a lookup or two, not one comparison per peer.
type prefixSet struct {
	byLen map[prefixLen]map[netip.Prefix]bool
	lens  []prefixLen // the keys of byLen
}

// prefixLen is a prefix length within one address family.
type prefixLen struct {
	v6   bool
	bits int
}

func (s *prefixSet) add(p netip.Prefix) {
	if s.byLen == nil {
		s.byLen = map[prefixLen]map[netip.Prefix]bool{}
	}
	k := prefixLen{p.Addr().Is6(), p.Bits()}
	m := s.byLen[k]
	if m == nil {
		m = map[netip.Prefix]bool{}
		s.byLen[k] = m
		s.lens = append(s.lens, k)
	}
	m[p] = true
}

// overlapping returns a member that overlaps p, or the zero prefix.
func (s *prefixSet) overlapping(p netip.Prefix) netip.Prefix {
	for _, k := range s.lens {
		switch {
		case k.v6 != p.Addr().Is6():
		case k.bits <= p.Bits():
			if c, err := p.Addr().Prefix(k.bits); err == nil && s.byLen[k][c] {
				return c
			}
		default:
			for t := range s.byLen[k] {
				if t.Overlaps(p) {
					return t
				}
			}
		}
	}
	return netip.Prefix{}
}

// neighEntry is a neighbour entry on the device.
type neighEntry struct {
	ip        netip.Addr
	mac       string
	permanent bool
}

// neighDiff is what it takes to make the device's neighbours match.
type neighDiff struct {
	add, update []neighEntry
	// stale are permanent entries no peer needs (deleted when complete).
	stale []neighEntry
}

// neighDiffer is diffNeighs taking the device's entries one at a time, as
// a kernel dump delivers them, so that the dump is never held as a list.
// Besides the wanted map it keeps one byte per wanted address and the
// stale entries.
type neighDiffer struct {
	want  map[netip.Addr]string
	seen  map[netip.Addr]bool // wanted addresses seen; true: as wanted
	stale []neighEntry
}

func newNeighDiffer(want map[netip.Addr]string) *neighDiffer {
	nd := &neighDiffer{want: want}
	nd.reset()
	return nd
}

// reset forgets the entries seen (a dump to start over).
func (nd *neighDiffer) reset() {
	nd.seen = make(map[netip.Addr]bool, len(nd.want))
	nd.stale = nil
}

// see takes one current entry: its address, its link-layer address as the
// kernel gives it (nil: none), and whether it is permanent.
func (nd *neighDiffer) see(ip netip.Addr, mac []byte, permanent bool) {
	var buf [macTextMax]byte
	text := appendMAC(buf[:0], mac)
	w, ok := nd.want[ip]
	if !ok {
		// Only permanent entries are weft's kind; the kernel's own
		// (incomplete, failed, multicast) come and go.
		if permanent {
			nd.stale = append(nd.stale, neighEntry{ip: ip, mac: string(text), permanent: true})
		}
		return
	}
	nd.seen[ip] = permanent && string(text) == w
}

// diff is what it takes to make the entries seen the wanted ones.
func (nd *neighDiffer) diff() neighDiff {
	d := neighDiff{stale: nd.stale}
	for _, ip := range sortedKeys(nd.want, netip.Addr.Compare) {
		w := neighEntry{ip: ip, mac: nd.want[ip], permanent: true}
		good, ok := nd.seen[ip]
		switch {
		case !ok:
			d.add = append(d.add, w)
		case !good:
			d.update = append(d.update, w)
		}
	}
	return d
}

// diffNeighs is [neighDiffer] over a list.
func diffNeighs(current []neighEntry, want map[netip.Addr]string) neighDiff {
	nd := newNeighDiffer(want)
	for _, c := range current {
		nd.see(c.ip, macBytes(c.mac), c.permanent)
	}
	return nd.diff()
}

// macTextMax holds the text of any link-layer address the kernel has
// (at most 32 bytes, MAX_ADDR_LEN); longer ones are formatted on the heap.
const macTextMax = 32 * 3

// appendMAC appends mac as net.HardwareAddr.String writes it, without
// allocating when buf has room.
func appendMAC(buf []byte, mac []byte) []byte {
	const hex = "0123456789abcdef"
	for i, b := range mac {
		if i > 0 {
			buf = append(buf, ':')
		}
		buf = append(buf, hex[b>>4], hex[b&0xf])
	}
	return buf
}

// macBytes is the address s names, nil when it names none.
func macBytes(s string) []byte {
	mac, err := net.ParseMAC(s)
	if err != nil {
		return nil
	}
	return mac
}

// fdbEntry is a forwarding database entry on the device: frames for mac
// go in UDP to dst.
type fdbEntry struct {
	mac       string
	dst       netip.Addr
	permanent bool
}

// fdbDiff is what it takes to make the device's FDB match.
type fdbDiff struct {
	// wrong are extra entries for a MAC a peer uses that point elsewhere:
	// deleted before add/update, whether the view is complete or not.
	wrong       []fdbEntry
	add, update []fdbEntry
	// stale are entries for MACs no peer uses (deleted when complete).
	stale []fdbEntry
}

// fdbDiffer is diffFDB taking the device's entries one at a time, as a
// kernel dump delivers them. The wanted MACs are indexed as 48-bit numbers,
// so that an entry is looked up without making a string of its MAC.
type fdbDiffer struct {
	want  map[string]netip.Addr
	macs  []string       // the wanted MACs, sorted
	index map[uint64]int // a wanted MAC's number → its place in macs
	seen  []fdbSeen      // by place in macs
	stale []fdbEntry
}

// fdbSeen is what the device has for one wanted MAC.
type fdbSeen struct {
	good   bool       // an entry as wanted
	others []fdbEntry // every other entry for the MAC
}

func newFDBDiffer(want map[string]netip.Addr) *fdbDiffer {
	fd := &fdbDiffer{want: want, macs: sortedKeys(want, cmp.Compare[string]), index: make(map[uint64]int, len(want))}
	for i, m := range fd.macs {
		if n, ok := macNumber(macBytes(m)); ok {
			fd.index[n] = i
		}
	}
	fd.reset()
	return fd
}

// reset forgets the entries seen (a dump to start over).
func (fd *fdbDiffer) reset() {
	fd.seen = make([]fdbSeen, len(fd.macs))
	fd.stale = nil
}

// see takes one current entry: its MAC as the kernel gives it, its
// destination and whether it is permanent.
func (fd *fdbDiffer) see(mac []byte, dst netip.Addr, permanent bool) {
	i, ok := -1, false
	if n, is48 := macNumber(mac); is48 {
		i, ok = fd.index[n]
	}
	if !ok {
		var buf [macTextMax]byte
		fd.stale = append(fd.stale, fdbEntry{mac: string(appendMAC(buf[:0], mac)), dst: dst, permanent: permanent})
		return
	}
	s := &fd.seen[i]
	if !s.good && permanent && dst == fd.want[fd.macs[i]] {
		// Keep the right one; a MAC may carry several destinations in
		// the kernel, weft wants exactly one.
		s.good = true
		return
	}
	s.others = append(s.others, fdbEntry{mac: fd.macs[i], dst: dst, permanent: permanent})
}

// diff is what it takes to make the entries seen the wanted ones.
func (fd *fdbDiffer) diff() fdbDiff {
	d := fdbDiff{stale: fd.stale}
	for i, mac := range fd.macs {
		w := fdbEntry{mac: mac, dst: fd.want[mac], permanent: true}
		s := fd.seen[i]
		switch {
		case s.good:
			// Remove the other destinations.
			d.wrong = append(d.wrong, s.others...)
		case len(s.others) == 0:
			d.add = append(d.add, w)
		case len(s.others) == 1:
			// One entry, wrong destination or not permanent: replace
			// it in place (NLM_F_REPLACE), so there is no window
			// without an entry.
			d.update = append(d.update, w)
		default:
			d.wrong = append(d.wrong, s.others...)
			d.add = append(d.add, w)
		}
	}
	return d
}

// diffFDB is [fdbDiffer] over a list.
func diffFDB(current []fdbEntry, want map[string]netip.Addr) fdbDiff {
	fd := newFDBDiffer(want)
	for _, c := range current {
		fd.see(macBytes(c.mac), c.dst, c.permanent)
	}
	return fd.diff()
}

// macNumber is a 6-byte MAC as a number; ok is false for other lengths.
func macNumber(mac []byte) (n uint64, ok bool) {
	if len(mac) != 6 {
		return 0, false
	}
	for _, b := range mac {
		n = n<<8 | uint64(b)
	}
	return n, true
}

func sortedKeys[K comparable, V any](m map[K]V, cmp func(a, b K) int) []K {
	ks := make([]K, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, cmp)
	return ks
}
