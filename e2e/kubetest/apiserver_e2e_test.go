// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e

package kubetest_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/weftnet/weft/e2e/kubetest"
)

var (
	clusterV4 = netip.MustParsePrefix("10.244.0.0/16")
	clusterV6 = netip.MustParsePrefix("fd10:244::/56")
)

// TestControlPlane starts the real control plane once and checks what
// Kubernetes mode relies on: podCIDRs from the controller-manager,
// garbage collection of what a Node owns, server-side validation through
// dry-run, and kubectl.
func TestControlPlane(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{
		ControllerManager: true,
		ClusterCIDRs:      []netip.Prefix{clusterV4, clusterV6},
	})
	rss, err := c.APIServer().RSS()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver: start → /readyz %.2f s, RSS %d MB; kube-controller-manager: start → /healthz %.2f s",
		c.APIServerReady.Seconds(), rss>>20, c.ControllerManagerHealthy.Seconds())
	cs := c.Client(t)

	t.Run("podCIDRs", func(t *testing.T) { testPodCIDRs(t, cs) })
	t.Run("garbage-collection", func(t *testing.T) { testOwnedByNode(t, cs) })
	t.Run("dry-run-validation", func(t *testing.T) { testDryRunValidation(t, cs) })
	t.Run("kubectl", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := c.Kubectl(ctx, "get", "namespaces", "-o", "name")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(strings.Fields(out), "namespace/kube-system") {
			t.Errorf("kubectl get namespaces: %q, want namespace/kube-system among them", out)
		}
	})
}

// testPodCIDRs creates two Nodes and waits for the controller-manager to
// give each one IPv4 and one IPv6 block, inside the cluster CIDRs, at the
// configured sizes, different between the Nodes.
func testPodCIDRs(t *testing.T, cs kubernetes.Interface) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	names := []string{"kt-node-a", "kt-node-b"}
	start := time.Now()
	for _, n := range names {
		if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create node %s: %v", n, err)
		}
	}
	seen := map[netip.Prefix]string{}
	for _, n := range names {
		var node *corev1.Node
		err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			var err error
			node, err = cs.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
			return err == nil && len(node.Spec.PodCIDRs) > 0, err
		})
		if err != nil {
			t.Fatalf("node %s: no podCIDRs after %s: %v", n, time.Since(start).Round(time.Millisecond), err)
		}
		t.Logf("node %s: podCIDRs %v after %s", n, node.Spec.PodCIDRs, time.Since(start).Round(time.Millisecond))
		if len(node.Spec.PodCIDRs) != 2 || node.Spec.PodCIDR != node.Spec.PodCIDRs[0] {
			t.Fatalf("node %s: podCIDR %q, podCIDRs %v; want one IPv4 and one IPv6 block, podCIDR the first", n, node.Spec.PodCIDR, node.Spec.PodCIDRs)
		}
		for i, s := range node.Spec.PodCIDRs {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				t.Fatalf("node %s: podCIDR %q: %v", n, s, err)
			}
			cluster, bits := clusterV4, 24
			if i == 1 {
				cluster, bits = clusterV6, 64
			}
			if p.Bits() != bits || p.Masked() != p || !cluster.Contains(p.Addr()) {
				t.Errorf("node %s: podCIDR %s, want a /%d block of %s", n, p, bits, cluster)
			}
			if other, dup := seen[p]; dup {
				t.Errorf("podCIDR %s given to both %s and %s", p, other, n)
			}
			seen[p] = n
		}
	}
}

// testOwnedByNode checks the garbage collector: an object owned by a Node
// goes when the Node goes (Kubernetes mode keeps each node's peer record
// this way).
func testOwnedByNode(t *testing.T, cs kubernetes.Interface) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	node, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "kt-node-gc"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	owned := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Name: "kt-owned", Namespace: "default",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}},
	}}
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, owned, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().Nodes().Delete(ctx, node.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().ConfigMaps("default").Get(ctx, owned.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	if err != nil {
		t.Fatalf("object owned by deleted node %s still there after %s: %v", node.Name, time.Since(start).Round(time.Millisecond), err)
	}
	t.Logf("object owned by node %s collected %s after the node's deletion", node.Name, time.Since(start).Round(time.Millisecond))
}

// testDryRunValidation checks that a server-side dry-run create reports
// an invalid NetworkPolicy field by its path, and that a valid one passes
// without being stored.
func testDryRunValidation(t *testing.T, cs kubernetes.Interface) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	tcp := corev1.ProtocolTCP
	port := intstr.FromInt32(8080)
	policy := func(name, cidr string) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: networkingv1.NetworkPolicySpec{
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: cidr}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
				}},
			},
		}
	}
	nps := cs.NetworkingV1().NetworkPolicies("default")

	_, err := nps.Create(ctx, policy("kt-invalid", "10.0.0.0/33"), dry)
	var status apierrors.APIStatus
	if !apierrors.IsInvalid(err) || !errors.As(err, &status) {
		t.Fatalf("dry-run create with ipBlock.cidr 10.0.0.0/33: err = %v, want Invalid", err)
	}
	const want = "spec.ingress[0].from[0].ipBlock.cidr"
	var fields []string
	if d := status.Status().Details; d != nil {
		for _, cause := range d.Causes {
			fields = append(fields, cause.Field)
		}
	}
	if !slices.Contains(fields, want) {
		t.Errorf("invalid policy: causes name fields %q, want %s (error: %v)", fields, want, err)
	}

	if _, err := nps.Create(ctx, policy("kt-valid", "10.0.0.0/8"), dry); err != nil {
		t.Fatalf("dry-run create of a valid policy: %v", err)
	}
	if _, err := nps.Get(ctx, "kt-valid", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a dry-run create stored the policy: get = %v, want NotFound", err)
	}
}
