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
// accepts (in their input order) and those it rejects, each with a reason.
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
	order := make([]int, len(peers))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(i, j int) int {
		a, b := &peers[i], &peers[j]
		return cmp.Or(cmp.Compare(a.Epoch, b.Epoch), cmp.Compare(a.Name, b.Name),
			comparePrefix(primary(a), primary(b)), comparePrefix(a.IPv6Subnet, b.IPv6Subnet))
	})

	// Every accepted subnet has the configured length of its family
	// (checkSubnets), so two of them overlap only when they are equal: a
	// map finds a conflict at once, and the check stays linear in the
	// number of peers. This node's subnets may have another length (after
	// a forced SubnetLen change); the few of them are compared one by one.
	var local []netip.Prefix
	for _, s := range []netip.Prefix{in.Local.Subnet, in.Local.IPv6Subnet} {
		if s.IsValid() {
			local = append(local, s.Masked())
		}
	}
	owner := map[netip.Prefix]int{} // accepted subnet → index in peers
	macOwner := map[string]string{}
	keyOwner := map[[32]byte]string{}
	selfKey, _ := decodeKey(in.SelfWireGuardKey)

	ok := make([]bool, len(peers))
	reasons := make([]string, len(peers))
	for _, i := range order {
		p := &peers[i]
		var why []string
		complain := func(format string, args ...any) { why = append(why, fmt.Sprintf(format, args...)) }

		subnets := checkSubnets(in.Network, p, complain)
		checkPublicIP(in, "public IP", p.PublicIP, false, complain)
		if p.PublicIPv6.IsValid() {
			checkPublicIP(in, "public IPv6", p.PublicIPv6, true, complain)
		}
		mac := ""
		if p.Data.VTEPMAC != "" {
			var err error
			if mac, err = checkMAC(p.Data.VTEPMAC); err != nil {
				complain("%v", err)
			}
		}
		var key [32]byte
		hasKey := false
		if p.Data.WireGuardKey != "" {
			k, err := decodeKey(p.Data.WireGuardKey)
			switch {
			case err != nil:
				complain("%v", err)
			case k == [32]byte{}:
				complain("WireGuard key is all zero")
			case k == selfKey:
				complain("WireGuard key is this node's")
			default:
				key, hasKey = k, true
			}
		}
		if port := p.Data.WireGuardPort; port < 0 || port > 65535 {
			complain("WireGuard port %d is out of range", port)
		}

		// Conflicts with this node and with older entries: only an entry
		// that is otherwise valid is weighed against the others.
		if len(why) == 0 {
			for _, s := range subnets {
				if o := overlapping(local, s); o.IsValid() {
					complain("subnet %s overlaps %s (this node's subnet)", s, o)
				} else if j, dup := owner[s]; dup {
					complain("subnet %s overlaps %s (peer %s, epoch %d)", s, s, peers[j].Name, peers[j].Epoch)
				}
			}
			if o, dup := macOwner[mac]; mac != "" && dup {
				complain("VTEP MAC %s is also peer %s's", mac, o)
			}
			if o, dup := keyOwner[key]; hasKey && dup && o != p.Name {
				complain("WireGuard key is also peer %s's", o)
			}
		}
		if len(why) > 0 {
			reasons[i] = strings.Join(why, "; ")
			continue
		}
		ok[i] = true
		for _, s := range subnets {
			owner[s] = i
		}
		if mac != "" {
			macOwner[mac] = p.Name
		}
		if hasKey {
			keyOwner[key] = p.Name
		}
	}
	for i, p := range peers {
		if ok[i] {
			accepted = append(accepted, p)
		} else {
			rejected = append(rejected, Rejected{Peer: p, Reason: reasons[i]})
		}
	}
	return accepted, rejected
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
