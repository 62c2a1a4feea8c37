// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2e

import (
	"net/netip"
	"time"
)

// Well-known underlay addresses of every cluster.
var (
	// EtcdIP is where etcd listens (on the underlay bridge).
	EtcdIP = netip.MustParseAddr("198.18.0.2")
	// RouterIP is the router's address on segment 0 (when it exists).
	RouterIP = netip.MustParseAddr("198.18.0.4")
	// OutsideIP and OutsideIPv6 are the outside host's addresses: a host
	// on the underlay that is not a node.
	OutsideIP   = netip.MustParseAddr("198.18.0.5")
	OutsideIPv6 = netip.MustParseAddr("2001:2::5")
)

// Underlay addressing: segment 0 is the underlay bridge, segment 1 sits
// behind the router namespace.
var (
	underlayGW     = netip.MustParseAddr("198.18.0.1")
	underlayGW6    = netip.MustParseAddr("2001:2::1")
	etcdIP6        = netip.MustParseAddr("2001:2::2")
	routerIP6      = netip.MustParseAddr("2001:2::4")
	segment1GW     = netip.MustParseAddr("198.18.1.1")
	segment1GW6    = netip.MustParseAddr("2001:2:0:1::1")
	segmentPrefix  = []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24"), netip.MustParsePrefix("198.18.1.0/24")}
	segmentPrefix6 = []netip.Prefix{netip.MustParsePrefix("2001:2::/64"), netip.MustParsePrefix("2001:2:0:1::/64")}
)

// Ports on the underlay, and the etcd key prefix.
const (
	// EtcdClientPort is etcd's client port on [EtcdIP].
	EtcdClientPort = 2379
	etcdPeerPort   = 2380
	// HTTPPort is weftd's --http-addr port on each node's underlay IP.
	HTTPPort = 9950
	// GossipPort is weftd's --gossip-bind port on each node's underlay IP.
	GossipPort = 7950
	// EtcdPrefix is the key prefix the cluster's daemons use.
	EtcdPrefix = "/weft"
)

// Default pod networks of the network config the cluster writes.
const (
	// DefaultNetwork is the IPv4 cluster network.
	DefaultNetwork = "10.244.0.0/16"
	// DefaultIPv6Network is the IPv6 cluster network (dual-stack).
	DefaultIPv6Network = "fd10:244::/56"
)

// Options describe a cluster. The zero value is a three-node IPv4 VXLAN
// cluster with no pods.
type Options struct {
	// Nodes is the number of nodes started by [New] (default 3; use
	// [Cluster.AddNode] for more later). Negative: none.
	Nodes int
	// PodsPerNode pods are attached to every initial node.
	PodsPerNode int
	// Backend is vxlan (default), host-gw or wireguard.
	Backend string
	// DualStack adds an IPv6 pod network and IPv6 underlay addresses.
	DualStack bool
	// DirectRouting sets the VXLAN DirectRouting option.
	DirectRouting bool
	// NetworkConfig, when set, is written to etcd as is instead of the
	// config built from Backend, DualStack and DirectRouting.
	NetworkConfig string
	// Segments gives the segment (0 or 1) of each initial node, by index
	// (missing: 0). Any node on segment 1 creates the router namespace.
	Segments []int
	// Router creates the router namespace and the second segment even
	// when no initial node uses it.
	Router bool
	// EtcdMembers is the size of the etcd cluster. 0 or 1: one etcd
	// process in the underlay namespace ([Cluster.Etcd]); 3 (or any
	// larger odd number): that many members, each its own process in
	// its own namespace on the underlay ([Cluster.EtcdCluster]), and
	// every weftd is given all their endpoints.
	EtcdMembers int

	// BinDir holds weftd, weftctl, weft and weft-etcd.
	BinDir string
	// Dir receives node state dirs, subnet files, logs and the etcd data
	// (default: a new temporary directory, removed by Close).
	Dir string
	// RemoveDir makes teardown remove Dir even though the caller chose it
	// (the lab's directory).
	RemoveDir bool
	// NamePrefix starts every namespace name (default "wt<random>-").
	NamePrefix string
	// DeviceSuffix is appended to VXLAN and WireGuard device names
	// (default: the random run ID). "-" keeps weftd's default VXLAN name
	// and names WireGuard devices weftlab-wg<i> (the lab's naming).
	DeviceSuffix string
	// StateFile, when set, receives the cluster's [State] after every
	// step, so that a half-built cluster can still be torn down.
	StateFile string

	// ResyncInterval is passed to weftd (0: weftd's default).
	ResyncInterval time.Duration
	// WeftdArgs are extra weftd flags for every node.
	WeftdArgs []string
	// NoDaemons builds the topology and etcd but starts no weftd; pods
	// are then attached by the harness itself with static subnets.
	NoDaemons bool
	// HarnessPods attaches pods without the CNI plugin (bridge, veth and
	// addresses made by the harness from the node's subnet file).
	HarnessPods bool

	// Kube, when set, runs the cluster in Kubernetes mode: a real
	// kube-apiserver and kube-controller-manager in the underlay namespace
	// (on the cluster's etcd), weft's manifests applied, a Node per node
	// (podCIDRs assigned by the controller-manager) and weftd started with
	// --kube-subnet-mgr instead of reading etcd.
	Kube *KubeOptions

	// Logf receives progress lines (may be nil).
	Logf func(format string, args ...any)
}

// KubeOptions configure Kubernetes mode (Options.Kube).
type KubeOptions struct {
	// Tools is the directory holding kube-apiserver,
	// kube-controller-manager and kubectl (`make kube-tools`).
	Tools string
	// Manifests are applied with kubectl, in order, before any node
	// starts: weft's CRD, RBAC and guard (etc/kubernetes).
	Manifests []Manifest
	// Audit makes the API server log every request but the admin's (so
	// weftd's) once, when received, in kube/audit.log (see
	// [Cluster.KubeAuditLog]): the benchmarks count weftd's requests.
	Audit bool
}

// Manifest is one file of Kubernetes objects.
type Manifest struct {
	// Name names it in messages (its file name).
	Name string
	Data []byte
}

// Kubernetes-mode addresses: the API server listens on [EtcdIP] (the
// underlay namespace), port KubeAPIServerPort; the controller-manager
// assigns podCIDRs from the network config's networks.
const (
	// KubeAPIServerPort is the API server's https port.
	KubeAPIServerPort = 6443
	// KubeServiceCIDR is the service IP range.
	KubeServiceCIDR = "10.96.0.0/16"
	// KubeNamespace holds weft's ServiceAccount, ConfigMap and the
	// stand-in pods whose bound tokens weftd uses.
	KubeNamespace = "weft-system"
)
