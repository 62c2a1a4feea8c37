// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package subnet

import (
	"net/netip"
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
