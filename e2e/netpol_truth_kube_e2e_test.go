// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e && linux

package e2e_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/weftnet/weft/daemon/policy"
	"github.com/weftnet/weft/daemon/status"
	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/e2etest"
	"github.com/weftnet/weft/subnet"
)

// TestNetworkPolicyTruthTableKube runs upstream tests of the truth table
// (the cases and expected matrices of TestNetworkPolicyTruthTable) on the
// real Kubernetes-mode path: a 3-node dual-stack VXLAN cluster of weftd
// with a real kube-apiserver, the 9 pods placed as in the etcd-mode test
// and made as a kubelet makes them (Pod object with upstream's labels and
// named container ports serve-80-tcp ... serve-81-sctp, then the CNI ADD
// with only namespace and name, then status.podIPs through the status
// subresource). Policies are created, updated and deleted, namespace and
// pod labels changed, all through the API server; every node's weftd
// enforces them and the whole 9×9 matrix is probed.
//
// It runs every upstream test of the etcd-mode run, the 5 that run leaves
// to the engine driver included (the 3 named-port tests and the 2
// "updated pod" tests): here all go through the real path.
func TestNetworkPolicyTruthTableKube(t *testing.T) {
	start := time.Now()
	c := e2etest.NewCluster(t, e2e.Options{Nodes: 3, DualStack: true, Kube: kubeOptions(t)})
	ctx := t.Context()
	cs, _ := kubeAdminClient(t, c)
	nodes := c.Nodes()
	for _, n := range nodes {
		if err := n.WaitReady(ctx, 60*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	clusterUp := time.Since(start)
	d := &kubeTruthDriver{cs: cs, nodes: nodes, pols: map[string]*networkingv1.NetworkPolicy{},
		podLabels: map[string]map[string]string{}, nsLabels: map[string]map[string]string{}, local: map[string]int{}, remoteExtra: map[string]int{}}
	for _, ns := range []string{"x", "y", "z", kubeTruthSyncNS} {
		labels := map[string]string{"ns": ns}
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		d.nsLabels[ns] = labels
		// The ServiceAccount admission wants the pods' account to exist
		// (the controller that makes it does not run here).
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	w := &npWorld{c: c, pods: map[string]*e2e.Pod{}, sinks: map[string]*sctpSink{}}
	for i, id := range netpolPods {
		// The placement of TestNetworkPolicyTruthTable.
		n := nodes[(i/3+i%3)%3]
		ns, name, _ := strings.Cut(id, "/")
		labels := map[string]string{"pod": name}
		obj, err := cs.CoreV1().Pods(ns).Create(ctx, upstreamPodObject(ns, name, n.Name, labels), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p, err := n.AddPodAs(ctx, subnet.PodIdentity{Namespace: ns, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if !p.IP.IsValid() || !p.IPv6.IsValid() {
			t.Fatalf("pod %s on %s is not dual-stack: %v %v", id, n.Name, p.IP, p.IPv6)
		}
		setPodIPs(t, ctx, cs, obj, p)
		d.podLabels[id] = labels
		d.local[n.Name]++
		w.serve(t, id, p)
		t.Logf("%s is %s on %s (%s, %s)", id, p.Name, n.Name, p.IP, p.IPv6)
	}
	d.world = w
	setup := time.Since(start)
	// Every node knows all 9 pods, its own with their Pod objects.
	d.waitPods(t)
	if skipped := d.enforced(t, 0); len(skipped) > 0 {
		t.Fatalf("no policy, yet parts skipped: %v", skipped)
	}
	for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP} {
		for _, v6 := range []bool{false, true} {
			w.validate(t, "no policy", npCheck{proto, 80, newReach(true)}, v6)
		}
	}

	run := upstreamCases(w)
	engine := 0
	for _, tc := range run {
		if tc.engine != "" {
			engine++
		}
	}
	for _, tc := range run {
		w.runCase(t, tc, "", d.apply)
	}
	slices.Sort(d.took)
	if n := len(d.took); n > 0 {
		t.Logf("API call returned → every node enforcing it, %d changes: median %.1f ms, max %.1f ms", n, millis(d.took[n/2]), millis(d.took[n-1]))
	}
	t.Logf("%d upstream tests through the API server (%d the etcd-mode run leaves to the engine driver); binaries and cluster %v, 9 pods %v, whole test %v",
		len(run), engine, clusterUp.Round(time.Second), (setup - clusterUp).Round(100*time.Millisecond), time.Since(start).Round(time.Second))
}

// kubeTruthSyncNS holds the marker Pods of [kubeTruthDriver.syncPods].
const kubeTruthSyncNS = "weft-sync"

// upstreamPodObject is the Pod of upstream's truth table a kubelet would
// run on node: its labels and one container declaring upstream's ports,
// serve-80-tcp ... serve-81-sctp (no kubelet runs it).
func upstreamPodObject(ns, name, node string, labels map[string]string) *corev1.Pod {
	pod := kubePodObject(ns, name, node, labels, false)
	for _, p := range upstreamPorts() {
		pod.Spec.Containers[0].Ports = append(pod.Spec.Containers[0].Ports, corev1.ContainerPort{Name: p.Name, ContainerPort: int32(p.Port), Protocol: p.Protocol})
	}
	return pod
}

// kubeTruthDriver puts the stages of the truth table in force through the
// API server and waits until every node's weftd enforces them.
type kubeTruthDriver struct {
	cs    kubernetes.Interface
	nodes []*e2e.Node
	world *npWorld
	// pols, podLabels and nsLabels are what the API server holds.
	pols      map[string]*networkingv1.NetworkPolicy
	podLabels map[string]map[string]string
	nsLabels  map[string]map[string]string
	// local counts each node's pods of the 9; remoteExtra the marker
	// Pods each node knows as remote endpoints.
	local       map[string]int
	remoteExtra map[string]int
	markers     int
	// took is, per change, the time from the API call returning to
	// every node having applied a view holding it.
	took []time.Duration
}

// apply makes the API server hold exactly the stage's policies, pod and
// namespace labels (upstream's defaults plus the stage's), one change at
// a time, each waited for on every node; it returns the policies whose
// parts a node reported as not enforced.
func (d *kubeTruthDriver) apply(t *testing.T, st npStage) []string {
	t.Helper()
	ctx := t.Context()
	want := map[string]*networkingv1.NetworkPolicy{}
	for _, p := range st.pols {
		want[p.Namespace+"/"+p.Name] = p
	}
	for _, k := range slices.Sorted(maps.Keys(d.pols)) {
		if _, ok := want[k]; !ok {
			ns, name, _ := strings.Cut(k, "/")
			d.policyChange(t, "delete "+k, func() error {
				return d.cs.NetworkingV1().NetworkPolicies(ns).Delete(ctx, name, metav1.DeleteOptions{})
			})
			delete(d.pols, k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		p := want[k]
		cur, ok := d.pols[k]
		switch {
		case !ok:
			d.policyChange(t, "create "+k, func() error {
				_, err := d.cs.NetworkingV1().NetworkPolicies(p.Namespace).Create(ctx, p.DeepCopy(), metav1.CreateOptions{})
				return err
			})
		case !equality.Semantic.DeepEqual(cur.Spec, p.Spec):
			d.policyChange(t, "update "+k, func() error {
				obj, err := d.cs.NetworkingV1().NetworkPolicies(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				obj.Spec = *p.Spec.DeepCopy()
				_, err = d.cs.NetworkingV1().NetworkPolicies(p.Namespace).Update(ctx, obj, metav1.UpdateOptions{})
				return err
			})
		}
		d.pols[k] = p
	}
	l := d.world.labels(st.podLabels, st.nsLabels)
	for _, ns := range []string{"x", "y", "z"} {
		labels := maps.Clone(l.namespaces[ns])
		delete(labels, policy.NamespaceNameLabel) // the API server's own
		if maps.Equal(labels, d.nsLabels[ns]) {
			continue
		}
		d.policyChange(t, "label namespace "+ns, func() error {
			_, err := d.cs.CoreV1().Namespaces().Patch(ctx, ns, types.JSONPatchType, labelsPatch(t, labels), metav1.PatchOptions{})
			return err
		})
		d.nsLabels[ns] = labels
	}
	relabelled := false
	for _, id := range netpolPods {
		if maps.Equal(l.pods[id], d.podLabels[id]) {
			continue
		}
		ns, name, _ := strings.Cut(id, "/")
		if _, err := d.cs.CoreV1().Pods(ns).Patch(ctx, name, types.JSONPatchType, labelsPatch(t, l.pods[id]), metav1.PatchOptions{}); err != nil {
			t.Fatalf("label pod %s: %v", id, err)
		}
		d.podLabels[id] = l.pods[id]
		relabelled = true
	}
	if relabelled {
		d.syncPods(t)
	}
	return d.enforced(t, len(want))
}

// labelsPatch is a JSON patch making labels the object's labels.
func labelsPatch(t *testing.T, labels map[string]string) []byte {
	t.Helper()
	b, err := json.Marshal([]map[string]any{{"op": "replace", "path": "/metadata/labels", "value": labels}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// policyChange makes one change of a NetworkPolicy or Namespace and waits
// until every node has applied a view of the policy source after it: one
// change is one informer event, which moves the source's revision.
func (d *kubeTruthDriver) policyChange(t *testing.T, what string, change func() error) {
	t.Helper()
	before := make([]int64, len(d.nodes))
	for i, n := range d.nodes {
		st, err := n.Status(t.Context())
		if err != nil || st.Policy == nil {
			t.Fatalf("%s: /status: %v", n.Name, err)
		}
		before[i] = st.Policy.Revision
	}
	if err := change(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	start := time.Now()
	for i, n := range d.nodes {
		waitPolicyStatus(t, t.Context(), n, what, func(p *status.Policy) bool { return p.Revision > before[i] })
	}
	d.took = append(d.took, time.Since(start))
}

// syncPods waits until every node has applied a view of the Pods holding
// every change made before it. /status tells no Pod's labels, so it adds
// two marker Pods (one on node1's, one on node2's podCIDR, at addresses
// no pod has, with upstream's ports so no named port goes unresolved):
// each node reads all Pods through one watch, in order, so once its
// remote pod count holds the markers of the other nodes, its view holds
// the changes made before them.
func (d *kubeTruthDriver) syncPods(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	start := time.Now()
	for _, n := range d.nodes[:2] {
		// The address .250 (…::fa) of a pod's subnet on n: CNI gives
		// 3 pods per node the lowest addresses.
		var on *e2e.Pod
		for _, p := range d.world.pods {
			if p.Node == n {
				on = p
				break
			}
		}
		v4, v6 := on.IP.As4(), on.IPv6.As16()
		v4[3], v6[15] = 250, 0xfa
		d.markers++
		name := fmt.Sprintf("marker-%d", d.markers)
		obj, err := d.cs.CoreV1().Pods(kubeTruthSyncNS).Create(ctx, upstreamPodObject(kubeTruthSyncNS, name, n.Name, map[string]string{"marker": name}), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		setPodIPs(t, ctx, d.cs, obj, &e2e.Pod{IP: netip.AddrFrom4(v4), IPv6: netip.AddrFrom16(v6)})
		for _, other := range d.nodes {
			if other != n {
				d.remoteExtra[other.Name]++
			}
		}
	}
	d.waitPods(t)
	d.took = append(d.took, time.Since(start))
}

// waitPods waits until every node knows its own pods with their Pod
// objects and every remote pod, markers included.
func (d *kubeTruthDriver) waitPods(t *testing.T) {
	t.Helper()
	for _, n := range d.nodes {
		local, remote := d.local[n.Name], len(netpolPods)-d.local[n.Name]+d.remoteExtra[n.Name]
		waitPolicyStatus(t, t.Context(), n, fmt.Sprintf("%d local pods with their objects, %d remote", local, remote), func(p *status.Policy) bool {
			return p.LocalPods == local && p.LocalPodsWithoutObject == 0 && p.RemotePods == remote
		})
	}
}

// enforced checks that every node enforces a state of policies policies
// and all pods, and returns the policies whose parts a node reported as
// not enforced.
func (d *kubeTruthDriver) enforced(t *testing.T, policies int) []string {
	t.Helper()
	var skipped []string
	for _, n := range d.nodes {
		var got *status.Policy
		waitPolicyStatus(t, t.Context(), n, fmt.Sprintf("%d policies applied", policies), func(p *status.Policy) bool {
			got = p
			return p.Applies > 0 && p.Policies == policies && p.LocalPods == d.local[n.Name]
		})
		if got.Mode != "kube" || !got.Enforced {
			t.Fatalf("%s: /status policy %+v: want mode kube, enforced", n.Name, got)
		}
		if len(got.Rejected) > 0 {
			t.Fatalf("%s rejected objects the API server accepted: %+v", n.Name, got.Rejected)
		}
		for _, s := range got.Skipped {
			skipped = append(skipped, s.Policy)
		}
	}
	return skipped
}
