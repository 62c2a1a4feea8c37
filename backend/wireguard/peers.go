// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package wireguard

import (
	"bytes"
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/backend"
)

// wantPeer is one WireGuard peer as the desired state describes it.
type wantPeer struct {
	name     string
	key      wgtypes.Key
	endpoint netip.AddrPort
	// allowed is sorted and masked.
	allowed []netip.Prefix
	epoch   int64
	version uint64
}

// desiredPeers turns the daemon's peer list into WireGuard peers keyed by
// public key. Peers that cannot be served are reported in problems (keyed
// by peer name). Two leases held by one key (a node holding an old and a
// new lease for a while) become one WireGuard peer allowed both subnets,
// with the endpoint of the newest lease. A subnet that overlaps this
// node's or one already taken is refused: peers are taken oldest lease
// first (then by name), so the older lease wins, as in every backend and
// in backend.CheckPeers.
func desiredPeers(d backend.Desired, self wgtypes.Key, defaultPort int) (map[wgtypes.Key]*wantPeer, map[string]string) {
	problems := map[string]string{}
	want := map[wgtypes.Key]*wantPeer{}
	peers := slices.Clone(d.Peers)
	slices.SortStableFunc(peers, func(a, b backend.Peer) int {
		return cmp.Or(cmp.Compare(a.Epoch, b.Epoch), cmp.Compare(a.Name, b.Name))
	})
	taken := newPrefixIndex(d)
	owner := map[netip.Prefix]string{}
	for _, s := range []netip.Prefix{d.Local.Subnet, d.Local.IPv6Subnet} {
		if s.IsValid() {
			taken.add(s.Masked())
			owner[s.Masked()] = "this node"
		}
	}
	for _, p := range peers {
		key, err := wgtypes.ParseKey(p.Data.WireGuardKey)
		if err != nil {
			problems[p.Name] = fmt.Sprintf("invalid wireguard public key %q", p.Data.WireGuardKey)
			continue
		}
		if key == self {
			problems[p.Name] = "peer has this node's wireguard public key"
			continue
		}
		if !p.PublicIP.IsValid() {
			problems[p.Name] = "peer has no public ip"
			continue
		}
		port := p.Data.WireGuardPort
		if port == 0 {
			port = defaultPort
		}
		if port < 1 || port > 65535 {
			problems[p.Name] = fmt.Sprintf("invalid wireguard port %d", port)
			continue
		}
		var allowed []netip.Prefix
		for _, s := range []netip.Prefix{p.Subnet, p.IPv6Subnet} {
			if !s.IsValid() {
				continue
			}
			s = s.Masked()
			if o := taken.overlapping(s); o.IsValid() {
				problems[p.Name] = fmt.Sprintf("subnet %s overlaps %s of %s", s, o, owner[o])
				continue
			}
			taken.add(s)
			owner[s] = p.Name
			allowed = append(allowed, s)
		}
		if len(allowed) == 0 {
			if _, reported := problems[p.Name]; !reported {
				problems[p.Name] = "peer has no subnet"
			}
			continue
		}
		endpoint := netip.AddrPortFrom(p.PublicIP.Unmap(), uint16(port))
		w, seen := want[key]
		switch {
		case !seen:
			w = &wantPeer{key: key}
			want[key] = w
			fallthrough
		case p.Epoch > w.epoch || (p.Epoch == w.epoch && p.Version > w.version):
			// The newest lease of a key names the peer and its endpoint.
			w.name, w.endpoint, w.epoch, w.version = p.Name, endpoint, p.Epoch, p.Version
		}
		w.allowed = append(w.allowed, allowed...)
	}
	for _, w := range want {
		slices.SortFunc(w.allowed, comparePrefix)
	}
	return want, problems
}

// prefixIndex holds non-overlapping prefixes and finds the one that
// overlaps a prefix in O(number of distinct lengths), where a list would
// take O(prefixes): the peer check is then linear in the number of peers
// (it was quadratic: a tenth of the time to program 5000 peers).
//
// Two prefixes overlap when one contains the other. held answers "a held
// prefix contains p" by masking p to each length; inside answers "p
// contains a held prefix" by holding each prefix masked to every shorter
// length. Every length added or asked about must be in lens.
type prefixIndex struct {
	lens   []int
	held   map[netip.Prefix]netip.Prefix // a held prefix -> itself
	inside map[netip.Prefix]netip.Prefix // a held prefix masked shorter -> the held prefix
}

// newPrefixIndex returns an empty index for the lengths of d's subnets.
func newPrefixIndex(d backend.Desired) *prefixIndex {
	x := &prefixIndex{held: map[netip.Prefix]netip.Prefix{}, inside: map[netip.Prefix]netip.Prefix{}}
	seen := map[int]bool{}
	note := func(p netip.Prefix) {
		if p.IsValid() && !seen[p.Bits()] {
			seen[p.Bits()] = true
			x.lens = append(x.lens, p.Bits())
		}
	}
	note(d.Local.Subnet)
	note(d.Local.IPv6Subnet)
	for _, p := range d.Peers {
		note(p.Subnet)
		note(p.IPv6Subnet)
	}
	return x
}

// add holds p, a masked prefix that overlaps none held.
func (x *prefixIndex) add(p netip.Prefix) {
	x.held[p] = p
	for _, l := range x.lens {
		if l < p.Bits() {
			q, _ := p.Addr().Prefix(l)
			if _, ok := x.inside[q]; !ok {
				x.inside[q] = p
			}
		}
	}
}

