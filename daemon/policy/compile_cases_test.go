// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package policy_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weftnet/weft/daemon/policy"
)

func manyPods(n int) []policy.Pod {
	var pods []policy.Pod
	for i := 0; i < n; i++ {
		pods = append(pods, policy.Pod{
			Namespace: fmt.Sprintf("ns%d", i%10), Name: fmt.Sprintf("pod%d", i), Node: "n1",
			Labels: map[string]string{"app": fmt.Sprintf("app%d", i%20)},
			IPs:    []netip.Addr{netip.AddrFrom4([4]byte{10, 244, byte(i / 250), byte(i%250 + 2)})},
		})
	}
	return pods
}

func manyPolicies(n int) []*networkingv1.NetworkPolicy {
	var out []*networkingv1.NetworkPolicy
	port := intstr.FromInt32(80)
	for i := 0; i < n; i++ {
		out = append(out, &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("ns%d", i%10), Name: fmt.Sprintf("p%d", i)},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app%d", i%20)}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}},
					Ports: []networkingv1.NetworkPolicyPort{{Port: &port}},
				}},
			},
		})
	}
	return out
}

// The rule count depends on the policies, not on the pods.
func TestRuleCountIndependentOfPods(t *testing.T) {
	pols := manyPolicies(100)
	small := policy.Compile(policy.Input{Node: "n1", Policies: pols, Pods: manyPods(40)})
	big := policy.Compile(policy.Input{Node: "n1", Policies: pols, Pods: manyPods(1000)})
	if len(small.Ingress) != len(big.Ingress) || len(big.Ingress) > 100 {
		t.Fatalf("ingress rules: %d with 40 pods, %d with 1000 pods; want equal and at most one per policy rule", len(small.Ingress), len(big.Ingress))
	}
	n := 0
	for _, s := range big.Sets {
		n += len(s.Addrs)
	}
	if n < 1000 {
		t.Fatalf("sets hold %d addresses, want the pods there", n)
	}
}

func TestNamedPortUnresolvableIsReportedAndSkipped(t *testing.T) {
	web := intstr.FromString("web")
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "named"},
		Spec: networkingv1.NetworkPolicySpec{
			Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &web}}}},
		},
	}
	a := netip.MustParseAddr("10.244.0.2")
	b := netip.MustParseAddr("10.244.0.3")
	c := netip.MustParseAddr("10.244.0.4")
	pods := []policy.Pod{
		{Namespace: "x", Name: "declared", Node: "n1", IPs: []netip.Addr{a}, Ports: []policy.NamedPort{{Name: "web", Protocol: corev1.ProtocolTCP, Port: 8080}}},
		{Namespace: "x", Name: "unknown", Node: "n1", IPs: []netip.Addr{b}},
		{Namespace: "x", Name: "undeclared", Node: "n1", IPs: []netip.Addr{c}, Ports: []policy.NamedPort{{Name: "other", Port: 8080}}},
	}
	st := policy.Compile(policy.Input{Node: "n1", Policies: []*networkingv1.NetworkPolicy{np}, Pods: pods})
	if len(st.Problems) != 1 || st.Problems[0].Field != "spec.ingress[0].ports[0]" ||
		!strings.Contains(st.Problems[0].Detail, "x/unknown (ports unknown)") || !strings.Contains(st.Problems[0].Detail, "x/undeclared (not declared)") {
		t.Fatalf("problems = %+v, want one naming both pods", st.Problems)
	}
	src := netip.MustParseAddr("198.18.0.9")
	for _, tc := range []struct {
		dst  netip.Addr
		port uint16
		want bool
	}{{a, 8080, true}, {a, 80, false}, {b, 8080, false}, {c, 8080, false}} {
		if got := st.Evaluate(policy.Packet{Src: src, Dst: tc.dst, Proto: 6, DstPort: tc.port}).Allowed; got != tc.want {
			t.Errorf("to %s:%d allowed = %v, want %v", tc.dst, tc.port, got, tc.want)
		}
	}
}

func TestInvalidPolicyDeniesAll(t *testing.T) {
	bad := intstr.FromInt32(0)
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "bad"},
		Spec: networkingv1.NetworkPolicySpec{
			Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &bad}}}},
		},
	}
	a := netip.MustParseAddr("10.244.0.2")
	st := policy.Compile(policy.Input{Node: "n1", Policies: []*networkingv1.NetworkPolicy{np}, Pods: []policy.Pod{{Namespace: "x", Name: "a", Node: "n1", IPs: []netip.Addr{a}}}})
	if len(st.Problems) != 1 {
		t.Fatalf("problems = %+v, want the invalid policy reported", st.Problems)
	}
	if d := st.Evaluate(policy.Packet{Src: netip.MustParseAddr("10.244.0.9"), Dst: a, Proto: 6, DstPort: 80}); d.Allowed || d.DroppedBy != "ingress" {
		t.Fatalf("decision = %+v, want dropped at ingress", d)
	}
}

