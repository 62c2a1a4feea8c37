// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package status holds the wire types of weftd's GET /status document. It is
// a leaf package (standard library and [subnet] only) so that weftctl and the
// e2e harness can decode the document without linking the daemon.
package status

import (
	"net/netip"
	"time"

	"github.com/weftnet/weft/subnet"
)

// Kinds of store (Node.Store).
const (
	StoreEtcd = "etcd"
	StoreKube = "kube"
)

// StoreName names a kind of store for people: the program that answers.
func StoreName(kind string) string {
	if kind == StoreKube {
		return "kube-apiserver"
	}
	return "etcd" // StoreEtcd, and documents older than Node.Store
}

// Reachable returns the kind of store n reports and whether it answers,
// from the fields of any weftd version.
func (n Node) Reachable() (store string, ok bool) {
	if n.Store == "" {
		return StoreEtcd, n.EtcdReachable
	}
	return n.Store, n.StoreReachable
}

// Report is the JSON document GET /status returns: this node, every peer
// of the desired set, and the gossip members as this node sees them.
type Report struct {
	Node    Node     `json:"node"`
	Peers   []Peer   `json:"peers"`
	Members []Member `json:"members"`
	// RejectedLeases lists the lease records in the store that are not
	// peers, with why: outside the network in force, malformed, or a key
	// that names no subnet. Their subnets still count as taken.
	RejectedLeases []subnet.RejectedLease `json:"rejectedLeases,omitempty"`
	// Rejected lists the peer entries (from the store, or claims from
	// gossip) that were checked and refused: none of them reaches the
	// data plane.
	Rejected []RejectedPeer `json:"rejected,omitempty"`
	// Policy is network policy enforcement on this node (nil from a
	// weftd that does not report it).
	Policy *Policy `json:"policy,omitempty"`
}

// Node describes this node.
type Node struct {
	Name string `json:"name"`
	// ID is the node's UUID from the state dir.
	ID string `json:"id"`
	// Subnet and IPv6Subnet are the leased pod subnets (zero until leased).
	Subnet      netip.Prefix `json:"subnet,omitzero"`
	IPv6Subnet  netip.Prefix `json:"ipv6Subnet,omitzero"`
	Network     netip.Prefix `json:"network,omitzero"`
	IPv6Network netip.Prefix `json:"ipv6Network,omitzero"`
	Iface       string       `json:"iface,omitempty"`
	PublicIP    netip.Addr   `json:"publicIP,omitzero"`
	PublicIPv6  netip.Addr   `json:"publicIPv6,omitzero"`
	GossipAddr  string       `json:"gossipAddr,omitempty"`
	// GossipEncryption is the gossip encryption mode (on, send, accept
	// or off; empty when gossip is off) and GossipKeySource where the key
	// came from (file, store, or saved: the copy of the store's key in the
	// state dir). GossipWarning is set when gossip is not (fully)
	// authenticated.
	GossipEncryption string `json:"gossipEncryption,omitempty"`
	GossipKeySource  string `json:"gossipKeySource,omitempty"`
	GossipWarning    string `json:"gossipWarning,omitempty"`
	// GossipRefused counts the gossip members refused because the member
	// table was full.
	GossipRefused uint64 `json:"gossipRefused,omitempty"`
	// BackendType is vxlan, host-gw or wireguard; BackendData what this
	// node publishes; MTU the pod MTU.
	BackendType string             `json:"backendType,omitempty"`
	BackendData subnet.BackendData `json:"backendData,omitzero"`
	MTU         int                `json:"mtu,omitempty"`
	// Epoch and Version identify this node's published data.
	Epoch       int64     `json:"epoch,omitempty"`
	Version     uint64    `json:"version,omitempty"`
	LeaseExpiry time.Time `json:"leaseExpiry,omitzero"`
	// Ready is what /readyz answers; NotReady says why not.
	Ready    bool   `json:"ready"`
	NotReady string `json:"notReady,omitempty"`
	// Complete is true once the peer view is complete (etcd list or
	// persisted snapshot): until then reconciles only add.
	Complete bool `json:"complete"`
	// Store is the kind of store weftd uses: StoreEtcd or StoreKube
	// (empty from a weftd older than this field).
	Store string `json:"store,omitempty"`
	// StoreReachable is whether the store answers (etcd, or the
	// Kubernetes API server).
	StoreReachable bool `json:"storeReachable"`
	// EtcdReachable is StoreReachable under its old name, in both modes.
	//
	// Deprecated: read StoreReachable; kept for the readers of older
	// documents and will be removed.
	EtcdReachable bool `json:"etcdReachable"`
	// ConfigError is why the last network config seen in etcd was
	// rejected (the last good one stays in force).
	ConfigError string `json:"configError,omitempty"`
	// PendingRestart lists config changes that need a restart of weftd
	// on every node.
	PendingRestart []string `json:"pendingRestart,omitempty"`
	// ForwardingProblem is set when IP forwarding could not be enabled.
	ForwardingProblem string `json:"forwardingProblem,omitempty"`
	// BridgeNetfilter is what br_netfilter does for packets bridged
	// between this node's pods (nil from a weftd that does not report it).
	BridgeNetfilter *BridgeNetfilter `json:"bridgeNetfilter,omitempty"`
	// MasqueradeProblem is set when the masquerade rules could not be
	// installed or removed; ForwardDropWarning when another nftables table
	// drops forwarded traffic.
	MasqueradeProblem  string    `json:"masqueradeProblem,omitempty"`
	ForwardDropWarning string    `json:"forwardDropWarning,omitempty"`
	LastReconcile      time.Time `json:"lastReconcile,omitzero"`
	ReconcileError     string    `json:"reconcileError,omitempty"`
}

