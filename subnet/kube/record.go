// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kube

import (
	"fmt"
	"net/netip"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/weftnet/weft/subnet"
)

// The WeftNode custom resource: one per node, cluster-scoped, named after
// the Node. etc/kubernetes/weft-crd.yaml defines it.
const (
	Group    = "weft.dev"
	Version  = "v1alpha1"
	Kind     = "WeftNode"
	Resource = "weftnodes"
	// CRDName is the CustomResourceDefinition's name.
	CRDName = Resource + "." + Group
)

// GVR is the WeftNode resource.
var GVR = schema.GroupVersionResource{Group: Group, Version: Version, Resource: Resource}

// WeftNode is a node's peer record.
type WeftNode struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              WeftNodeSpec `json:"spec"`
}

// WeftNodeSpec is the record's data: [subnet.Record] without the node name
// (the object's name) plus the epoch.
type WeftNodeSpec struct {
	// NodeID is the node's ID (a UUID in its state dir).
	NodeID string `json:"nodeID"`
	// Epoch is the resourceVersion the record was created with; 0 until
	// the creator wrote it.
	Epoch int64 `json:"epoch"`
	// Version is the node's data version.
	Version     uint64             `json:"version"`
	PublicIP    string             `json:"publicIP,omitempty"`
	PublicIPv6  string             `json:"publicIPv6,omitempty"`
	GossipAddr  string             `json:"gossipAddr,omitempty"`
	BackendType string             `json:"backendType,omitempty"`
	BackendData subnet.BackendData `json:"backendData,omitzero"`
}

// specOf returns the spec that holds rec (epoch left zero).
func specOf(rec subnet.Record) WeftNodeSpec {
	s := WeftNodeSpec{
		NodeID: rec.NodeID, Version: rec.Version, GossipAddr: rec.GossipAddr,
		BackendType: rec.BackendType, BackendData: rec.BackendData,
	}
	if rec.PublicIP.IsValid() {
		s.PublicIP = rec.PublicIP.String()
	}
	if rec.PublicIPv6.IsValid() {
		s.PublicIPv6 = rec.PublicIPv6.String()
	}
	return s
}

// record returns the record w holds, checked with [subnet.Record.Validate].
func (w *WeftNode) record() (subnet.Record, error) {
	s := &w.Spec
	rec := subnet.Record{
		NodeName: w.Name, NodeID: s.NodeID, Version: s.Version, GossipAddr: s.GossipAddr,
		BackendType: s.BackendType, BackendData: s.BackendData,
	}
	var err error
	if s.PublicIP != "" {
		if rec.PublicIP, err = netip.ParseAddr(s.PublicIP); err != nil {
			return rec, fmt.Errorf("spec.publicIP is not an IP address")
		}
	}
	if s.PublicIPv6 != "" {
		if rec.PublicIPv6, err = netip.ParseAddr(s.PublicIPv6); err != nil {
			return rec, fmt.Errorf("spec.publicIPv6 is not an IP address")
		}
	}
	if err := rec.Validate(); err != nil {
		return rec, fmt.Errorf("spec: %w", err)
	}
	return rec, nil
}

// owner returns the UID of the Node that owns w (empty when none does).
func (w *WeftNode) owner() types.UID {
	for _, o := range w.OwnerReferences {
		if o.APIVersion == "v1" && o.Kind == "Node" && o.Name == w.Name {
			return o.UID
		}
	}
	return ""
}

// revision returns w's resourceVersion as a number (0 when it is not
// one: the API server's are etcd revisions).
func revision(obj metav1.Object) int64 {
	n, err := strconv.ParseInt(obj.GetResourceVersion(), 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// newWeftNode returns the record object for rec, owned by node.
func newWeftNode(node *corev1.Node, rec subnet.Record) *WeftNode {
	return &WeftNode{
		TypeMeta: metav1.TypeMeta{APIVersion: Group + "/" + Version, Kind: Kind},
		ObjectMeta: metav1.ObjectMeta{
			Name:   node.Name,
			Labels: map[string]string{"app.kubernetes.io/name": "weft"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID,
			}},
		},
		Spec: specOf(rec),
	}
}

// toUnstructured converts w for the dynamic client.
func (w *WeftNode) toUnstructured() (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(w)
	if err != nil {
		return nil, fmt.Errorf("encode WeftNode %s: %w", w.Name, err)
	}
	return &unstructured.Unstructured{Object: m}, nil
}

// fromUnstructured converts what the dynamic client returns.
func fromUnstructured(u *unstructured.Unstructured) (*WeftNode, error) {
	var w WeftNode
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &w); err != nil {
		return nil, fmt.Errorf("decode WeftNode %s: %w", u.GetName(), err)
	}
	return &w, nil
}

// nodeSubnets returns the IPv4 and IPv6 subnets of a Node's podCIDRs (at
// most one of each family).
func nodeSubnets(n *corev1.Node) (v4, v6 netip.Prefix, err error) {
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	for _, s := range cidrs {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Masked() != p {
			return v4, v6, fmt.Errorf("Node %s: podCIDR %q is not a network prefix", n.Name, s)
		}
		dst := &v4
		if p.Addr().Is6() {
			dst = &v6
		}
		if dst.IsValid() {
			return v4, v6, fmt.Errorf("Node %s: podCIDRs %v name two subnets of one family", n.Name, cidrs)
		}
		*dst = p
	}
	return v4, v6, nil
}
