// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package policy_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weftnet/weft/daemon/policy"
)

// gen makes random clusters and policies from a small vocabulary, so that
// selectors, ipBlocks and ports often hit and often miss.
type gen struct{ r *rand.Rand }

var (
	genNamespaces = []string{"x", "y", "z"}
	genPods       = []string{"a", "b", "c"}
	genNodes      = []string{"n1", "n2"}
	genKeys       = []string{"pod", "tier", "env"}
	genValues     = []string{"a", "b", "c", "web"}
	genProtos     = []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}
)

func (g gen) pick(s []string) string { return s[g.r.IntN(len(s))] }

func (g gen) labels() map[string]string {
	m := map[string]string{}
	for _, k := range genKeys {
		if g.r.IntN(2) == 0 {
			m[k] = g.pick(genValues)
		}
	}
	return m
}

// cluster: 9 pods (3 per namespace) over two nodes, dual-stack, with
// random labels and named ports (some pods' ports unknown).
func (g gen) cluster() ([]policy.Pod, []policy.Namespace) {
	var pods []policy.Pod
	var nss []policy.Namespace
	n := 0
	for _, ns := range genNamespaces {
		nss = append(nss, policy.Namespace{Name: ns, Labels: g.labels()})
		for _, name := range genPods {
			n++
			l := g.labels()
			l["pod"] = name
			p := policy.Pod{
				Namespace: ns, Name: name, Labels: l, Node: g.pick(genNodes),
				IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 244, byte(n % 2), byte(10 + n)}), netip.MustParseAddr(fmt.Sprintf("fd10:244::%x", 16+n))},
			}
			switch g.r.IntN(4) {
			case 0: // ports unknown
			case 1:
				p.Ports = []policy.NamedPort{}
			default:
				// Names are unique within a pod, as Kubernetes requires;
				// a name may point at either port.
				used := map[string]bool{}
				for _, port := range []uint16{80, 81} {
					name := fmt.Sprintf("serve-%d", g.r.IntN(2)+80)
					if g.r.IntN(3) > 0 && !used[name] {
						used[name] = true
						p.Ports = append(p.Ports, policy.NamedPort{Name: name, Protocol: genProtos[g.r.IntN(3)], Port: port})
					}
				}
			}
			pods = append(pods, p)
		}
	}
	return pods, nss
}

func (g gen) selector() *metav1.LabelSelector {
	s := &metav1.LabelSelector{}
	switch g.r.IntN(4) {
	case 0: // empty: everything
	case 1:
		s.MatchLabels = map[string]string{g.pick(genKeys): g.pick(genValues)}
	default:
		for i := 0; i < 1+g.r.IntN(2); i++ {
			e := metav1.LabelSelectorRequirement{Key: g.pick(genKeys)}
			switch g.r.IntN(4) {
			case 0:
				e.Operator, e.Values = metav1.LabelSelectorOpIn, []string{g.pick(genValues), g.pick(genValues)}
			case 1:
				e.Operator, e.Values = metav1.LabelSelectorOpNotIn, []string{g.pick(genValues)}
			case 2:
				e.Operator = metav1.LabelSelectorOpExists
			default:
				e.Operator = metav1.LabelSelectorOpDoesNotExist
			}
			s.MatchExpressions = append(s.MatchExpressions, e)
		}
	}
	return s
}

func (g gen) nsSelector() *metav1.LabelSelector {
	if g.r.IntN(3) == 0 {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": g.pick(genNamespaces)}}
	}
	return g.selector()
}

func (g gen) peer() networkingv1.NetworkPolicyPeer {
	switch g.r.IntN(5) {
	case 0:
		return networkingv1.NetworkPolicyPeer{PodSelector: g.selector()}
	case 1:
		return networkingv1.NetworkPolicyPeer{NamespaceSelector: g.nsSelector()}
	case 2:
		return networkingv1.NetworkPolicyPeer{PodSelector: g.selector(), NamespaceSelector: g.nsSelector()}
	case 3:
		b := &networkingv1.IPBlock{CIDR: "10.244.0.0/16"}
		switch g.r.IntN(3) {
		case 0:
			b.Except = []string{"10.244.1.0/24"}
		case 1:
			b.CIDR, b.Except = "10.244.0.0/24", []string{fmt.Sprintf("10.244.0.%d/31", 10+2*g.r.IntN(5))}
		}
		return networkingv1.NetworkPolicyPeer{IPBlock: b}
	default:
		b := &networkingv1.IPBlock{CIDR: "fd10:244::/64"}
		if g.r.IntN(2) == 0 {
			b.Except = []string{fmt.Sprintf("fd10:244::%x/127", 16+2*g.r.IntN(5))}
		}
		return networkingv1.NetworkPolicyPeer{IPBlock: b}
	}
}

func (g gen) ports() []networkingv1.NetworkPolicyPort {
	var out []networkingv1.NetworkPolicyPort
	for i := g.r.IntN(3); i > 0; i-- {
		var p networkingv1.NetworkPolicyPort
		if g.r.IntN(3) > 0 {
			proto := genProtos[g.r.IntN(3)]
			p.Protocol = &proto
		}
		switch g.r.IntN(5) {
		case 0: // every port of the protocol
		case 1:
			v := intstr.FromString(fmt.Sprintf("serve-%d", 80+g.r.IntN(2)))
			p.Port = &v
		case 2:
			v, end := intstr.FromInt32(80), int32(81)
			p.Port, p.EndPort = &v, &end
		default:
			v := intstr.FromInt32(int32(80 + g.r.IntN(2)))
			p.Port = &v
		}
		out = append(out, p)
	}
	return out
}

