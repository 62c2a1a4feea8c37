// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e

package kube

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/weftnet/weft/daemon/policy"
	"github.com/weftnet/weft/e2e/kubetest"
	"github.com/weftnet/weft/subnet"
)

// TestPolicySource runs the Kubernetes policy source with weftd's token
// (etc/kubernetes/weft-rbac.yaml: a verb missing there keeps the
// informers from listing) against a real kube-apiserver, and measures how
// soon a change made through the API reaches ListPolicies, and that
// WaitPolicies wakes for it. Then the API server is killed: the source
// keeps its last view, and follows changes again once it is back.
func TestPolicySource(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{})
	e := &env{c: c, admin: c.Client(t)}
	e.apply(t)
	s := e.store(t, Config{})
	p, err := NewPolicySource(s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.ListPolicies(ctxT(t, time.Second)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ListPolicies before Run = %v, want it to wait for the informers until its context ends", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
	}()
	start := time.Now()
	v, err := p.ListPolicies(ctxT(t, 60*time.Second))
	if err != nil {
		t.Fatalf("first ListPolicies: %v", err)
	}
	t.Logf("first view after %s: %d policies, %d namespaces, revision %d", time.Since(start).Round(time.Millisecond), len(v.Policies), len(v.Namespaces), v.Revision)
	if ns := findNS(v, "kube-system"); ns == nil || ns.Labels[policy.NamespaceNameLabel] != "kube-system" {
		t.Fatalf("first view: namespace kube-system = %+v, want it with its name label", ns)
	}
	if err := p.WaitPolicies(ctxT(t, 30*time.Second), v.Revision-1); err != nil {
		t.Fatalf("WaitPolicies of an older revision = %v, want nil at once", err)
	}

	// follow makes a change with admin credentials and waits until the
	// views say it is done; WaitPolicies, called before the change, must
	// wake for it. It returns the time from the change to the view.
	follow := func(what string, change func(context.Context) error, done func(*subnet.PolicyView) bool) time.Duration {
		t.Helper()
		ctx := ctxT(t, 60*time.Second)
		v, err := p.ListPolicies(ctx)
		if err != nil {
			t.Fatalf("%s: ListPolicies: %v", what, err)
		}
		woke := make(chan time.Time, 1)
		go func() {
			if err := p.WaitPolicies(ctx, v.Revision); err != nil {
				t.Errorf("%s: WaitPolicies: %v", what, err)
			}
			woke <- time.Now()
		}()
		t0 := time.Now()
		if err := change(ctx); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		select {
		case at := <-woke:
			if at.Before(t0) {
				t.Logf("%s: WaitPolicies returned before the change (a spurious wake-up, allowed)", what)
			}
		case <-ctx.Done():
			t.Fatalf("%s: WaitPolicies did not return", what)
		}
		for {
			v, err = p.ListPolicies(ctx)
			if err != nil {
				t.Fatalf("%s: ListPolicies: %v", what, err)
			}
			if done(v) {
				d := time.Since(t0)
				t.Logf("%s: in the view %s after the API call", what, d.Round(time.Millisecond))
				if len(v.Rejected) != 0 {
					t.Errorf("%s: rejected %v", what, v.Rejected)
				}
				return d
			}
			if err := p.WaitPolicies(ctx, v.Revision); err != nil {
				t.Fatalf("%s: never in the view: %v (last view: %d policies)", what, err, len(v.Policies))
			}
		}
	}
	const bound = 5 * time.Second
	check := func(what string, d time.Duration) {
		if d > bound {
			t.Errorf("%s took %s, more than %s", what, d, bound)
		}
	}

	nsName := "pol-e2e"
	check("namespace created", follow("namespace created", func(ctx context.Context) error {
		_, err := e.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName, Labels: map[string]string{"team": "a"}}}, metav1.CreateOptions{})
		return err
	}, func(v *subnet.PolicyView) bool {
		ns := findNS(v, nsName)
		return ns != nil && maps.Equal(ns.Labels, map[string]string{"team": "a", policy.NamespaceNameLabel: nsName})
	}))
	check("namespace relabelled", follow("namespace relabelled", func(ctx context.Context) error {
		_, err := e.admin.CoreV1().Namespaces().Patch(ctx, nsName, types.MergePatchType, []byte(`{"metadata":{"labels":{"team":"b"}}}`), metav1.PatchOptions{})
		return err
	}, func(v *subnet.PolicyView) bool {
		ns := findNS(v, nsName)
		return ns != nil && ns.Labels["team"] == "b"
	}))

	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: nsName, Name: "web", Annotations: map[string]string{"note": "dropped by the cache"}},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "b"}},
			}}}},
		},
	}
	check("policy created", follow("policy created", func(ctx context.Context) error {
		_, err := e.admin.NetworkingV1().NetworkPolicies(nsName).Create(ctx, np, metav1.CreateOptions{})
		return err
	}, func(v *subnet.PolicyView) bool {
		got := findPolicy(v, nsName, "web")
		return got != nil && got.Spec.PodSelector.MatchLabels["app"] == "web" && len(got.Annotations) == 0 && len(got.ManagedFields) == 0
	}))
	check("policy updated", follow("policy updated", func(ctx context.Context) error {
		_, err := e.admin.NetworkingV1().NetworkPolicies(nsName).Patch(ctx, "web", types.MergePatchType,
			[]byte(`{"spec":{"podSelector":{"matchLabels":{"app":"api"}}}}`), metav1.PatchOptions{})
		return err
	}, func(v *subnet.PolicyView) bool {
		got := findPolicy(v, nsName, "web")
		return got != nil && got.Spec.PodSelector.MatchLabels["app"] == "api"
	}))
	check("policy deleted", follow("policy deleted", func(ctx context.Context) error {
		return e.admin.NetworkingV1().NetworkPolicies(nsName).Delete(ctx, "web", metav1.DeleteOptions{})
	}, func(v *subnet.PolicyView) bool { return findPolicy(v, nsName, "web") == nil }))

	// A second policy, then the API server is killed: the last view stays.
	np.Name = "db"
	check("policy created", follow("second policy created", func(ctx context.Context) error {
		_, err := e.admin.NetworkingV1().NetworkPolicies(nsName).Create(ctx, np, metav1.CreateOptions{})
		return err
	}, func(v *subnet.PolicyView) bool { return findPolicy(v, nsName, "db") != nil }))
	before, err := p.ListPolicies(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			if err := c.StartAPIServer(context.Background()); err != nil {
				t.Errorf("restart kube-apiserver: %v", err)
			}
		}
	}()
	// The informers see the outage when their watch breaks.
	if err := waitUnreachable(s, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	during, err := p.ListPolicies(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatalf("ListPolicies with the API server down: %v", err)
	}
	if len(during.Policies) != len(before.Policies) || findPolicy(during, nsName, "db") == nil || len(during.Namespaces) != len(before.Namespaces) {
		t.Fatalf("with the API server down the view changed: %d policies, %d namespaces, was %d, %d",
			len(during.Policies), len(during.Namespaces), len(before.Policies), len(before.Namespaces))
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 2*time.Second)
	if err := p.WaitPolicies(wctx, during.Revision); err != context.DeadlineExceeded {
		t.Errorf("WaitPolicies with the API server down = %v, want to wait (DeadlineExceeded)", err)
	}
	wcancel()
	back := time.Now()
	if err := c.StartAPIServer(ctxT(t, 3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	restarted = true
	t.Logf("kube-apiserver ready again in %s", time.Since(back).Round(time.Millisecond))
	// The first change after the outage, made as soon as the server
	// answers: the informers must watch again to see it (within
	// unreachableRetryCap and its jitter).
	d := follow("policy deleted after the outage", func(ctx context.Context) error {
		return e.admin.NetworkingV1().NetworkPolicies(nsName).Delete(ctx, "db", metav1.DeleteOptions{})
	}, func(v *subnet.PolicyView) bool { return findPolicy(v, nsName, "db") == nil })
	if limit := unreachableRetryCap*3/2 + bound; d > limit {
		t.Errorf("after the outage the change took %s to reach the view, more than %s", d, limit)
	}
}

// waitUnreachable waits until the store's informers report a failed
// request.
func waitUnreachable(s *Store, d time.Duration) error {
	deadline := time.After(d)
	for {
		seen, err, changed := s.health.state()
		if seen && err != nil {
			return nil
		}
		select {
		case <-changed:
		case <-deadline:
			return fmt.Errorf("the informers did not see the API server go within %s", d)
		}
	}
}

func findNS(v *subnet.PolicyView, name string) *subnet.PolicyNamespace {
	for i := range v.Namespaces {
		if v.Namespaces[i].Name == name {
			return &v.Namespaces[i]
		}
	}
	return nil
}

func findPolicy(v *subnet.PolicyView, ns, name string) *networkingv1.NetworkPolicy {
	for _, np := range v.Policies {
		if np.Namespace == ns && np.Name == name {
			return np
		}
	}
	return nil
}
