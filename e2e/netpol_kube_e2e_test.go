// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e && linux

package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/weftnet/weft/daemon/status"
	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/e2etest"
	"github.com/weftnet/weft/subnet"
)

// TestKubeNetworkPolicy: in Kubernetes mode weftd enforces the
// NetworkPolicies of the API server, with the pods' identities from their
// Pod objects, on every node, with real packets. Three dual-stack VXLAN
// nodes run weftd with its ServiceAccount's token; each pod is made as a
// kubelet makes it: its Pod object (labels, containers' ports,
// spec.nodeName) first, then the CNI ADD through the weft plugin, which is
// given only the pod's namespace and name (CNI_ARGS, as the kubelet gives
// them: no labels), then status.podIPs written through the status
// subresource.
//
//	node1: x/a y/d    node2: x/b (port web = 8080)    node3: x/c
//
// Every pod serves TCP on 80 and 8080. In order:
//
//  1. x/deny-ingress (all of x's pods, no ingress) is created: timed from
//     the create call to its apply on each node; every pod of x is
//     closed, on each node, also to a pod on its own bridge.
//  2. x/b-web (b admits port "web" from x's pod=a pods and from any pod
//     of namespaces labelled team=blue) and y/d-egress-web (d may send
//     to port "web" of any pod only) are created: the named port resolves
//     on b's node from b's own Pod object and on d's node from b's
//     endpoint; it cannot resolve for the pods that declare no "web"
//     (reported in /status as skipped). A Pod object on node3 claiming d's
//     addresses with the label pod=a is rejected (outside node3's
//     podCIDR): d stays denied.
//     `weftctl policy explain --kubeconfig` (ends found through the API
//     server) agrees with real probes, by pod and by address, and
//     refuses the forged Pod.
//  3. y is labelled team=blue through the API: d → b:8080 opens, timed.
//  4. x/deny-ingress is deleted: timed; c's pods open again, b stays
//     isolated by x/b-web.
func TestKubeNetworkPolicy(t *testing.T) {
	c := e2etest.NewCluster(t, e2e.Options{Nodes: 3, DualStack: true, Kube: kubeOptions(t), ResyncInterval: 2 * time.Second})
	ctx := t.Context()
	cs, _ := kubeAdminClient(t, c)
	nodes := c.Nodes()
	for _, ns := range []string{"x", "y"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// The ServiceAccount admission wants the pods' account to exist
		// (the controller that makes it does not run here).
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	specs := []kubePolicyPod{{"x", "a", nodes[0], false}, {"y", "d", nodes[0], false}, {"x", "b", nodes[1], true}, {"x", "c", nodes[2], false}}
	pods := map[string]*e2e.Pod{}
	for _, s := range specs {
		pod := kubePodObject(s.ns, s.name, s.node.Name, map[string]string{"pod": s.name}, s.web)
		created, err := cs.CoreV1().Pods(s.ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p, err := s.node.AddPodAs(ctx, subnet.PodIdentity{Namespace: s.ns, Name: s.name})
		if err != nil {
			t.Fatal(err)
		}
		pods[s.name] = p
		for _, port := range []uint16{80, 8080} {
			srv, err := e2e.ServeTCP(p.NS, netip.AddrPortFrom(netip.IPv6Unspecified(), port))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Close() })
		}
		// Before the kubelet reports the addresses, the node already
		// knows the pod's labels and ports from its Pod object.
		waitPolicyStatus(t, ctx, s.node, fmt.Sprintf("%s/%s's Pod object matched to its record", s.ns, s.name), func(p *status.Policy) bool {
			return p.LocalPodsWithoutObject == 0 && p.LocalPods == countOn(specs, s.node, s.name)
		})
		if s.name == "c" {
			// A forged Pod on node3 claiming d's addresses as x's pod=a,
			// created before c's status: once c's endpoint is known
			// everywhere, the forged one has been seen and rejected.
			forged := kubePodObject("x", "forged", nodes[2].Name, map[string]string{"pod": "a"}, false)
			forged, err := cs.CoreV1().Pods("x").Create(ctx, forged, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			setPodIPs(t, ctx, cs, forged, pods["d"])
		}
		setPodIPs(t, ctx, cs, created, p)
	}
	for _, n := range nodes {
		want := len(specs) - countOn(specs, n, "")
		waitPolicyStatus(t, ctx, n, "every other node's pod known", func(p *status.Policy) bool { return p.RemotePods == want })
	}
	time.Sleep(300 * time.Millisecond)
	for _, n := range nodes {
		st, err := n.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p := st.Policy
		if p == nil || p.Mode != "kube" || !p.Enforced || p.RemotePods != len(specs)-countOn(specs, n, "") {
			t.Fatalf("%s: /status policy %+v: want mode kube, enforced, %d remote pods (the forged one rejected)", n.Name, p, len(specs)-countOn(specs, n, ""))
		}
	}

	type probe struct {
		from, to string
		port     uint16
		allowed  bool
	}
	check := func(stage string, want []probe) {
		t.Helper()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var bad []string
		for _, v6 := range []bool{false, true} {
			for _, p := range want {
				wg.Add(1)
				go func() {
					defer wg.Done()
					timeout := 500 * time.Millisecond
					if p.allowed {
						timeout = 3 * time.Second
					}
					dst := netip.AddrPortFrom(pods[p.to].Addr(v6), p.port)
					got := e2e.TCPEcho(pods[p.from].NS, dst, []byte("weft kube policy"), timeout) == nil
					if got != p.allowed {
						mu.Lock()
						bad = append(bad, fmt.Sprintf("%s → %s:%d (ipv6 %t): reachable %t, want %t", p.from, p.to, p.port, v6, got, p.allowed))
						mu.Unlock()
					}
				}()
			}
		}
		wg.Wait()
		for _, b := range bad {
			t.Errorf("%s: %s", stage, b)
		}
	}
	check("no policy", []probe{{"a", "b", 80, true}, {"d", "a", 80, true}, {"d", "c", 80, true}, {"c", "b", 8080, true}})

	// applied makes a change through the API and waits until every node
	// has applied a state of policies policies compiled from a view of
	// the policy source after it (its revision, a per-node counter of
	// informer events, moved), and logs the delay per node.
	applied := func(what string, policies int, change func() error) {
		t.Helper()
		before := map[string]int64{}
		for _, n := range nodes {
			st, err := n.Status(ctx)
			if err != nil || st.Policy == nil {
				t.Fatalf("%s: /status: %v", n.Name, err)
			}
			before[n.Name] = st.Policy.Revision
		}
		if err := change(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		start := time.Now()
		took := make([]string, len(nodes))
		errs := make([]error, len(nodes))
		var wg sync.WaitGroup
		for i, n := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				at, err := pollPolicyStatus(ctx, n, func(p *status.Policy) bool {
					return p.Policies == policies && p.Revision > before[n.Name]
				})
				took[i], errs[i] = fmt.Sprintf("%s %.1f ms", n.Name, millis(at.Sub(start))), err
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("%s: %s: %v\n%s", what, nodes[i].Name, err, nodes[i].LogTail(30))
			}
		}
		t.Logf("%s: applied on %s after the API call returned", what, strings.Join(took, ", "))
	}
	create := func(np *networkingv1.NetworkPolicy) func() error {
		return func() error {
			_, err := cs.NetworkingV1().NetworkPolicies(np.Namespace).Create(ctx, np, metav1.CreateOptions{})
			return err
		}
	}

	// 1. Default deny ingress in x, on every node.
	applied("x/deny-ingress created", 1, create(&networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "deny-ingress"},
		Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
	}))
	check("x/deny-ingress", []probe{
		{"d", "a", 80, false}, // node1, one bridge
		{"d", "b", 80, false}, // node2
		{"d", "c", 80, false}, // node3
		{"a", "b", 8080, false},
		{"a", "d", 80, true}, // y is not selected
		{"c", "d", 8080, true},
	})

	// 2. A named port on both sides.
	tcp := corev1.ProtocolTCP
	web := intstr.FromString("web")
	applied("x/b-web created", 2, create(&networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "b-web"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "b"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{
					{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"pod": "a"}}},
					{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "blue"}}},
				},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &web}},
			}},
		},
	}))
	applied("y/d-egress-web created", 3, create(&networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "y", Name: "d-egress-web"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "d"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To:    []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &web}},
			}},
		},
	}))
	check("named port web", []probe{
		{"a", "b", 8080, true},  // web resolved on node2 from b's Pod object
		{"a", "b", 80, false},   // only web
		{"c", "b", 8080, false}, // not pod=a
		{"d", "b", 8080, false}, // y is not blue; the forged pod=a at d's address was rejected
		{"d", "a", 80, false},   // d's egress: only web
		{"a", "d", 80, true},
	})
	kubeExplainAgrees(t, c, pods, []kubeExplainCase{
		{"x/a", "x/b", "b", 8080, true, "x/b-web"},                                 // web resolved on node2
		{"x/c", "x/b", "b", 8080, false, ""},                                       // not pod=a
		{"y/d", "x/a", "a", 80, false, ""},                                         // d's egress (node1) and a's ingress
		{pods["a"].IP.String(), pods["b"].IP.String(), "b", 8080, true, "x/b-web"}, // by address: the Nodes' podCIDRs
	})
	st, err := nodes[0].Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	skipped := false
	for _, s := range st.Policy.Skipped {
		skipped = skipped || s.Policy == "y/d-egress-web" && strings.Contains(s.Detail, `"web"`)
	}
	if !skipped {
		t.Errorf("%s: /status policy.skipped %+v does not report the pods without a port web for y/d-egress-web", nodes[0].Name, st.Policy.Skipped)
	}

	// 3. A namespace label change.
	applied("namespace y labelled team=blue", 3, func() error {
		patch := []byte(`{"metadata":{"labels":{"team":"blue"}}}`)
		_, err := cs.CoreV1().Namespaces().Patch(ctx, "y", types.StrategicMergePatchType, patch, metav1.PatchOptions{})
		return err
	})
	check("y labelled team=blue", []probe{
		{"d", "b", 8080, true},  // egress web resolved on node1 from b's endpoint, ingress by y's label
		{"d", "b", 80, false},   // not web
		{"d", "c", 8080, false}, // c declares no web: d's egress cannot reach it, and c is isolated
	})

	// 4. A policy deleted.
	applied("x/deny-ingress deleted", 2, func() error {
		return cs.NetworkingV1().NetworkPolicies("x").Delete(ctx, "deny-ingress", metav1.DeleteOptions{})
	})
	check("x/deny-ingress deleted", []probe{
		{"a", "c", 80, true}, // node3: c open again
		{"b", "a", 8080, true},
		{"c", "b", 8080, false}, // b stays isolated by x/b-web
		{"a", "b", 80, false},
		{"a", "b", 8080, true},
	})
}

