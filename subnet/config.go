// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package subnet

import (
	"net/netip"
)

// Backend type names, as written in the network config's Backend.Type.
const (
	BackendVXLAN     = "vxlan"
	BackendWireGuard = "wireguard"
	BackendHostGW    = "host-gw"
)

// Config is the cluster-wide network configuration stored as JSON at
// <prefix>/config. Field names are the JSON keys.
//
// Parse it with [ParseConfig], which applies defaults and validates.
type Config struct {
	// Network is the IPv4 cluster network (e.g. 10.244.0.0/16). It may be
	// zero for an IPv6-only network.
	Network netip.Prefix `json:"Network,omitzero"`
	// IPv6Network is the IPv6 cluster network; set for dual-stack or
	// IPv6-only networks.
	IPv6Network netip.Prefix `json:"IPv6Network,omitzero"`
	// SubnetLen is the prefix length of each node's IPv4 subnet (default 24).
	SubnetLen int `json:"SubnetLen,omitempty"`
	// IPv6SubnetLen is the prefix length of each node's IPv6 subnet (default 64).
	IPv6SubnetLen int `json:"IPv6SubnetLen,omitempty"`
	// SubnetMin and SubnetMax bound the IPv4 subnets handed out (both
	// inclusive; each must be a subnet of Network with SubnetLen).
	SubnetMin netip.Addr `json:"SubnetMin,omitzero"`
	SubnetMax netip.Addr `json:"SubnetMax,omitzero"`
	// Backend selects and configures the data plane.
	Backend BackendConfig `json:"Backend"`
}

// BackendConfig is the Backend object of the network config. Only the keys
// of the selected Type are allowed.
type BackendConfig struct {
	// Type is vxlan (default), wireguard or host-gw.
	Type string `json:"Type,omitempty"`

	// VXLAN: VNI (default 1), UDP Port (default 8472), MTU (0: derived from
	// the underlay), DirectRouting (plain routes to peers on the same L2
	// segment).
	VNI           int  `json:"VNI,omitempty"`
	Port          int  `json:"Port,omitempty"`
	DirectRouting bool `json:"DirectRouting,omitempty"`

	// MTU of the pod network; 0 derives it from the underlay interface.
	// Valid for vxlan and wireguard.
	MTU int `json:"MTU,omitempty"`

	// WireGuard: ListenPort (default 51820) and PersistentKeepalive in
	// seconds (0: off).
	ListenPort          int `json:"ListenPort,omitempty"`
	PersistentKeepalive int `json:"PersistentKeepalive,omitempty"`
}
