// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e && linux

package e2e_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/e2etest"
	"github.com/weftnet/weft/e2e/kubetest"
)

// dashboardPath is weft's Grafana dashboard (docs/operations.md,
// Monitoring).
var dashboardPath = filepath.Join("..", "etc", "grafana", "weft.json")

// TestDashboard checks that every metric a query of the Grafana dashboard
// names is exported, with at least one series, by a live weftd that has
// just become ready, in both store modes: etcd, and Kubernetes (a real
// kube-apiserver). A labelled counter nobody initialised has no series
// before its first event, and fails here.
func TestDashboard(t *testing.T) {
	qs, err := e2etest.DashboardQueries(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("etcd", func(t *testing.T) {
		c := e2etest.NewCluster(t, e2e.Options{Nodes: 1})
		checkDashboard(t, c.Nodes()[0], qs)
	})
	t.Run("kube", func(t *testing.T) {
		c := e2etest.NewCluster(t, e2e.Options{Nodes: 1, NoDaemons: true})
		kc := kubetest.Start(t, kubetest.Options{NetNS: c.Underlay.Name, Addr: e2e.EtcdIP})
		n := c.Nodes()[0]
		t.Cleanup(func() {
			if err := n.Stop(); err != nil {
				t.Logf("stop weftd: %v", err)
			}
		})
		cs := kc.Client(t)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		for _, f := range []string{"weft-crd.yaml", "weft-rbac.yaml"} {
			if out, err := kc.Kubectl(ctx, "apply", "-f", filepath.Join("..", "etc", "kubernetes", f)); err != nil {
				t.Fatalf("kubectl apply -f %s: %v\n%s", f, err, out)
			}
		}
		if out, err := kc.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "crd/weftnodes.weft.dev"); err != nil {
			t.Fatalf("wait for the CRD: %v\n%s", err, out)
		}
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "weft-config", Namespace: "weft-system"},
			Data:       map[string]string{"network-config.json": c.NetworkConfig()},
		}
		if _, err := cs.CoreV1().ConfigMaps("weft-system").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// The podCIDR is set by hand, as an admin without the
		// controller-manager's nodeipam would.
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: n.Name},
			Spec:       corev1.NodeSpec{PodCIDR: "10.244.9.0/24", PodCIDRs: []string{"10.244.9.0/24"}},
		}
		if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		writeGossipKeyFile(t, n, newGossipKey(t))
		n.ExtraArgs = []string{"--kube-subnet-mgr", "--kubeconfig", weftdKubeconfig(t, ctx, cs, kc), "--gossip-key-file", gossipKeyFile(n)}
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		checkDashboard(t, n, qs)
	})
}

// checkDashboard waits for n to be ready, reads its /metrics and checks
// every query's metrics against it; then it proves the check can fail,
// with a query naming a metric weftd does not export.
func checkDashboard(t *testing.T, n *e2e.Node, qs []e2etest.Query) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := n.WaitReady(ctx, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	code, page, err := n.Get(ctx, "/metrics")
	if err != nil || code != 200 {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}
	fams, err := e2etest.ParseMetrics(page)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	names := 0
	for _, q := range qs {
		names += len(q.Metrics)
	}
	problems := e2etest.MissingMetrics(qs, fams)
	for _, p := range problems {
		t.Error(p)
	}
	if len(problems) == 0 {
		t.Logf("%d queries naming %d metrics, all exported by a ready weftd (%d families)", len(qs), names, len(fams))
	}

	bogus := []e2etest.Query{{Panel: "panel doctored", Expr: "rate(weft_no_such_metric_total[5m])", Metrics: []string{"weft_no_such_metric_total"}}}
	if ps := e2etest.MissingMetrics(bogus, fams); len(ps) != 1 || !strings.Contains(ps[0], "weft_no_such_metric_total is not exported") {
		t.Errorf("a query naming a metric weftd does not export: problems %q, want exactly that one", ps)
	}
}