// kubeExplainCase is a pair `weftctl policy explain --kubeconfig` is
// asked about: from and to as given to weftctl, dst the destination pod
// probed, ingressRule the policy whose ingress rule 0 must decide when
// set.
type kubeExplainCase struct {
	from, to    string
	dst         string
	port        uint16
	allowed     bool
	ingressRule string
}

// kubeExplainAgrees asks `weftctl policy explain --kubeconfig` (ends and
// nodes found through the API server) about each case and checks that
// its verdict for each family it answers agrees with a real TCP probe
// from the source pod and with the expected one. A Pod whose addresses
// lie outside its node's podCIDRs (x/forged) is refused by name.
func kubeExplainAgrees(t *testing.T, c *e2e.Cluster, pods map[string]*e2e.Pod, cases []kubeExplainCase) {
	t.Helper()
	ctx := t.Context()
	kubeconfig := c.Kubeconfig()
	for _, tc := range cases {
		port := strconv.Itoa(int(tc.port)) + "/tcp"
		start := time.Now()
		out, err := c.Weftctl(ctx, "policy", "explain", "--kubeconfig", kubeconfig, "--from", tc.from, "--to", tc.to, "--port", port, "-o", "json")
		took := time.Since(start)
		if err != nil {
			t.Fatalf("explain --kubeconfig %s → %s: %v\n%s", tc.from, tc.to, err, out)
		}
		var res explainJSON
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("decode %q: %v", out, err)
		}
		families := 2
		if !strings.Contains(tc.from, "/") {
			families = 1 // asked by IPv4 address
		}
		if len(res.Packets) != families {
			t.Errorf("explain --kubeconfig %s → %s: %d packets, want %d", tc.from, tc.to, len(res.Packets), families)
			continue
		}
		src := pods[strings.TrimPrefix(strings.TrimPrefix(tc.from, "x/"), "y/")]
		if families == 1 {
			src = pods["a"]
		}
		for _, p := range res.Packets {
			v6 := p.Src.Is6()
			timeout := 500 * time.Millisecond
			if p.Allowed {
				timeout = 3 * time.Second
			}
			probe := e2e.TCPEcho(src.NS, netip.AddrPortFrom(pods[tc.dst].Addr(v6), tc.port), []byte("weft kube explain"), timeout) == nil
			if p.Allowed != probe || p.Allowed != tc.allowed {
				t.Errorf("explain --kubeconfig %s → %s:%d (ipv6 %t): allowed %t, the probe %t, want %t", tc.from, tc.to, tc.port, v6, p.Allowed, probe, tc.allowed)
			}
			if tc.ingressRule != "" && (p.Ingress == nil || p.Ingress.Verdict == nil || p.Ingress.Verdict.Rule == nil ||
				p.Ingress.Verdict.Rule.Policy != tc.ingressRule || p.Ingress.Verdict.Rule.Index != 0) {
				t.Errorf("explain --kubeconfig %s → %s (ipv6 %t): ingress not decided by %s rule 0: %+v", tc.from, tc.to, v6, tc.ingressRule, p.Ingress)
			}
		}
		t.Logf("explain --kubeconfig %s → %s:%d: allowed %t, answered in %.1f ms", tc.from, tc.to, tc.port, res.Packets[0].Allowed, millis(took))
	}
	out, err := c.Weftctl(ctx, "policy", "explain", "--kubeconfig", kubeconfig, "--from", "y/d", "--to", "x/a", "--port", "80")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Logf("weftctl policy explain --kubeconfig --from y/d --to x/a --port 80:\n%s", out)
	out, err = c.Weftctl(ctx, "policy", "explain", "--kubeconfig", kubeconfig, "--from", "x/forged", "--to", "x/b", "--port", "8080")
	if err == nil || !strings.Contains(out, "pod x/forged on node "+c.Nodes()[2].Name) {
		t.Errorf("explain --kubeconfig from the forged Pod: want a failure naming it and its node; got %v:\n%s", err, out)
	}
}