func (g gen) peers() []networkingv1.NetworkPolicyPeer {
	var out []networkingv1.NetworkPolicyPeer
	for i := g.r.IntN(3); i > 0; i-- {
		out = append(out, g.peer())
	}
	return out
}

func (g gen) policy(i int) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: g.pick(genNamespaces), Name: fmt.Sprintf("p%d", i)}}
	np.Spec.PodSelector = *g.selector()
	switch g.r.IntN(4) {
	case 1:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	case 2:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	case 3:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	}
	for j := g.r.IntN(3); j > 0; j-- {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: g.peers(), Ports: g.ports()})
	}
	for j := g.r.IntN(3); j > 0; j-- {
		np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: g.peers(), Ports: g.ports()})
	}
	return np
}

// verdict evaluates a connection against the compiled states of the nodes
// it crosses: the source's node (egress) and the destination's (ingress).
func verdict(states map[string]*policy.State, src, dst endpoint, proto uint8, port uint16) bool {
	p := policy.Packet{Src: src.addr, Dst: dst.addr, Proto: proto, DstPort: port}
	nodes := map[string]bool{}
	for _, e := range []endpoint{src, dst} {
		if e.pod != nil {
			nodes[e.pod.Node] = true
		}
	}
	for n := range nodes {
		if !states[n].Evaluate(p).Allowed {
			return false
		}
	}
	return true
}

var protoNumbers = map[corev1.Protocol]uint8{corev1.ProtocolTCP: 6, corev1.ProtocolUDP: 17, corev1.ProtocolSCTP: 132}

// TestCompilerAgainstOracle compiles random clusters with random
// policies for each node and checks, for every pair of endpoints (pods
// and outside addresses, both families), protocol and port, that the
// compiled state decides as the oracle does.
func TestCompilerAgainstOracle(t *testing.T) {
	seeds := 300
	if testing.Short() {
		seeds = 60
	}
	outside := []netip.Addr{netip.MustParseAddr("10.244.0.200"), netip.MustParseAddr("198.18.5.5"), netip.MustParseAddr("fd10:244::ff"), netip.MustParseAddr("2001:2::9")}
	checked, allowed := 0, 0
	for seed := 0; seed < seeds; seed++ {
		g := gen{rand.New(rand.NewPCG(uint64(seed), 14))}
		pods, nss := g.cluster()
		var pols []*networkingv1.NetworkPolicy
		for i := 1 + g.r.IntN(4); i > 0; i-- {
			np := g.policy(i)
			if errs := policy.Validate(np); errs != nil {
				t.Fatalf("seed %d: generated an invalid policy: %v", seed, errs)
			}
			pols = append(pols, np)
		}
		o := &oracle{policies: pols, pods: pods, namespaces: map[string]map[string]string{}}
		for _, ns := range nss {
			o.namespaces[ns.Name] = ns.Labels
		}
		states := map[string]*policy.State{}
		for _, n := range genNodes {
			states[n] = policy.Compile(policy.Input{Node: n, Policies: pols, Pods: pods, Namespaces: nss})
		}
		var ends []endpoint
		for i := range pods {
			for _, a := range pods[i].IPs {
				ends = append(ends, endpoint{pod: &pods[i], addr: a})
			}
		}
		for _, a := range outside {
			ends = append(ends, endpoint{addr: a})
		}
		for _, src := range ends {
			for _, dst := range ends {
				if src.addr.Is4() != dst.addr.Is4() || src.addr == dst.addr || (src.pod == nil && dst.pod == nil) {
					continue
				}
				for proto, num := range protoNumbers {
					for _, port := range []uint16{80, 81} {
						want := o.allowed(src, dst, proto, int32(port))
						got := verdict(states, src, dst, num, port)
						checked++
						if want {
							allowed++
						}
						if got != want {
							t.Fatalf("seed %d: %s -> %s %s/%d: compiled state says %v, oracle %v\npolicies:\n%s", seed, describe(src), describe(dst), proto, port, got, want, dump(pols))
						}
					}
				}
			}
		}
	}
	t.Logf("%d connections checked, %d allowed", checked, allowed)
	if allowed == 0 || allowed == checked {
		t.Fatalf("generated cases are degenerate: %d of %d allowed", allowed, checked)
	}
}

func describe(e endpoint) string {
	if e.pod == nil {
		return e.addr.String()
	}
	return fmt.Sprintf("%s/%s[%s %v ports=%v node=%s]", e.pod.Namespace, e.pod.Name, e.addr, e.pod.Labels, e.pod.Ports, e.pod.Node)
}

func dump(pols []*networkingv1.NetworkPolicy) string {
	var b strings.Builder
	for _, p := range pols {
		fmt.Fprintf(&b, "%s/%s %+v\n", p.Namespace, p.Name, p.Spec)
	}
	return b.String()
}
