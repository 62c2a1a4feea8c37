// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package policy

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// NamespaceNameLabel is the label Kubernetes puts on every namespace with
// the namespace's name; the compiler adds it whether or not the source did.
const NamespaceNameLabel = "kubernetes.io/metadata.name"

// Input is everything the compiler needs for one node.
type Input struct {
	// Node is the node whose state is compiled: ingress rules are made
	// for its pods as destinations, egress rules for its pods as sources.
	Node string
	// Policies are the cluster's NetworkPolicy objects.
	Policies []*networkingv1.NetworkPolicy
	// Pods are the cluster's pods on the pod network (host-network pods
	// are left out: their addresses are the nodes').
	Pods []Pod
	// Namespaces are the known namespaces; a pod's namespace that is not
	// listed has only the implicit [NamespaceNameLabel].
	Namespaces []Namespace
}

// Pod is what the compiler knows of one pod.
type Pod struct {
	Namespace, Name string
	Labels          map[string]string
	// IPs are the pod's addresses (at most one per family is usual).
	IPs []netip.Addr
	// Node is the node hosting the pod.
	Node string
	// Ports are the named container ports; nil when they are unknown (a
	// CNI call carries none), in which case a named port in a policy
	// cannot be resolved for this pod.
	Ports []NamedPort
}

// NamedPort is one named container port.
type NamedPort struct {
	Name     string
	Protocol corev1.Protocol // "" means TCP
	Port     uint16
}

// Namespace is a namespace and its labels.
type Namespace struct {
	Name   string
	Labels map[string]string
}

// Protocol numbers used in [Rule] and [Packet].
const (
	ProtoTCP  uint8 = 6
	ProtoUDP  uint8 = 17
	ProtoSCTP uint8 = 132
)

// protoNumber maps a Kubernetes protocol to its IP protocol number ("" is
// TCP, as the API defaults it); 0 for an unknown protocol.
func protoNumber(p corev1.Protocol) uint8 {
	switch p {
	case "", corev1.ProtocolTCP:
		return ProtoTCP
	case corev1.ProtocolUDP:
		return ProtoUDP
	case corev1.ProtocolSCTP:
		return ProtoSCTP
	}
	return 0
}
