// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcd

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/daemon/policy"
	"github.com/weftnet/weft/subnet"
)

func testPolicy(ns, name string, app string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{}},
		},
	}
}

func TestPolicyPutGetDelete(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t, 30*time.Second)
	a, b := testPolicy("x", "a", "web"), testPolicy("y", "b", "db")
	if err := s.PutPolicies(ctx, []*networkingv1.NetworkPolicy{a, b}); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetPolicy(ctx, "x", "a")
	if err != nil || got.Spec.PodSelector.MatchLabels["app"] != "web" || got.Kind != "NetworkPolicy" {
		t.Fatalf("GetPolicy x/a: %+v, %v", got, err)
	}
	// One invalid object: nothing of the batch is written.
	bad := testPolicy("x", "c", "api")
	bad.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/33"}}}}}
	err = s.PutPolicies(ctx, []*networkingv1.NetworkPolicy{testPolicy("x", "d", "d"), bad})
	var el policy.ErrorList
	if !errors.As(err, &el) || el[0].Field != "spec.ingress[0].from[0].ipBlock.cidr" {
		t.Fatalf("invalid object: %v, want the field path spec.ingress[0].from[0].ipBlock.cidr", err)
	}
	for _, n := range []string{"c", "d"} {
		if _, err := s.GetPolicy(ctx, "x", n); !errors.Is(err, ErrNotFound) {
			t.Errorf("x/%s after a refused batch: %v, want not found", n, err)
		}
	}
	if err := s.PutPolicies(ctx, []*networkingv1.NetworkPolicy{a, a}); err == nil || !strings.Contains(err.Error(), "given twice") {
		t.Errorf("one policy twice: %v", err)
	}
	if err := s.DeletePolicy(ctx, "x", "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePolicy(ctx, "x", "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v, want not found", err)
	}
	// Oversize: refused before anything is sent.
	big := testPolicy("x", "big", "web")
	big.Annotations = map[string]string{"note": strings.Repeat("n", MaxPolicySize)}
	if err := s.PutPolicies(ctx, []*networkingv1.NetworkPolicy{big}); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("oversize policy: %v", err)
	}
}

func TestNamespaceLabels(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t, 30*time.Second)
	got, err := s.LabelNamespace(ctx, "x", map[string]string{"team": "a", "env": "prod"}, nil, true)
	if err != nil || got["team"] != "a" || got["env"] != "prod" || got[policy.NamespaceNameLabel] != "x" {
		t.Fatalf("label x: %v, %v", got, err)
	}
	got, err = s.LabelNamespace(ctx, "x", map[string]string{"team": "b"}, []string{"env"}, true)
	if err != nil || got["team"] != "b" || len(got) != 2 {
		t.Fatalf("relabel x: %v, %v", got, err)
	}
	if _, err := s.LabelNamespace(ctx, "x", map[string]string{"team": "c"}, nil, false); err == nil || !strings.Contains(err.Error(), `label team already has the value "b": give --overwrite`) {
		t.Errorf("value replaced without overwrite: %v", err)
	}
	if _, err := s.LabelNamespace(ctx, "x", map[string]string{"team": "b"}, nil, false); err != nil {
		t.Errorf("same value again without overwrite: %v", err)
	}
	if _, err := s.LabelNamespace(ctx, "x", map[string]string{policy.NamespaceNameLabel: "y"}, nil, true); err == nil || !strings.Contains(err.Error(), "must be the namespace's name") {
		t.Errorf("name label set to another namespace: %v", err)
	}
	if _, err := s.LabelNamespace(ctx, "x", nil, []string{policy.NamespaceNameLabel}, true); err == nil {
		t.Error("name label removed: no error")
	}
	if _, err := s.LabelNamespace(ctx, "x", map[string]string{"bad key!": "v"}, nil, true); err == nil || !strings.Contains(err.Error(), "metadata.labels") {
		t.Errorf("invalid label key: %v", err)
	}
	if _, err := s.LabelNamespace(ctx, "Not_A_Namespace", map[string]string{"a": "b"}, nil, true); err == nil || !strings.Contains(err.Error(), "metadata.name") {
		t.Errorf("invalid namespace name: %v", err)
	}
	// The name label given with its own value is accepted and not stored.
	if _, err := s.LabelNamespace(ctx, "x", map[string]string{policy.NamespaceNameLabel: "x"}, []string{"team"}, true); err != nil {
		t.Fatal(err)
	}
	resp, err := s.c.Get(ctx, s.NamespaceKey("x"))
	if err != nil || len(resp.Kvs) != 0 {
		t.Errorf("a namespace with no label of its own keeps an entry: %v %v", resp, err)
	}
}

