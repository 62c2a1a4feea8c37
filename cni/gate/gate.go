// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package gate holds a new pod's traffic until weftd has applied the
// network policy that includes it, so that no pod is ever reachable
// against policy at its birth.
//
// Kernel state, in the node's namespace: two nftables tables named
// "weft-gate", beside weftd's policy table "inet weft-policy", holding
// the same elements (every change touches both in one transaction):
//
//	table inet weft-gate {
//	  set pending4 { type ipv4_addr }   # elements commented "<port> <mac>"
//	  set pending6 { type ipv6_addr }
//	  chain forward {                   # type filter hook forward priority -10; policy accept
//	    icmpv6 neighbour discovery, hop limit 255 accept
//	    ip saddr @pending4 drop   ip daddr @pending4 drop
//	    ip6 saddr @pending6 drop  ip6 daddr @pending6 drop
//	  }
//	}
//	table bridge weft-gate {
//	  set pending4, pending6            # as above
//	  chain prerouting {                # type filter hook prerouting priority -190; policy accept
//	    (the rules of forward)
//	  }
//	  chain output {                    # type filter hook output priority filter; policy accept
//	    icmpv6 neighbour discovery, hop limit 255 accept
//	    ip daddr @pending4 drop   ip6 daddr @pending6 drop
//	  }
//	}
//
// The forward chain holds a pod where the policy table is evaluated: a
// packet passes it either while the pod is held (dropped) or once the
// policy state that includes the pod is in force. The bridge chains hold
// what never crosses that hook: frames between pods on the bridge when
// br_netfilter is off, the node's own packets, and packets routed to the
// new pod's address before the pod existed, which passed the forward hook
// then (no policy isolates an address nobody has) and wait in the node's
// neighbour queue: they leave through the bridge's output hook once the
// pod answers ARP, and are dropped there. The plugin deletes the node's
// neighbour entries for the pod's addresses while the pod is held, with
// whatever is still queued on them, so that nothing admitted before the
// pod existed is delivered after its release.
//
// Who writes what. weftd makes the tables whenever it applies the policy
// table and removes all three when policy is off; it never replaces the sets,
// so their elements survive every apply and every restart of weftd. The
// CNI plugin, at ADD, adds the pod's addresses to the pending sets
// ([Hold]) before it writes the pod record and before the pod's
// interface has an address, and then waits ([Wait]) until they are gone.
// weftd lists the pending elements, reads the pod records, and deletes
// the elements whose port and MAC match a record it read, in the same
// netlink transaction that replaces the policy table with the state
// compiled from those records: a pod is held until the state that
// includes it is in force, and from then on governed by it; it is never
// released on a state compiled without its record. Elements matching no
// record (or one weftd cannot read) stay held: the plugin removes them
// at DEL, GC and a failed ADD ([Release]), before the address goes back
// to the pool.
//
// When the tables do not exist (weftd never applied policy on this node,
// policy is off, weftd runs a mode without policy), [Hold] holds nothing
// and ADD does not wait. While a pod is held the node's own traffic to it
// is dropped too (nothing probes a pod whose ADD has not returned);
// address resolution (ARP, neighbour discovery) is never held.
package gate

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Names in the kernel.
const (
	Table           = "weft-gate"
	Set4            = "pending4"
	Set6            = "pending6"
	ChainForward    = "forward"
	ChainPrerouting = "prerouting"
	ChainOutput     = "output"
)

// Pending is one held address, and the attachment (host veth port and
// pod MAC, as in the pod record) that holds it.
type Pending struct {
	Addr netip.Addr
	Port string
	MAC  string
}

// Tag is the comment of a pending element: "<port> <mac>".
func Tag(port, mac string) string { return port + " " + strings.ToLower(mac) }

// parseTag is the inverse of [Tag]; ok is false for a foreign comment.
func parseTag(s string) (port, mac string, ok bool) {
	port, mac, ok = strings.Cut(s, " ")
	if !ok || port == "" {
		return "", "", false
	}
	if _, err := net.ParseMAC(mac); err != nil {
		return "", "", false
	}
	return port, mac, true
}

func (p Pending) String() string { return fmt.Sprintf("%s (%s)", p.Addr, Tag(p.Port, p.MAC)) }