// overlapping returns a held prefix that overlaps the masked prefix p, or
// the zero prefix.
func (x *prefixIndex) overlapping(p netip.Prefix) netip.Prefix {
	for _, l := range x.lens {
		if l > p.Bits() {
			continue
		}
		q, _ := p.Addr().Prefix(l)
		if t, ok := x.held[q]; ok {
			return t
		}
	}
	return x.inside[p]
}

// peerPlan is the set of wgctrl peer changes that converges a device.
type peerPlan struct {
	configs []wgtypes.PeerConfig
	added   []wgtypes.Key
	updated []wgtypes.Key
	removed []wgtypes.Key
}

// planPeers compares the device's peers with the wanted ones and returns
// per-peer changes: new peers are added, peers that differ are updated in
// place (UpdateOnly), and peers not wanted are removed when complete is
// true. Peers that already match produce no change, so their sessions are
// untouched.
//
// An endpoint is written when the device has none for the peer, or when the
// wanted endpoint differs both from the device's and from lastEndpoint (what
// this backend last wrote for the key). An endpoint the device learned by
// roaming (the peer's packets arrived from another address, e.g. through
// NAT) is therefore kept until the peer publishes a new public IP or port.
func planPeers(want map[wgtypes.Key]*wantPeer, have []wgtypes.Peer, lastEndpoint map[wgtypes.Key]netip.AddrPort,
	psk wgtypes.Key, keepalive time.Duration, complete bool,
) peerPlan {
	var plan peerPlan
	current := make(map[wgtypes.Key]*wgtypes.Peer, len(have))
	for i := range have {
		current[have[i].PublicKey] = &have[i]
	}
	for _, key := range sortedKeys(want) {
		w := want[key]
		cur, exists := current[key]
		if !exists {
			plan.configs = append(plan.configs, wgtypes.PeerConfig{
				PublicKey:                   key,
				PresharedKey:                &psk,
				Endpoint:                    net.UDPAddrFromAddrPort(w.endpoint),
				PersistentKeepaliveInterval: &keepalive,
				ReplaceAllowedIPs:           true,
				AllowedIPs:                  ipNets(w.allowed),
			})
			plan.added = append(plan.added, key)
			continue
		}
		pc := wgtypes.PeerConfig{PublicKey: key, UpdateOnly: true}
		changed := false
		if cur.PresharedKey != psk {
			pc.PresharedKey = &psk
			changed = true
		}
		if cur.PersistentKeepaliveInterval != keepalive {
			pc.PersistentKeepaliveInterval = &keepalive
			changed = true
		}
		if curEP, ok := addrPort(cur.Endpoint); !ok || (curEP != w.endpoint && lastEndpoint[key] != w.endpoint) {
			pc.Endpoint = net.UDPAddrFromAddrPort(w.endpoint)
			changed = true
		}
		if !slices.Equal(prefixes(cur.AllowedIPs), w.allowed) {
			pc.ReplaceAllowedIPs = true
			pc.AllowedIPs = ipNets(w.allowed)
			changed = true
		}
		if changed {
			plan.configs = append(plan.configs, pc)
			plan.updated = append(plan.updated, key)
		}
	}
	if complete {
		var stale []wgtypes.Key
		for key := range current {
			if _, ok := want[key]; !ok {
				stale = append(stale, key)
			}
		}
		slices.SortFunc(stale, compareKey)
		for _, key := range stale {
			plan.configs = append(plan.configs, wgtypes.PeerConfig{PublicKey: key, Remove: true})
			plan.removed = append(plan.removed, key)
		}
	}
	return plan
}

func sortedKeys[V any](m map[wgtypes.Key]V) []wgtypes.Key {
	keys := make([]wgtypes.Key, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareKey)
	return keys
}

func compareKey(a, b wgtypes.Key) int {
	for i := range a {
		if c := cmp.Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return 0
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// addrPort converts a wgctrl endpoint; ok is false when there is none.
func addrPort(u *net.UDPAddr) (netip.AddrPort, bool) {
	if u == nil || u.IP == nil {
		return netip.AddrPort{}, false
	}
	ap := u.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

// prefixes converts wgctrl allowed IPs to sorted, masked prefixes.
func prefixes(nets []net.IPNet) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(nets))
	for _, n := range nets {
		a, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		ones, bits := n.Mask.Size()
		if a.Is4In6() {
			a = a.Unmap()
			if bits == 128 {
				ones -= 96
			}
		}
		out = append(out, netip.PrefixFrom(a, ones).Masked())
	}
	slices.SortFunc(out, comparePrefix)
	return out
}

func ipNets(ps []netip.Prefix) []net.IPNet {
	out := make([]net.IPNet, 0, len(ps))
	for _, p := range ps {
		out = append(out, net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())})
	}
	return out
}

// splitInitiators divides peers added at a first start (new key) by who
// starts the first handshake: this node, at once, with the peers whose
// public key sorts after its own (now); the peer with the others (later),
// which this node covers with an initiation of its own if the peer's does
// not come. One initiator per pair keeps the first packets of both sides
// from starting initiations that cross.
func splitInitiators(self wgtypes.Key, added []wgtypes.Key) (now, later []wgtypes.Key) {
	for _, k := range added {
		if bytes.Compare(self[:], k[:]) < 0 {
			now = append(now, k)
		} else {
			later = append(later, k)
		}
	}
	return now, later
}