// BridgeNetfilter is the state of br_netfilter in weftd's network
// namespace. Pods of a node share a bridge, so packets between them reach
// kube-proxy's Service rules and the network policy table (IP hooks) only
// when br_netfilter is loaded and its bridge-nf-call sysctls are 1.
type BridgeNetfilter struct {
	// Loaded is false when the kernel has no br_netfilter
	// (/proc/sys/net/bridge is missing): the node is then not ready.
	Loaded bool `json:"loaded"`
	// CallIPTables and CallIP6Tables are net.bridge.bridge-nf-call-iptables
	// and -ip6tables (the CNI plugin sets them to 1 at each ADD).
	CallIPTables  bool `json:"callIPTables"`
	CallIP6Tables bool `json:"callIP6Tables"`
	// Problem says what is wrong and how to fix it ("" when nothing is).
	Problem string `json:"problem,omitempty"`
}

// Peer describes one peer of the desired set.
type Peer struct {
	Name        string             `json:"name"`
	Subnet      netip.Prefix       `json:"subnet,omitzero"`
	IPv6Subnet  netip.Prefix       `json:"ipv6Subnet,omitzero"`
	PublicIP    netip.Addr         `json:"publicIP,omitzero"`
	PublicIPv6  netip.Addr         `json:"publicIPv6,omitzero"`
	BackendData subnet.BackendData `json:"backendData,omitzero"`
	Epoch       int64              `json:"epoch"`
	Version     uint64             `json:"version"`
	// State is the gossip state (alive, suspect, dead, left, or unknown
	// when gossip has not reported the peer) and Since when it changed.
	State string    `json:"state"`
	Since time.Time `json:"since,omitzero"`
	// Source is where the data came from: etcd or gossip.
	Source string `json:"source"`
	// Provisional is true for data from gossip that etcd has not
	// confirmed yet.
	Provisional bool `json:"provisional,omitempty"`
	// Problem is why the backend cannot serve this peer, if it cannot.
	Problem string `json:"problem,omitempty"`
}