// A stored entry that fails validation is reported and never opens
// traffic: its last valid version stands in its place, or, without one,
// a deny-all over what it selects.
func TestPolicySourceBrokenEntries(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t, 30*time.Second)
	src := NewPolicySource(s)
	if err := s.PutPolicies(ctx, []*networkingv1.NetworkPolicy{testPolicy("x", "a", "web")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LabelNamespace(ctx, "x", map[string]string{"team": "a"}, nil, true); err != nil {
		t.Fatal(err)
	}
	v, err := src.ListPolicies(ctx)
	if err != nil || len(v.Policies) != 1 || len(v.Namespaces) != 1 || len(v.Rejected) != 0 {
		t.Fatalf("first list: %+v, %v", v, err)
	}

	// Broken by hand: x/a now has an invalid CIDR, x/b is garbage, x/c
	// is invalid with a readable selector, namespace x has a bad label.
	broken := `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"namespace":"x","name":"%s"},` +
		`"spec":{"podSelector":{"matchLabels":{"app":"%s"}},"ingress":[{"from":[{"ipBlock":{"cidr":"10.0.0.0/33"}}]}]}}`
	put(t, s, map[string]string{
		s.PolicyKey("x", "a"):       strings.ReplaceAll(strings.Replace(broken, "%s", "a", 1), "%s", "web"),
		s.PolicyKey("x", "b"):       "not json",
		s.PolicyKey("x", "c"):       strings.ReplaceAll(strings.Replace(broken, "%s", "c", 1), "%s", "db"),
		s.NamespaceKey("x"):         `{"labels":{"bad key!":"v"}}`,
		s.NamespaceKey("z"):         `{"labels":{"ok":"1"},"extra":1}`,
		s.PoliciesPrefix() + "nons": `{}`,
	})
	v, err = src.ListPolicies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{ // key → kept (last valid version)
		s.PolicyKey("x", "a"): true, s.PolicyKey("x", "b"): false, s.PolicyKey("x", "c"): false,
		s.NamespaceKey("x"): true, s.NamespaceKey("z"): false, s.PoliciesPrefix() + "nons": false,
	}
	if len(v.Rejected) != len(want) {
		t.Errorf("rejected %d entries, want %d: %+v", len(v.Rejected), len(want), v.Rejected)
	}
	for _, r := range v.Rejected {
		if kept, ok := want[r.Key]; !ok || kept != r.Kept {
			t.Errorf("rejected %s (kept %t): want kept=%t (listed %t)", r.Key, r.Kept, kept, ok)
		}
	}
	pols := map[string]*networkingv1.NetworkPolicy{}
	for _, np := range v.Policies {
		if errs := policy.Validate(np); errs != nil {
			t.Errorf("view holds invalid %s/%s: %v", np.Namespace, np.Name, errs)
		}
		pols[np.Namespace+"/"+np.Name] = np
	}
	if a := pols["x/a"]; a == nil || len(a.Spec.Ingress) != 1 || len(a.Spec.Ingress[0].From) != 0 {
		t.Errorf("x/a: %+v, want its last valid version", a)
	}
	for name, sel := range map[string]string{"x/b": "", "x/c": "db"} {
		np := pols[name]
		if np == nil || len(np.Spec.Ingress)+len(np.Spec.Egress) != 0 || len(np.Spec.PolicyTypes) != 2 || np.Spec.PodSelector.MatchLabels["app"] != sel {
			t.Errorf("%s: %+v, want a deny-all over app=%q", name, np, sel)
		}
	}
	if len(v.Policies) != 3 {
		t.Errorf("%d policies, want 3", len(v.Policies))
	}
	nss := map[string]map[string]string{}
	for _, ns := range v.Namespaces {
		nss[ns.Name] = ns.Labels
	}
	if nss["x"]["team"] != "a" || nss["z"][policy.NamespaceNameLabel] != "z" || len(nss["z"]) != 1 {
		t.Errorf("namespaces: %v, want x's last valid labels and z with only its name label", nss)
	}

	// A fresh source (a restarted weftd) has no last valid version:
	// x/a becomes a deny-all over what it selects.
	v, err = NewPolicySource(s).ListPolicies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, np := range v.Policies {
		if np.Name == "a" && (len(np.Spec.Ingress) != 0 || np.Spec.PodSelector.MatchLabels["app"] != "web") {
			t.Errorf("x/a from a fresh source: %+v, want a deny-all over app=web", np)
		}
	}
}

func TestPolicySourceWait(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t, 30*time.Second)
	var src subnet.PolicySource = NewPolicySource(s)
	v, err := src.ListPolicies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- src.WaitPolicies(ctx, v.Revision) }()
	select {
	case err := <-done:
		t.Fatalf("WaitPolicies returned with nothing changed: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := s.LabelNamespace(ctx, "x", map[string]string{"a": "b"}, nil, true); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A change made before the wait starts is not missed.
	v2, err := src.ListPolicies(ctx)
	if err != nil || v2.Revision <= v.Revision {
		t.Fatalf("second list: %v, revision %d after %d", err, v2.Revision, v.Revision)
	}
	if err := s.PutPolicies(ctx, []*networkingv1.NetworkPolicy{testPolicy("x", "a", "web")}); err != nil {
		t.Fatal(err)
	}
	if err := src.WaitPolicies(ctx, v2.Revision); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := src.WaitPolicies(cctx, 1<<40); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled wait: %v", err)
	}
}