// A rule without ports allows every protocol (ICMP too); one with ports
// only those.
func TestPortlessRuleAllowsEveryProtocol(t *testing.T) {
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "all"},
		Spec:       networkingv1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyIngressRule{{}}},
	}
	a := netip.MustParseAddr("fd10:244::2")
	st := policy.Compile(policy.Input{Node: "n1", Policies: []*networkingv1.NetworkPolicy{np}, Pods: []policy.Pod{{Namespace: "x", Name: "a", Node: "n1", IPs: []netip.Addr{a}}}})
	if d := st.Evaluate(policy.Packet{Src: netip.MustParseAddr("2001:2::1"), Dst: a, Proto: 58}); !d.Allowed || d.Ingress == "" {
		t.Fatalf("ICMPv6 decision = %+v, want allowed by a rule", d)
	}
}

// TestSamePeersPerNamespace: two policies in two namespaces name the same
// peers, a pod selector without a namespace selector (pods of the
// policy's own namespace) and a namespace selector (pods of every
// namespace it selects). The compiler selects peers once per distinct
// peer list: the first must still resolve in each policy's namespace,
// the second be shared.
func TestSamePeersPerNamespace(t *testing.T) {
	pod := func(ns, name string, ip string, node string) policy.Pod {
		return policy.Pod{Namespace: ns, Name: name, Node: node, Labels: map[string]string{"app": "x"}, IPs: []netip.Addr{netip.MustParseAddr(ip)}}
	}
	pods := []policy.Pod{
		pod("a", "local-a", "10.244.1.2", "n1"), pod("b", "local-b", "10.244.1.3", "n1"),
		pod("a", "peer-a", "10.244.2.2", "n2"), pod("b", "peer-b", "10.244.2.3", "n2"),
	}
	mk := func(ns, name string, peer networkingv1.NetworkPolicyPeer) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}},
				Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{peer}}},
			},
		}
	}
	own := networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}}
	all := networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: own.PodSelector}
	st := policy.Compile(policy.Input{Node: "n1", Pods: pods, Policies: []*networkingv1.NetworkPolicy{
		mk("a", "own", own), mk("b", "own", own), mk("a", "all", all), mk("b", "all", all),
	}})
	sets := map[string][]netip.Addr{}
	for _, s := range st.Sets {
		sets[s.Name] = s.Addrs
	}
	peersOf := map[string]string{}
	for _, r := range st.Ingress {
		if r.Peer != "" {
			peersOf[strings.Fields(r.ID)[0]] = fmt.Sprint(sets[r.Peer])
		}
	}
	want := map[string]string{
		"a/all": "[10.244.1.2 10.244.1.3 10.244.2.2 10.244.2.3]",
		"a/own": "[10.244.1.2 10.244.2.2]",
		"b/all": "[10.244.1.2 10.244.1.3 10.244.2.2 10.244.2.3]",
		"b/own": "[10.244.1.3 10.244.2.3]",
	}
	if fmt.Sprint(peersOf) != fmt.Sprint(want) {
		t.Errorf("peer sets by policy:\n got %v\nwant %v", peersOf, want)
	}
}

// BenchmarkCompileScale compiles one node's state with 100 policies that
// allow every namespace, over the pods of 5000 nodes of 30 (150 000),
// beside 1000 pods and beside no policy, in the same run.
// TestBenchPolicyCompileScale (make bench) prints the figures.
func BenchmarkCompileScale(b *testing.B) {
	for _, n := range []int{1000, 150000} {
		pods := scalePods(n)
		for _, np := range []int{0, 100} {
			pols := manyPolicies(np)
			b.Run(fmt.Sprintf("pods=%d/policies=%d", n, np), func(b *testing.B) {
				for b.Loop() {
					policy.Compile(policy.Input{Node: "n1", Policies: pols, Pods: pods})
				}
			})
		}
	}
}

// scalePods are n pods, 30 a node (n0, n1, ...), in 10 namespaces, each
// labelled app=app<i%20>.
func scalePods(n int) []policy.Pod {
	pods := make([]policy.Pod, n)
	for i := range pods {
		pods[i] = policy.Pod{Namespace: fmt.Sprintf("ns%d", i%10), Name: fmt.Sprintf("pod%d", i), Node: fmt.Sprintf("n%d", i/30),
			Labels: map[string]string{"app": fmt.Sprintf("app%d", i%20)},
			IPs:    []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})}}
	}
	return pods
}
