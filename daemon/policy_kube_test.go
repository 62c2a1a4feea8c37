// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weftnet/weft/cni/antispoof"
	"github.com/weftnet/weft/daemon/policy"
	"github.com/weftnet/weft/subnet"
)

// TestCompileInputPodObjects: in Kubernetes mode a local pod record keeps
// its addresses and takes its labels and named ports from this node's Pod
// object of the same namespace and name (addressed or not yet), never
// another node's, and a named port then resolves; remote endpoints carry
// their ports. In etcd mode the records' identities stand as they are and
// ports stay unknown.
func TestCompileInputPodObjects(t *testing.T) {
	addr := netip.MustParseAddr
	web := []subnet.ContainerPort{{Name: "web", Protocol: "TCP", Port: 8080}}
	in := &policyInputs{
		pols: &subnet.PolicyView{Policies: []*networkingv1.NetworkPolicy{namedPortPolicy()}},
		eps: &subnet.EndpointView{
			Endpoints: []subnet.Endpoint{
				// b's Pod status claims another address: the record wins.
				{Node: "n1", Key: "uid-b", PodIdentity: subnet.PodIdentity{Namespace: "x", Name: "b", Labels: map[string]string{"pod": "b"}},
					IPv4: addr("10.244.1.99"), Ports: web},
				{Node: "n2", Key: "uid-r", PodIdentity: subnet.PodIdentity{Namespace: "x", Name: "r", Labels: map[string]string{"pod": "r"}},
					IPv4: addr("10.244.2.5"), Ports: web},
			},
			Unaddressed: []subnet.Endpoint{
				{Node: "n1", Key: "uid-a", PodIdentity: subnet.PodIdentity{Namespace: "x", Name: "a", Labels: map[string]string{"pod": "a"}}, Ports: []subnet.ContainerPort{}},
				// Same name on another node: not this node's pod.
				{Node: "n2", Key: "uid-c", PodIdentity: subnet.PodIdentity{Namespace: "x", Name: "c", Labels: map[string]string{"pod": "stolen"}}, Ports: web},
			},
		},
		local: []antispoof.Record{
			{Port: "weft00000001", IPv4: addr("10.244.1.2"), Pod: subnet.PodIdentity{Namespace: "x", Name: "a"}},
			{Port: "weft00000002", IPv4: addr("10.244.1.3"), Pod: subnet.PodIdentity{Namespace: "x", Name: "b"}},
			{Port: "weft00000003", IPv4: addr("10.244.1.4"), Pod: subnet.PodIdentity{Namespace: "x", Name: "c", Labels: map[string]string{"from": "cni"}}},
		},
	}
	pods := func(d *daemon) map[string]policy.Pod {
		pi, local, remote := d.compileInput(in)
		if local != 3 || remote != 1 {
			t.Errorf("local %d, remote %d pods; want 3 and 1", local, remote)
		}
		m := map[string]policy.Pod{}
		for _, p := range pi.Pods {
			m[p.Name] = p
		}
		return m
	}

	kube := &daemon{nodeName: "n1"}
	kube.pol.podObjects = true
	got := pods(kube)
	wantPorts := []policy.NamedPort{{Name: "web", Protocol: corev1.ProtocolTCP, Port: 8080}}
	for _, c := range []struct {
		name, label string
		ip          netip.Addr
		ports       []policy.NamedPort
	}{
		{"a", "a", addr("10.244.1.2"), []policy.NamedPort{}},
		{"b", "b", addr("10.244.1.3"), wantPorts},
		{"c", "", addr("10.244.1.4"), nil},
		{"r", "r", addr("10.244.2.5"), wantPorts},
	} {
		p := got[c.name]
		if p.Labels["pod"] != c.label || !slices.Equal(p.IPs, []netip.Addr{c.ip}) || !slices.Equal(p.Ports, c.ports) || (p.Ports == nil) != (c.ports == nil) {
			t.Errorf("kube mode: pod %s = %+v; want label pod=%q, address %s, ports %+v", c.name, p, c.label, c.ip, c.ports)
		}
	}
	if got["c"].Labels["from"] != "cni" {
		t.Errorf("kube mode: pod c without a Pod object on n1 has labels %v, want the record's", got["c"].Labels)
	}
	if n := kube.podsWithoutObject(in); n != 1 {
		t.Errorf("kube mode: %d pods without object, want 1 (c)", n)
	}
	// The named port resolves for b (ingress on a local pod): a rule
	// for web=8080, nothing skipped.
	pi, _, _ := kube.compileInput(in)
	st := policy.Compile(pi)
	if len(st.Problems) != 0 || !slices.ContainsFunc(st.Ingress, func(r policy.Rule) bool { return strings.Contains(r.ID, "web=8080") }) {
		t.Errorf("kube mode: b's named port: problems %+v, ingress rules %+v; want a rule for web=8080", st.Problems, st.Ingress)
	}

	etcd := &daemon{nodeName: "n1"}
	got = pods(etcd)
	if got["b"].Labels != nil || got["b"].Ports != nil || got["a"].Labels != nil || got["c"].Labels["from"] != "cni" {
		t.Errorf("etcd mode: local pods %+v, want the records' identities alone", got)
	}
	if n := etcd.podsWithoutObject(in); n != 0 {
		t.Errorf("etcd mode: %d pods without object, want 0", n)
	}
}

// namedPortPolicy selects pod=b in x and admits port "web" from anyone.
func namedPortPolicy() *networkingv1.NetworkPolicy {
	web := intstr.FromString("web")
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "b-web"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "b"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &web}}}},
		},
	}
}
