// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kube

import (
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/weftnet/weft/daemon/policy"
	"github.com/weftnet/weft/subnet"
)

// unrunPolicySource returns a source whose informers never run: the test
// fills their caches itself, as their reflectors would.
func unrunPolicySource(t *testing.T) *PolicySource {
	t.Helper()
	s, err := New(&rest.Config{Host: "https://127.0.0.1:1"}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPolicySource(s)
	if err != nil {
		t.Fatal(err)
	}
	p.syncOnce.Do(func() { close(p.synced) })
	return p
}

func list(t *testing.T, p *PolicySource) *subnet.PolicyView {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := p.ListPolicies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// put stores obj in an informer's cache through its transform, as a
// watch event would.
func put(t *testing.T, p *PolicySource, obj any) {
	t.Helper()
	var err error
	switch o := obj.(type) {
	case *networkingv1.NetworkPolicy:
		slim, _ := slimPolicy(o)
		err = p.pols.GetStore().Update(slim)
	case *corev1.Namespace:
		slim, _ := slimNamespace(o)
		err = p.nss.GetStore().Update(slim)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func selecting(ns, name, app string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: app,
			Annotations:   map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{}"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}},
	}
}

// TestPolicySourceBrokenEntries: an object weft's validation refuses (the
// API server of another version could store one) is replaced as in etcd
// mode: by its last valid version, else by a deny-all over its selector;
// a namespace by its last valid labels, else by its name label alone.
func TestPolicySourceBrokenEntries(t *testing.T) {
	p := unrunPolicySource(t)
	put(t, p, selecting("b", "web", "web"))
	put(t, p, selecting("a", "db", "db"))
	// A label value longer than 63 characters: invalid, never seen valid.
	broken := selecting("a", "bad", "x")
	broken.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{}}
	broken.Spec.PodSelector.MatchLabels["app"] = strings.Repeat("x", 64)
	put(t, p, broken)
	put(t, p, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "b", Labels: map[string]string{"team": "b"}}})
	put(t, p, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a"}})

	v := list(t, p)
	if len(v.Policies) != 3 || v.Policies[0].Name != "bad" || v.Policies[1].Name != "db" || v.Policies[2].Name != "web" {
		t.Fatalf("policies %v, want a/bad, a/db, b/web", names(v))
	}
	for _, np := range v.Policies {
		if len(np.Annotations) != 0 || len(np.ManagedFields) != 0 {
			t.Errorf("%s/%s keeps annotations %v or managed fields in the cache", np.Namespace, np.Name, np.Annotations)
		}
	}
	if sp := v.Policies[0].Spec; len(sp.Ingress) != 0 || len(sp.Egress) != 0 || len(sp.PolicyTypes) != 2 ||
		len(sp.PodSelector.MatchLabels) != 0 || len(sp.PodSelector.MatchExpressions) != 0 {
		t.Errorf("a/bad stands in as %+v, want a deny-all over the whole namespace (its selector is invalid)", v.Policies[0].Spec)
	}
	if len(v.Rejected) != 1 || v.Rejected[0].Key != "networkpolicies/a/bad" || v.Rejected[0].Kept || v.Rejected[0].Err == nil {
		t.Fatalf("rejected %+v, want networkpolicies/a/bad not kept", v.Rejected)
	}
	if len(v.Namespaces) != 2 || v.Namespaces[0].Name != "a" ||
		!maps.Equal(v.Namespaces[0].Labels, map[string]string{policy.NamespaceNameLabel: "a"}) ||
		!maps.Equal(v.Namespaces[1].Labels, map[string]string{"team": "b", policy.NamespaceNameLabel: "b"}) {
		t.Fatalf("namespaces %+v, want a and b sorted with their name labels", v.Namespaces)
	}

	// Valid versions seen, then broken ones: the valid ones stay.
	bad := selecting("b", "web", "web")
	bad.Spec.PodSelector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "tier", Operator: "Among"}}
	put(t, p, bad)
	put(t, p, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "b", Labels: map[string]string{"team": "-no-"}}})
	v = list(t, p)
	web := v.Policies[2]
	if web.Name != "web" || len(web.Spec.PodSelector.MatchExpressions) != 0 || web.Spec.PodSelector.MatchLabels["app"] != "web" {
		t.Errorf("b/web = %+v, want its last valid version", web.Spec)
	}
	if v.Namespaces[1].Labels["team"] != "b" {
		t.Errorf("namespace b = %+v, want its last valid labels", v.Namespaces[1])
	}
	if len(v.Rejected) != 3 || v.Rejected[0].Key != "namespaces/b" || !v.Rejected[0].Kept || v.Rejected[2].Key != "networkpolicies/b/web" || !v.Rejected[2].Kept {
		t.Errorf("rejected %+v, want namespace b (kept), a/bad, b/web (kept), sorted by key", v.Rejected)
	}

	// Deleted then broken anew: no valid version to keep any more.
	if err := p.pols.GetStore().Delete(web); err != nil {
		t.Fatal(err)
	}
	list(t, p)
	put(t, p, bad)
	v = list(t, p)
	if got := v.Policies[2]; len(got.Spec.PodSelector.MatchLabels) != 0 || len(got.Spec.PolicyTypes) != 2 {
		t.Errorf("b/web broken after a delete = %+v, want the deny-all", got.Spec)
	}
}

func names(v *subnet.PolicyView) []string {
	var out []string
	for _, np := range v.Policies {
		out = append(out, np.Namespace+"/"+np.Name)
	}
	return out
}

// TestPolicySourceWait: WaitPolicies returns at once for an older
// revision, and otherwise at the next event, not before.
func TestPolicySourceWait(t *testing.T) {
	p := unrunPolicySource(t)
	p.bump()
	v := list(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.WaitPolicies(ctx, v.Revision-1); err != nil {
		t.Fatalf("WaitPolicies(older) = %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- p.WaitPolicies(ctx, v.Revision) }()
	select {
	case err := <-done:
		t.Fatalf("WaitPolicies returned %v without an event", err)
	case <-time.After(100 * time.Millisecond):
	}
	p.bump()
	if err := <-done; err != nil {
		t.Fatalf("WaitPolicies after an event = %v", err)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if err := p.WaitPolicies(short, v.Revision+1); err != context.DeadlineExceeded {
		t.Fatalf("WaitPolicies without an event = %v, want DeadlineExceeded", err)
	}
}