// Member is a gossip member as this node sees it.
type Member struct {
	Name       string       `json:"name"`
	Addr       string       `json:"addr"`
	State      string       `json:"state"`
	Since      time.Time    `json:"since,omitzero"`
	Subnet     netip.Prefix `json:"subnet,omitzero"`
	IPv6Subnet netip.Prefix `json:"ipv6Subnet,omitzero"`
	PublicIP   netip.Addr   `json:"publicIP,omitzero"`
}

// RejectedPeer is a peer entry that failed the checks every entry passes
// before a backend sees it, with why.
type RejectedPeer struct {
	Name       string       `json:"name"`
	Subnet     netip.Prefix `json:"subnet,omitzero"`
	IPv6Subnet netip.Prefix `json:"ipv6Subnet,omitzero"`
	PublicIP   netip.Addr   `json:"publicIP,omitzero"`
	PublicIPv6 netip.Addr   `json:"publicIPv6,omitzero"`
	Epoch      int64        `json:"epoch,omitempty"`
	// Source is where the entry came from: etcd (the store's lease
	// records, or their saved snapshot) or gossip.
	Source string `json:"source"`
	// Reason says why it was refused.
	Reason string `json:"reason"`
}

// Policy is the state of network policy enforcement on this node.
type Policy struct {
	// Mode is how policy is handled: "etcd" (policies kept in etcd,
	// enforced), "kube" (NetworkPolicies, Namespaces and Pods from the
	// Kubernetes API, enforced), "off" (--network-policy=false: not
	// enforced) or "unsupported" (no policy source: not enforced).
	Mode string `json:"mode"`
	// Enforced is true when the last apply of the policy table succeeded
	// and the kernel passes packets between this node's pods through the
	// table (br_netfilter); Problem says why not otherwise.
	Enforced bool   `json:"enforced"`
	Problem  string `json:"problem,omitempty"`
	// Policies and Namespaces count what the last applied state was
	// compiled from; LocalPods and RemotePods the pod endpoints it knew.
	Policies   int `json:"policies"`
	Namespaces int `json:"namespaces"`
	LocalPods  int `json:"localPods"`
	RemotePods int `json:"remotePods"`
	// LocalPodsWithoutObject counts, in Kubernetes mode, this node's pods
	// whose Pod object the informer does not hold (yet): their labels are
	// the pod record's (a kubelet passes none), their named ports unknown.
	LocalPodsWithoutObject int `json:"localPodsWithoutObject,omitempty"`
	// HeldAddresses counts the new pods' addresses the CNI plugin holds
	// at the pod gate (package cni/gate) that weftd has not released yet:
	// a pod whose record it cannot read, or (Kubernetes mode) whose Pod
	// object it has not seen. Each is dropped until released.
	HeldAddresses int `json:"heldAddresses"`
	// Revision is the policy source's revision of the applied state and
	// EndpointRevision the endpoint view's (0 before the first apply).
	Revision         int64 `json:"revision"`
	EndpointRevision int64 `json:"endpointRevision"`
	// Applies counts successful applies of the table; LastApply is the
	// time of the last one, ApplyError why the last attempt failed (the
	// table in the kernel is then the last good one).
	Applies    uint64    `json:"applies"`
	LastApply  time.Time `json:"lastApply,omitzero"`
	ApplyError string    `json:"applyError,omitempty"`
	// Rejected lists the stored entries that failed validation, with what
	// stands in their place; Skipped the parts of valid policies the
	// compiler could not enforce (left out: enforcement only denies more).
	Rejected []PolicyRejected `json:"rejected,omitempty"`
	Skipped  []PolicySkipped  `json:"skipped,omitempty"`
}

// PolicyRejected is a stored policy or namespace entry that failed
// validation.
type PolicyRejected struct {
	Key    string `json:"key"`
	Reason string `json:"reason"`
	// Kept: its last valid version stands in its place; otherwise a
	// deny-all (policy) or the bare namespace does.
	Kept bool `json:"kept"`
}

// PolicySkipped is a part of a policy the compiler left out.
type PolicySkipped struct {
	Policy string `json:"policy"`
	Field  string `json:"field"`
	Detail string `json:"detail"`
}
