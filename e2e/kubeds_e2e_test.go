// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e && linux

package e2e_test

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/e2etest"
	"github.com/weftnet/weft/e2e/kubetest"
	weftkube "github.com/weftnet/weft/etc/kubernetes"
	subnetkube "github.com/weftnet/weft/subnet/kube"
)

// kubeManifests are etc/kubernetes's Kubernetes-mode files, in the order
// docs/kubernetes.md applies them: those weftd needs before it starts,
// then the DaemonSet.
var kubeManifests = append(slices.Clone(weftkube.ModeManifests), "weft-kube.yaml")

// TestKubeDaemonSet applies every manifest of etc/kubernetes to a real
// kube-apiserver with server-side apply (weft.yaml, the etcd-mode
// alternative with the same object names, as a server-side dry run), then
// runs weftd on two nodes as weft-kube.yaml's DaemonSet would: with its
// container's environment and args (Kubernetes mode comes from there) and
// a token of the ServiceAccount weftd bound to a pod made from the
// DaemonSet's template and scheduled to its node, so only the project's
// RBAC (and the guard) stand between weftd and the API. A verb the
// ClusterRole lacks keeps weftd from being ready. The same tokens cannot
// read Secrets (the gossip key's included: the kubelet mounts it), other
// ConfigMaps, or write Nodes' spec; node2's token cannot change or delete
// node1's WeftNode (weft-guard.yaml).
//
//	underlay br0 198.18.0.0/24: kube-apiserver + controller-manager on .2
//	  ├── node1 .11: weftd (pod-bound token of pod weft-node1), 1 pod
//	  └── node2 .12: weftd (pod-bound token of pod weft-node2), 1 pod
func TestKubeDaemonSet(t *testing.T) {
	c := e2etest.NewCluster(t, e2e.Options{Nodes: 2, NoDaemons: true})
	kc := kubetest.Start(t, kubetest.Options{
		NetNS: c.Underlay.Name, Addr: e2e.EtcdIP, ControllerManager: true,
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix(e2e.DefaultNetwork)},
	})
	t.Cleanup(func() {
		for _, n := range c.Nodes() {
			if err := n.Stop(); err != nil {
				t.Logf("stop weftd on %s: %v", n.Name, err)
			}
		}
	})
	cs := kc.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	args := []string{"apply", "--server-side"}
	for _, f := range kubeManifests {
		args = append(args, "-f", filepath.Join("..", "etc", "kubernetes", f))
	}
	if out, err := kc.Kubectl(ctx, args...); err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	} else {
		t.Logf("kubectl apply --server-side:\n%s", out)
	}
	if out, err := kc.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "crd/"+subnetkube.CRDName); err != nil {
		t.Fatalf("wait for the CRD: %v\n%s", err, out)
	}
	if out, err := kc.Kubectl(ctx, "apply", "--server-side", "--dry-run=server", "-f", filepath.Join("..", "etc", "kubernetes", "weft.yaml")); err != nil {
		t.Errorf("weft.yaml, server-side dry run: %v\n%s", err, out)
	}

	// The operator's part: the gossip key's Secret.
	gossipKey := newGossipKey(t)
	if _, err := cs.CoreV1().Secrets("weft-system").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "weft-gossip-key", Namespace: "weft-system"},
		Data:       map[string][]byte{"gossip.key": []byte(gossipKey + "\n")},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	nodes := c.Nodes()
	tokens := map[string]*rest.Config{}
	for _, n := range nodes {
		if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create Node %s: %v", n.Name, err)
		}
		pod, tok := daemonSetPodToken(t, ctx, cs, n.Name)
		tokens[n.Name] = &rest.Config{Host: kc.URL, BearerToken: tok, TLSClientConfig: rest.TLSClientConfig{CAData: kc.CAPEM}, Dial: kc.DialContext}
		writeGossipKeyFile(t, n, gossipKey)
		// weftd's container as the DaemonSet configures it: its
		// environment (downward API resolved for this node) and args;
		// the harness's flags (node name, paths, addresses) and the
		// files a kubelet would mount (token, gossip key) come on top.
		c := pod.Spec.Containers[slices.IndexFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == "weftd" })]
		n.Env = containerEnv(t, c, n)
		n.ExtraArgs = append(slices.Clone(c.Args), "--kubeconfig", tokenKubeconfig(t, kc, n.Name, tok), "--gossip-key-file", gossipKeyFile(n))
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		if err := n.WaitReady(ctx, 90*time.Second); err != nil {
			t.Fatalf("weftd with its pod-bound token: %v\n%s", err, n.LogTail(20))
		}
		checkSubnetIsPodCIDR(t, ctx, cs, n)
		checkNetworkAvailable(t, ctx, cs, n)
	}
	var pods []*e2e.Pod
	for _, n := range nodes {
		p, err := n.AddPod(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, p)
	}
	for _, pp := range [][2]*e2e.Pod{{pods[0], pods[1]}, {pods[1], pods[0]}} {
		if err := e2e.Eventually(20*time.Second, 100*time.Millisecond, func() error {
			_, err := e2e.Ping(pp[0].NS, pp[1].IP, time.Second)
			return err
		}); err != nil {
			t.Errorf("pod %s → pod %s: %v", pp[0].Name, pp[1].Name, err)
		}
	}
	for _, n := range nodes {
		if log := n.LogTail(400); strings.Contains(log, "forbidden") {
			t.Errorf("%s: weftd's log has a forbidden request:\n%s", n.Name, log)
		}
	}

	t.Run("token-denied", func(t *testing.T) {
		n1 := nodes[0]
		tcs, err := kubernetes.NewForConfig(tokens[n1.Name])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().ConfigMaps("weft-system").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "not-weft", Namespace: "weft-system"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// The token works: its own config is readable.
		if _, err := tcs.CoreV1().ConfigMaps("weft-system").Get(ctx, "weft-config", metav1.GetOptions{}); err != nil {
			t.Fatalf("%s's token cannot read weft-config: %v", n1.Name, err)
		}
		checks := map[string]error{}
		_, checks["get Secret weft-system/weft-gossip-key"] = tcs.CoreV1().Secrets("weft-system").Get(ctx, "weft-gossip-key", metav1.GetOptions{})
		_, checks["list Secrets in weft-system"] = tcs.CoreV1().Secrets("weft-system").List(ctx, metav1.ListOptions{})
		_, checks["list Secrets everywhere"] = tcs.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
		_, checks["get ConfigMap weft-system/not-weft"] = tcs.CoreV1().ConfigMaps("weft-system").Get(ctx, "not-weft", metav1.GetOptions{})
		_, checks["patch a Node's spec"] = tcs.CoreV1().Nodes().Patch(ctx, n1.Name, types.MergePatchType, []byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{})
		_, checks["patch another Node's spec"] = tcs.CoreV1().Nodes().Patch(ctx, nodes[1].Name, types.MergePatchType, []byte(`{"spec":{"podCIDRs":null}}`), metav1.PatchOptions{})
		checks["delete a Node"] = tcs.CoreV1().Nodes().Delete(ctx, nodes[1].Name, metav1.DeleteOptions{})
		_, checks["create a Node"] = tcs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "rogue"}}, metav1.CreateOptions{})
		_, checks["create a Pod"] = tcs.CoreV1().Pods("weft-system").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "rogue"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "x"}}}}, metav1.CreateOptions{})
		for what, err := range checks {
			if !apierrors.IsForbidden(err) {
				t.Errorf("%s's pod-bound token: %s = %v, want Forbidden", n1.Name, what, err)
			}
		}
	})

	t.Run("own-record-only", func(t *testing.T) {
		n1, n2 := nodes[0], nodes[1]
		dyn, err := dynamic.NewForConfig(tokens[n2.Name])
		if err != nil {
			t.Fatal(err)
		}
		recs := dyn.Resource(subnetkube.GVR)
		before, err := recs.Get(ctx, n1.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("%s's token cannot read %s's WeftNode: %v", n2.Name, n1.Name, err)
		}
		// A change of the record's spec (its public IP) by node2, refused by
		// the guard.
		hijack := before.DeepCopy()
		if err := unstructuredSet(hijack.Object, "198.18.0.66", "spec", "publicIP"); err != nil {
			t.Fatal(err)
		}
		_, err = recs.Update(ctx, hijack, metav1.UpdateOptions{})
		if err == nil || !strings.Contains(err.Error(), "WeftNode of the node its pod runs on") {
			t.Errorf("%s's update of %s's WeftNode = %v, want the guard's refusal", n2.Name, n1.Name, err)
		}
		if err := recs.Delete(ctx, n1.Name, metav1.DeleteOptions{}); err == nil || !strings.Contains(err.Error(), "WeftNode of the node its pod runs on") {
			t.Errorf("%s's delete of %s's WeftNode = %v, want the guard's refusal", n2.Name, n1.Name, err)
		}
		after, err := recs.Get(ctx, n1.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if after.GetUID() != before.GetUID() || after.GetResourceVersion() != before.GetResourceVersion() {
			t.Errorf("%s's WeftNode changed after node2's refused writes: uid %s→%s, resourceVersion %s→%s",
				n1.Name, before.GetUID(), after.GetUID(), before.GetResourceVersion(), after.GetResourceVersion())
		}
		// node2's weftd wrote its own record with the same kind of token.
		own, err := recs.Get(ctx, n2.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if m := own.GetManagedFields(); len(m) == 0 {
			t.Errorf("%s's WeftNode has no managed fields", n2.Name)
		}
	})
}

// daemonSetPodToken creates a pod from weft-kube.yaml's DaemonSet
// template on node (as the DaemonSet controller and the scheduler would;
// no kubelet runs it) and returns it with the token the kubelet would
// project into it: a TokenRequest for its ServiceAccount, bound to the
// pod, with the projected volume's expiry and audience.
func daemonSetPodToken(t *testing.T, ctx context.Context, cs kubernetes.Interface, node string) (*corev1.Pod, string) {
	t.Helper()
	ds, err := cs.AppsV1().DaemonSets("weft-system").Get(ctx, "weft", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "weft-" + node, Namespace: "weft-system", Labels: ds.Spec.Template.Labels},
		Spec:       *ds.Spec.Template.Spec.DeepCopy(),
	}
	pod.Spec.NodeName = node
	pod, err = cs.CoreV1().Pods("weft-system").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create a pod of DaemonSet weft on %s: %v", node, err)
	}
	var src *corev1.ServiceAccountTokenProjection
	for _, v := range pod.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, p := range v.Projected.Sources {
			if p.ServiceAccountToken != nil {
				src = p.ServiceAccountToken
			}
		}
	}
	if src == nil {
		t.Fatalf("DaemonSet weft's pod template projects no ServiceAccount token")
	}
	spec := authenticationv1.TokenRequestSpec{
		ExpirationSeconds: src.ExpirationSeconds,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}
	if src.Audience != "" {
		spec.Audiences = []string{src.Audience}
	}
	tok, err := cs.CoreV1().ServiceAccounts("weft-system").CreateToken(ctx, pod.Spec.ServiceAccountName, &authenticationv1.TokenRequest{Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for ServiceAccount %s bound to pod %s: %v", pod.Spec.ServiceAccountName, pod.Name, err)
	}
	return pod, tok.Status.Token
}