// kubePodObject is the Pod a kubelet would run on node: labels, one
// container (no kubelet runs it), port web = 8080 when web is set.
func kubePodObject(ns, name, node string, labels map[string]string, web bool) *corev1.Pod {
	c := corev1.Container{Name: "serve", Image: "registry.invalid/weft-test:none"}
	if web {
		c.Ports = []corev1.ContainerPort{{Name: "web", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}
	}
	f := false
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{c}, AutomountServiceAccountToken: &f},
	}
}

// setPodIPs writes p's addresses into pod's status, as the kubelet does
// after the CNI ADD.
func setPodIPs(t *testing.T, ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, p *e2e.Pod) {
	t.Helper()
	pod = pod.DeepCopy()
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIP = p.IP.String()
	pod.Status.PodIPs = []corev1.PodIP{{IP: p.IP.String()}, {IP: p.IPv6.String()}}
	if _, err := cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("status of pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
}

// kubePolicyPod is a pod of TestKubeNetworkPolicy.
type kubePolicyPod struct {
	ns, name string
	node     *e2e.Node
	web      bool // declares the container port web = 8080
}

// countOn counts the pods of specs on n up to and including the one
// called upto ("" for all of them).
func countOn(specs []kubePolicyPod, n *e2e.Node, upto string) int {
	count := 0
	for _, s := range specs {
		if s.node == n {
			count++
		}
		if s.name == upto {
			break
		}
	}
	return count
}

// waitPolicyStatus polls n's /status until ok holds for its policy
// section (see pollPolicyStatus), failing the test after 30 s.
func waitPolicyStatus(t *testing.T, ctx context.Context, n *e2e.Node, what string, ok func(*status.Policy) bool) time.Time {
	t.Helper()
	at, err := pollPolicyStatus(ctx, n, ok)
	if err != nil {
		t.Fatalf("%s: %s: %v\n%s", n.Name, what, err, n.LogTail(30))
	}
	return at
}

// pollPolicyStatus polls n's /status every 5 ms until ok holds for its
// policy section (without an apply error), and returns when it first
// did; it gives up after 30 s.
func pollPolicyStatus(ctx context.Context, n *e2e.Node, ok func(*status.Policy) bool) (time.Time, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := n.Status(ctx)
		if err == nil && st.Policy != nil && st.Policy.ApplyError == "" && ok(st.Policy) {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				return time.Time{}, fmt.Errorf("not within 30 s; /status policy: %+v", st.Policy)
			}
			return time.Time{}, fmt.Errorf("not within 30 s; /status: %w", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
