// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package policy_test

// An oracle for NetworkPolicy, written from the API documentation
// (https://kubernetes.io/docs/concepts/services-networking/network-policies/
// and the networking.k8s.io/v1 field docs), sharing no code with the
// compiler: it answers "is this connection allowed?" directly from the
// objects, with its own selector matching, defaulting and port resolution.

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weftnet/weft/daemon/policy"
)

// oracle is a cluster as the oracle sees it.
type oracle struct {
	policies   []*networkingv1.NetworkPolicy
	pods       []policy.Pod
	namespaces map[string]map[string]string
}

// endpoint is one end of a connection: a pod, or just an address.
type endpoint struct {
	pod  *policy.Pod
	addr netip.Addr
}

// labelsMatch: "the requirements are ANDed"; matchLabels entries are
// equality requirements; an empty selector selects everything.
func labelsMatch(sel *metav1.LabelSelector, labels map[string]string) bool {
	for k, v := range sel.MatchLabels {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	for _, e := range sel.MatchExpressions {
		got, present := labels[e.Key]
		listed := false
		for _, v := range e.Values {
			if present && v == got {
				listed = true
			}
		}
		switch e.Operator {
		case metav1.LabelSelectorOpIn:
			if !listed {
				return false
			}
		case metav1.LabelSelectorOpNotIn:
			if listed {
				return false
			}
		case metav1.LabelSelectorOpExists:
			if !present {
				return false
			}
		case metav1.LabelSelectorOpDoesNotExist:
			if present {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func (o *oracle) nsLabels(ns string) map[string]string {
	m := map[string]string{}
	for k, v := range o.namespaces[ns] {
		m[k] = v
	}
	m["kubernetes.io/metadata.name"] = ns
	return m
}

// affects: the policy applies to pod in direction dir ("Ingress" or
// "Egress"). policyTypes defaults to Ingress, plus Egress if there are
// egress rules.
func affects(np *networkingv1.NetworkPolicy, pod *policy.Pod, dir networkingv1.PolicyType) bool {
	if np.Namespace != pod.Namespace || !labelsMatch(&np.Spec.PodSelector, pod.Labels) {
		return false
	}
	types := np.Spec.PolicyTypes
	if len(types) == 0 {
		types = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if len(np.Spec.Egress) > 0 {
			types = append(types, networkingv1.PolicyTypeEgress)
		}
	}
	for _, t := range types {
		if t == dir {
			return true
		}
	}
	return false
}

// peerMatches: an ipBlock matches addresses in cidr but not in except; a
// podSelector alone selects pods in the policy's namespace; a
// namespaceSelector alone all pods of the namespaces it selects; both, the
// pods the podSelector selects in those namespaces.
func (o *oracle) peerMatches(np *networkingv1.NetworkPolicy, peer networkingv1.NetworkPolicyPeer, other endpoint) bool {
	if peer.IPBlock != nil {
		cidr := netip.MustParsePrefix(peer.IPBlock.CIDR).Masked()
		if !cidr.Contains(other.addr) {
			return false
		}
		for _, e := range peer.IPBlock.Except {
			if netip.MustParsePrefix(e).Masked().Contains(other.addr) {
				return false
			}
		}
		return true
	}
	if other.pod == nil {
		return false
	}
	if peer.NamespaceSelector == nil {
		if other.pod.Namespace != np.Namespace {
			return false
		}
	} else if !labelsMatch(peer.NamespaceSelector, o.nsLabels(other.pod.Namespace)) {
		return false
	}
	return peer.PodSelector == nil || labelsMatch(peer.PodSelector, other.pod.Labels)
}

// portMatches: no ports means all; protocol defaults to TCP; a named port
// is the destination pod's container port of that name and protocol.
func portMatches(ports []networkingv1.NetworkPolicyPort, dst endpoint, proto corev1.Protocol, port int32) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		want := corev1.ProtocolTCP
		if p.Protocol != nil {
			want = *p.Protocol
		}
		if want != proto {
			continue
		}
		if p.Port == nil {
			return true
		}
		if p.Port.Type == intstr.String {
			if dst.pod == nil {
				continue
			}
			for _, cp := range dst.pod.Ports {
				cpProto := cp.Protocol
				if cpProto == "" {
					cpProto = corev1.ProtocolTCP
				}
				if cp.Name == p.Port.StrVal && cpProto == proto && int32(cp.Port) == port {
					return true
				}
			}
			continue
		}
		end := p.Port.IntVal
		if p.EndPort != nil {
			end = *p.EndPort
		}
		if port >= p.Port.IntVal && port <= end {
			return true
		}
	}
	return false
}

// allowed: traffic from src to dst passes when src's egress and dst's
// ingress both allow it. A pod that no policy affects in a direction is
// not isolated in it; an isolated pod accepts what any rule of any policy
// affecting it allows (the union).
func (o *oracle) allowed(src, dst endpoint, proto corev1.Protocol, port int32) bool {
	return o.direction(src, dst, networkingv1.PolicyTypeEgress, proto, port) &&
		o.direction(dst, src, networkingv1.PolicyTypeIngress, proto, port)
}

func (o *oracle) direction(self, other endpoint, dir networkingv1.PolicyType, proto corev1.Protocol, port int32) bool {
	if self.pod == nil {
		return true
	}
	isolated := false
	dst := self
	if dir == networkingv1.PolicyTypeEgress {
		dst = other
	}
	for _, np := range o.policies {
		if !affects(np, self.pod, dir) {
			continue
		}
		isolated = true
		type rule struct {
			peers []networkingv1.NetworkPolicyPeer
			ports []networkingv1.NetworkPolicyPort
		}
		var rules []rule
		if dir == networkingv1.PolicyTypeIngress {
			for _, r := range np.Spec.Ingress {
				rules = append(rules, rule{r.From, r.Ports})
			}
		} else {
			for _, r := range np.Spec.Egress {
				rules = append(rules, rule{r.To, r.Ports})
			}
		}
		for _, r := range rules {
			peerOK := len(r.peers) == 0
			for _, p := range r.peers {
				if o.peerMatches(np, p, other) {
					peerOK = true
				}
			}
			if peerOK && portMatches(r.ports, dst, proto, port) {
				return true
			}
		}
	}
	return !isolated
}