// containerEnv resolves a container's environment as the kubelet would on
// node n: plain values, and the downward API's spec.nodeName and
// status.hostIP. Any other source fails the test.
func containerEnv(t *testing.T, c corev1.Container, n *e2e.Node) []string {
	t.Helper()
	var env []string
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil {
			switch f := e.ValueFrom.FieldRef; {
			case f != nil && f.FieldPath == "spec.nodeName":
				v = n.Name
			case f != nil && f.FieldPath == "status.hostIP":
				v = n.IP.String()
			default:
				t.Fatalf("container %s: variable %s: a source this test does not resolve", c.Name, e.Name)
			}
		}
		env = append(env, e.Name+"="+v)
	}
	return env
}

// tokenKubeconfig writes a kubeconfig for the API server with token and
// returns its path.
func tokenKubeconfig(t *testing.T, kc *kubetest.Cluster, name, token string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: kc.URL, CertificateAuthorityData: kc.CAPEM}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: name}
	cfg.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), name+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// unstructuredSet sets obj's nested string field.
func unstructuredSet(obj map[string]any, value string, fields ...string) error {
	m := obj
	for _, f := range fields[:len(fields)-1] {
		next, ok := m[f].(map[string]any)
		if !ok {
			return fmt.Errorf("no map at %s", f)
		}
		m = next
	}
	m[fields[len(fields)-1]] = value
	return nil
}
