// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package subnet

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// BackendData is the per-node data a backend publishes so that other nodes
// can reach this one. Only the fields of the node's backend are set.
type BackendData struct {
	// VTEPMAC is the MAC address of the node's VXLAN device.
	VTEPMAC string `json:"vtepMAC,omitempty"`
	// WireGuardKey is the node's WireGuard public key (base64).
	WireGuardKey string `json:"wgKey,omitempty"`
	// WireGuardPort is the node's WireGuard listen port.
	WireGuardPort int `json:"wgPort,omitempty"`
}

// Record is the value of a lease key: who holds the subnet and how to reach
// it. Each node is the source of truth for its own record; Version grows by
// one each time the node's data changes (persisted in the state dir).
type Record struct {
	NodeName string `json:"nodeName"`
	// NodeID is a UUID created once in the node's state dir. Two nodes with
	// one name but different IDs must never share or steal a subnet.
	NodeID string `json:"nodeID"`
	// PublicIP is the node's underlay address used for tunnels (IPv4 or
	// IPv6); PublicIPv6 is its IPv6 underlay address when it has both.
	PublicIP   netip.Addr `json:"publicIP"`
	PublicIPv6 netip.Addr `json:"publicIPv6,omitzero"`
	// GossipAddr is host:port of the node's memberlist member.
	GossipAddr  string      `json:"gossipAddr,omitempty"`
	BackendType string      `json:"backendType"`
	BackendData BackendData `json:"backendData,omitzero"`
	// Version is the node's data version (see DESIGN.md).
	Version uint64 `json:"version"`
}

// Lease is a node's claim on a subnet (and, dual-stack, an IPv6 subnet) as
// read from the store.
type Lease struct {
	// Subnet is the IPv4 pod subnet (zero in an IPv6-only network).
	Subnet netip.Prefix `json:"subnet,omitzero"`
	// IPv6Subnet is the IPv6 pod subnet (zero unless the network has IPv6).
	IPv6Subnet netip.Prefix `json:"ipv6Subnet,omitzero"`
	Record     Record       `json:"record"`
	// Epoch identifies the claim: a new claim of the same subnet has a
	// higher epoch (etcd: the CreateRevision of the lease's primary key,
	// the IPv4 key or, in an IPv6-only network, the IPv6 key).
	Epoch int64 `json:"epoch"`
	// ModRevision is the store's revision of the lease when read (etcd:
	// the primary key's ModRevision), comparable with [View.Revision].
	ModRevision int64 `json:"modRevision"`
	// LeaseID names what keeps the claim alive in the store (etcd: the
	// etcd lease the keys are attached to); zero when the store has no
	// such thing. Only the store that set it interprets it.
	LeaseID int64 `json:"leaseID"`
	// Expiry is when the claim lapses if not kept alive (as last known);
	// zero when it does not lapse by itself.
	Expiry time.Time `json:"expiry,omitzero"`
}

// Primary returns the subnet that names the lease: the IPv4 subnet, or the
// IPv6 one in an IPv6-only network.
func (l *Lease) Primary() netip.Prefix {
	if l.Subnet.IsValid() {
		return l.Subnet
	}
	return l.IPv6Subnet
}

// Bounds of a record read from the store, checked by [Record.Validate].
const (
	maxNodeName = 253
	maxNodeID   = 64
	maxHostPort = 300
)

// Validate checks that r is well formed, as a record read from the store
// must be before it is believed: a node name (1 to 253 visible ASCII
// characters) and a node ID (1 to 64), addresses of the right family
// without zones, a known backend type, a VTEP MAC of 6 bytes, a WireGuard
// key of 32 bytes in base64, ports in range and a gossip address of the
// form host:port. It does not judge whether the addresses are usable as a
// peer's (unicast, not this node's): that is the peer check's business.
// The error names the field.
func (r *Record) Validate() error {
	if err := checkName("nodeName", r.NodeName, maxNodeName); err != nil {
		return err
	}
	if err := checkName("nodeID", r.NodeID, maxNodeID); err != nil {
		return err
	}
	if a := r.PublicIP; a.IsValid() && a.Zone() != "" {
		return fmt.Errorf("publicIP %s has a zone", a)
	}
	if a := r.PublicIPv6; a.IsValid() && (!a.Is6() || a.Is4In6() || a.Zone() != "") {
		return fmt.Errorf("publicIPv6 %s is not a plain IPv6 address", a)
	}
	if r.GossipAddr != "" {
		if err := checkHostPort(r.GossipAddr); err != nil {
			return fmt.Errorf("gossipAddr: %w", err)
		}
	}
	switch r.BackendType {
	case "", BackendVXLAN, BackendWireGuard, BackendHostGW:
	default:
		return fmt.Errorf("backendType %q is not %s, %s or %s", truncate(r.BackendType), BackendVXLAN, BackendWireGuard, BackendHostGW)
	}
	d := r.BackendData
	if d.VTEPMAC != "" {
		if m, err := net.ParseMAC(d.VTEPMAC); err != nil || len(m) != 6 {
			return fmt.Errorf("backendData.vtepMAC %q is not a 6-byte MAC address", truncate(d.VTEPMAC))
		}
	}
	if d.WireGuardKey != "" {
		if k, err := base64.StdEncoding.DecodeString(d.WireGuardKey); err != nil || len(k) != 32 {
			return fmt.Errorf("backendData.wgKey is not a 32-byte key in base64")
		}
	}
	if d.WireGuardPort < 0 || d.WireGuardPort > 65535 {
		return fmt.Errorf("backendData.wgPort %d is out of range 0-65535", d.WireGuardPort)
	}
	return nil
}

// checkName checks a name or ID field: 1 to max visible ASCII characters.
func checkName(field, s string, max int) error {
	if s == "" {
		return fmt.Errorf("%s is empty", field)
	}
	if len(s) > max {
		return fmt.Errorf("%s is %d bytes long, more than %d", field, len(s), max)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("%s %q has a character that is not visible ASCII", field, truncate(s))
		}
	}
	return nil
}

// checkHostPort checks host:port with a host of visible ASCII and a port
// 1-65535.
func checkHostPort(s string) error {
	if len(s) > maxHostPort {
		return fmt.Errorf("%d bytes long, more than %d", len(s), maxHostPort)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", truncate(s))
	}
	if err := checkName("host", host, maxHostPort); err != nil {
		return err
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not 1-65535", truncate(port))
	}
	return nil
}

// truncate shortens s for an error message about outside input, which
// may name a value but never echo a large one.
func truncate(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
