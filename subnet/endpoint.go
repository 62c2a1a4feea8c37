// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package subnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/weftnet/weft/subnet/k8sname"
)

// Bounds of a pod's identity, checked wherever one is read (the CNI
// call, a pod record, the store).
const (
	// MaxLabels is the most labels one pod may carry.
	MaxLabels = 64
	// MaxLabelBytes bounds the sum of the lengths of a pod's label keys
	// and values.
	MaxLabelBytes = 8 << 10
	// MaxNodeEndpoints is the most endpoints one node publishes: a node
	// with more pods publishes the first MaxNodeEndpoints (by key) and
	// reports the rest as not published.
	MaxNodeEndpoints = 1024
)

// PodIdentity is who a pod is, as the runtime says in the CNI call
// (K8S_POD_NAMESPACE and K8S_POD_NAME in CNI_ARGS, labels in the network
// config's args.cni.labels). A zero PodIdentity is a pod the runtime did
// not name.
type PodIdentity struct {
	Namespace string            `json:"namespace,omitempty"`
	Name      string            `json:"name,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// IsZero reports whether p names no pod.
func (p PodIdentity) IsZero() bool {
	return p.Namespace == "" && p.Name == "" && len(p.Labels) == 0
}

// Validate checks p as the Kubernetes API server checks a pod's
// namespace, name and labels, within weft's bounds ([MaxLabels],
// [MaxLabelBytes]). A zero PodIdentity is valid; labels without a name are
// not.
func (p PodIdentity) Validate() error {
	if p.IsZero() {
		return nil
	}
	if p.Namespace == "" || p.Name == "" {
		return fmt.Errorf("pod namespace %q and name %q: both or neither must be given", p.Namespace, p.Name)
	}
	if err := ValidateNamespace(p.Namespace); err != nil {
		return err
	}
	if err := ValidatePodName(p.Name); err != nil {
		return err
	}
	return ValidateLabels(p.Labels)
}

// ValidateNamespace checks a namespace name: an RFC 1123 label.
func ValidateNamespace(s string) error {
	if msg := k8sname.DNSLabel(s); msg != "" {
		return fmt.Errorf("namespace %q: %s", clip(s), msg)
	}
	return nil
}

// ValidatePodName checks a pod name: an RFC 1123 subdomain.
func ValidatePodName(s string) error {
	if msg := k8sname.DNSSubdomain(s); msg != "" {
		return fmt.Errorf("pod name %q: %s", clip(s), msg)
	}
	return nil
}

// ValidateLabels checks each key and value as Kubernetes does, and the
// count and size against [MaxLabels] and [MaxLabelBytes].
func ValidateLabels(m map[string]string) error {
	if len(m) > MaxLabels {
		return fmt.Errorf("%d labels: at most %d are allowed", len(m), MaxLabels)
	}
	size := 0
	keys := make([]string, 0, len(m))
	for k, v := range m {
		size += len(k) + len(v)
		keys = append(keys, k)
	}
	if size > MaxLabelBytes {
		return fmt.Errorf("labels total %d bytes: at most %d are allowed", size, MaxLabelBytes)
	}
	sort.Strings(keys) // the first bad label in a stable order
	for _, k := range keys {
		if err := ValidateLabel(k, m[k]); err != nil {
			return err
		}
	}
	return nil
}

// ValidateLabel checks one label: the key a qualified name (an optional
// RFC 1123 subdomain prefix and "/", then a name of at most 63
// characters), the value empty or a name of at most 63 characters.
func ValidateLabel(key, value string) error {
	if msg := k8sname.QualifiedName(key); msg != "" {
		return fmt.Errorf("label key %q: %s", clip(key), msg)
	}
	if msg := k8sname.LabelValue(value); msg != "" {
		return fmt.Errorf("label %q value %q: %s", key, clip(value), msg)
	}
	return nil
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// Endpoint is one pod as the node hosting it publishes it: its identity
// and addresses.
type Endpoint struct {
	// Node is the publishing node's name.
	Node string `json:"node"`
	// Key names the endpoint among its node's (the pod's bridge port): an
	// RFC 1123 label.
	Key string `json:"key"`
	PodIdentity
	// IPv4 and IPv6 are the pod's addresses (at least one).
	IPv4 netip.Addr `json:"ipv4,omitzero"`
	IPv6 netip.Addr `json:"ipv6,omitzero"`
	// Ports are the pod's named container ports, which a policy's named
	// port resolves against: nil when the source does not know them (etcd
	// mode: a CNI call carries none, and they are never stored), non-nil
	// (possibly empty) when it does (Kubernetes mode: the Pod's
	// spec.containers[].ports with a name).
	Ports []ContainerPort `json:"-"`
}

// ContainerPort is a port a pod's container declares under a name.
type ContainerPort struct {
	// Name is an IANA service name (at most 15 characters).
	Name string
	// Protocol is TCP, UDP or SCTP.
	Protocol string
	// Port is the container's port number (not zero).
	Port uint16
}

// MaxEndpointPorts bounds the named ports of one endpoint.
const MaxEndpointPorts = 256

// Validate checks e's own fields: a named pod, valid identity, unicast
// addresses of the right family.
func (e Endpoint) Validate() error {
	if err := e.ValidateIdentity(); err != nil {
		return err
	}
	if !e.IPv4.IsValid() && !e.IPv6.IsValid() {
		return errors.New("endpoint without an address")
	}
	if e.IPv4.IsValid() && (!e.IPv4.Is4() || !e.IPv4.IsGlobalUnicast()) {
		return fmt.Errorf("ipv4 %s is not a unicast IPv4 address", e.IPv4)
	}
	if e.IPv6.IsValid() && (!e.IPv6.Is6() || e.IPv6.Is4In6() || e.IPv6.Zone() != "" || !e.IPv6.IsGlobalUnicast()) {
		return fmt.Errorf("ipv6 %s is not a unicast IPv6 address", e.IPv6)
	}
	return nil
}

// ValidateIdentity checks the fields of e other than its addresses: node,
// key, a named pod with a valid identity, and its ports.
func (e Endpoint) ValidateIdentity() error {
	if e.Node == "" || e.Key == "" {
		return errors.New("endpoint without node or key")
	}
	if k8sname.DNSLabel(e.Key) != "" {
		return fmt.Errorf("endpoint key %q is not an RFC 1123 label", clip(e.Key))
	}
	if e.PodIdentity.Namespace == "" {
		return errors.New("endpoint without a pod namespace and name")
	}
	if err := e.PodIdentity.Validate(); err != nil {
		return err
	}
	if len(e.Ports) > MaxEndpointPorts {
		return fmt.Errorf("%d named ports: at most %d are allowed", len(e.Ports), MaxEndpointPorts)
	}
	for _, p := range e.Ports {
		if err := p.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Validate checks p as the Kubernetes API server checks a named container
// port: an IANA service name, a protocol of TCP, UDP or SCTP, a port
// number.
func (p ContainerPort) Validate() error {
	if msgs := k8sname.PortName(p.Name); len(msgs) > 0 {
		return fmt.Errorf("container port name %q: %s", clip(p.Name), strings.Join(msgs, "; "))
	}
	switch p.Protocol {
	case "TCP", "UDP", "SCTP":
	default:
		return fmt.Errorf("container port %q: protocol %q is not TCP, UDP or SCTP", p.Name, clip(p.Protocol))
	}
	if p.Port == 0 {
		return fmt.Errorf("container port %q: port number 0", p.Name)
	}
	return nil
}

// CheckEndpoint checks e against the leases of view: a valid endpoint
// whose addresses lie in the subnets leased to its node. It returns why
// not, or nil. This is what keeps a node from publishing another node's
// pod addresses as its own. It reads every lease: to check many endpoints
// against one set of leases, index them once ([IndexLeases]).
func CheckEndpoint(e Endpoint, leases []Lease) error {
	if err := e.Validate(); err != nil {
		return err
	}
	var held nodeSubnets
	for i := range leases {
		if leases[i].Record.NodeName == e.Node {
			held.add(&leases[i])
		}
	}
	return held.check(e)
}

// LeaseIndex is the subnets each node holds, by node name, as
// [CheckEndpoint] reads them from a set of leases.
type LeaseIndex map[string]*nodeSubnets

// nodeSubnets are the subnets of one node's leases (a node holds one lease,
// but a view may show more while one replaces another).
type nodeSubnets struct{ v4, v6 []netip.Prefix }

func (n *nodeSubnets) add(l *Lease) {
	if l.Subnet.IsValid() {
		n.v4 = append(n.v4, l.Subnet)
	}
	if l.IPv6Subnet.IsValid() {
		n.v6 = append(n.v6, l.IPv6Subnet)
	}
}

// IndexLeases indexes leases by node name.
func IndexLeases(leases []Lease) LeaseIndex {
	x := make(LeaseIndex, len(leases))
	for i := range leases {
		l := &leases[i]
		n := x[l.Record.NodeName]
		if n == nil {
			n = &nodeSubnets{}
			x[l.Record.NodeName] = n
		}
		n.add(l)
	}
	return x
}

// CheckEndpoint is [CheckEndpoint] against the indexed leases.
func (x LeaseIndex) CheckEndpoint(e Endpoint) error {
	if err := e.Validate(); err != nil {
		return err
	}
	return x.CheckHeld(e)
}

// CheckHeld is [LeaseIndex.CheckEndpoint] for an endpoint that passed
// [Endpoint.Validate] already (when it was parsed, say): it checks only
// that e's node holds e's addresses.
func (x LeaseIndex) CheckHeld(e Endpoint) error {
	var held nodeSubnets
	if n := x[e.Node]; n != nil {
		held = *n
	}
	return held.check(e)
}

// check checks a valid endpoint's addresses against its node's subnets.
func (n nodeSubnets) check(e Endpoint) error {
	if len(n.v4)+len(n.v6) == 0 {
		return fmt.Errorf("node %q holds no lease", e.Node)
	}
	in := func(a netip.Addr, ps []netip.Prefix) bool {
		for _, p := range ps {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	if e.IPv4.IsValid() && !in(e.IPv4, n.v4) {
		return fmt.Errorf("ipv4 %s is outside node %q's leased subnet %v", e.IPv4, e.Node, n.v4)
	}
	if e.IPv6.IsValid() && !in(e.IPv6, n.v6) {
		return fmt.Errorf("ipv6 %s is outside node %q's leased subnet %v", e.IPv6, e.Node, n.v6)
	}
	return nil
}

// EndpointView is a consistent picture of the published endpoints.
type EndpointView struct {
	// Endpoints are the endpoints that passed [CheckEndpoint], sorted by
	// node and key.
	Endpoints []Endpoint
	// Revision is the store revision the view reflects (zero when the
	// store does not say).
	Revision int64
	// Rejected lists the stored endpoints left out, and why, sorted by
	// key (for etcd, the key below <prefix>/endpoints/: node/key).
	Rejected []RejectedLease
	// Unaddressed are pods the source knows apart from their addresses
	// and that are not among Endpoints: scheduled Pods whose addresses
	// the kubelet has not reported yet, or whose addresses were rejected.
	// They have Node, Key, identity and Ports, no address, and passed
	// [Endpoint.ValidateIdentity]; sorted by node and key. A node takes
	// the labels and ports of its own pods from here (or from Endpoints),
	// their addresses from its pod records. Only the Kubernetes source
	// fills it.
	Unaddressed []Endpoint
}

// EndpointSource serves the pod endpoints the nodes publish. Its methods
// are safe for concurrent use.
type EndpointSource interface {
	// ListEndpoints returns every published endpoint, each checked
	// against the leases read at the same revision.
	ListEndpoints(ctx context.Context) (EndpointView, error)
	// WatchEndpoints calls fn with a complete view after the initial list
	// and after every change of an endpoint or a lease, until ctx is
	// done; then it returns nil. Missed changes are recovered by listing
	// again. Calls to fn never run concurrently.
	WatchEndpoints(ctx context.Context, fn func(EndpointView)) error
}

// EndpointPublisher keeps a node's own endpoints in the store. Its
// methods are safe for concurrent use and idempotent.
type EndpointPublisher interface {
	// PublishEndpoints makes the node's stored endpoints exactly eps
	// (each with Node set to the node of l), bound to l's life in the
	// store: they vanish when the lease expires. It returns how many
	// endpoints it wrote and deleted.
	PublishEndpoints(ctx context.Context, l *Lease, eps []Endpoint) (put, deleted int, err error)
}