// Listings are bounded and paged: more keys than a page are all read, and
// more than MaxPolicyKeys fail.
func TestPolicyListPaged(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t, 60*time.Second)
	var nps []*networkingv1.NetworkPolicy
	for i := range policyPage*2 + 3 {
		nps = append(nps, testPolicy("x", fmt.Sprintf("p%03d", i), "web"))
	}
	for i := 0; i < len(nps); i += 100 {
		if err := s.PutPolicies(ctx, nps[i:min(i+100, len(nps))]); err != nil {
			t.Fatal(err)
		}
	}
	v, err := NewPolicySource(s).ListPolicies(ctx)
	if err != nil || len(v.Policies) != len(nps) {
		t.Fatalf("listed %d of %d: %v", len(v.Policies), len(nps), err)
	}
	budget := MaxPolicyListBytes
	if _, _, err := s.listPrefix(ctx, s.PoliciesPrefix(), 0, policyPage*2, &budget); err == nil || !strings.Contains(err.Error(), "more than 512 keys") {
		t.Errorf("listing over the key limit: %v", err)
	}
	budget = 100
	if _, _, err := s.listPrefix(ctx, s.PoliciesPrefix(), 0, MaxPolicyKeys, &budget); err == nil || !strings.Contains(err.Error(), "more bytes than weft reads") {
		t.Errorf("listing over the byte budget: %v", err)
	}
}

// What the compiler makes of a view with a broken entry: the source that
// saw its valid version keeps enforcing it; a fresh source denies the
// pods it selects, and only those.
func TestBrokenEntryNeverWidens(t *testing.T) {
	s := newStore(t)
	ctx := ctxT(t, 30*time.Second)
	np := testPolicy("x", "a", "web")
	np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}},
	}}}}
	if err := s.PutPolicies(ctx, []*networkingv1.NetworkPolicy{np}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LabelNamespace(ctx, "y", map[string]string{"team": "a"}, nil, true); err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddr
	pods := []policy.Pod{
		{Namespace: "x", Name: "web", Labels: map[string]string{"app": "web"}, IPs: []netip.Addr{addr("10.244.1.2")}, Node: "n1"},
		{Namespace: "x", Name: "other", Labels: map[string]string{"app": "other"}, IPs: []netip.Addr{addr("10.244.1.3")}, Node: "n1"},
		{Namespace: "y", Name: "client", IPs: []netip.Addr{addr("10.244.2.2")}, Node: "n2"},
		{Namespace: "z", Name: "client", IPs: []netip.Addr{addr("10.244.3.2")}, Node: "n3"},
	}
	// verdicts: y/client → web, z/client → web, z/client → other.
	verdicts := func(src *PolicySource) [3]bool {
		t.Helper()
		v, err := src.ListPolicies(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var nss []policy.Namespace
		for _, ns := range v.Namespaces {
			nss = append(nss, policy.Namespace{Name: ns.Name, Labels: ns.Labels})
		}
		st := policy.Compile(policy.Input{Node: "n1", Policies: v.Policies, Pods: pods, Namespaces: nss})
		var out [3]bool
		for i, p := range [][2]string{{"10.244.2.2", "10.244.1.2"}, {"10.244.3.2", "10.244.1.2"}, {"10.244.3.2", "10.244.1.3"}} {
			out[i] = st.Evaluate(policy.Packet{Src: addr(p[0]), Dst: addr(p[1]), Proto: policy.ProtoTCP, DstPort: 80}).Allowed
		}
		return out
	}
	src := NewPolicySource(s)
	if got := verdicts(src); got != [3]bool{true, false, true} {
		t.Fatalf("valid policy: %v, want y→web allowed, z→web denied, z→other allowed", got)
	}
	put(t, s, map[string]string{s.PolicyKey("x", "a"): `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy",` +
		`"metadata":{"namespace":"x","name":"a"},"spec":{"podSelector":{"matchLabels":{"app":"web"}},"ingress":[{"from":[{"ipBlock":{"cidr":"0.0.0.0/-1"}}]}]}}`})
	if got := verdicts(src); got != [3]bool{true, false, true} {
		t.Errorf("broken, last valid version kept: %v, want as before", got)
	}
	if got := verdicts(NewPolicySource(s)); got != [3]bool{false, false, true} {
		t.Errorf("broken, fresh source: %v, want web denied to all, other still open", got)
	}
}
