// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e

package kube

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/weftnet/weft/subnet"
)

// testWatchEndpoints: Pods created and changed with admin credentials
// reach WatchEndpoints (weftd's token) as endpoints checked against the
// leases: a pod with addresses in its node's subnets is an endpoint, one
// with an address outside them is rejected, a host-network pod is none.
func (e *env) testWatchEndpoints(t *testing.T) {
	s := e.store(t, Config{})
	n := e.node(t, "ep-node")
	defer e.deleteNode(t, n.Name)
	l := e.claimWhenAssigned(t, s, record(n.Name, 41))
	ip4 := l.Subnet.Addr().Next().Next()
	ip6 := l.IPv6Subnet.Addr().Next().Next()

	ctx := ctxT(t, 2*time.Minute)
	pod := func(name string, hostNet bool, labels map[string]string, ips ...string) *corev1.Pod {
		t.Helper()
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "weft-system", Name: name, Labels: labels},
			Spec: corev1.PodSpec{
				NodeName: n.Name, HostNetwork: hostNet, ServiceAccountName: "weftd", AutomountServiceAccountToken: ptr(false),
				Containers: []corev1.Container{{Name: "c", Image: "x", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80}}}},
			},
		}
		p, err := e.admin.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create Pod %s: %v", name, err)
		}
		t.Cleanup(func() {
			_ = e.admin.CoreV1().Pods(p.Namespace).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))})
		})
		p.Status.Phase = corev1.PodRunning
		for _, ip := range ips {
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
		}
		p.Status.PodIP = ips[0]
		if p, err = e.admin.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("set the addresses of Pod %s: %v", name, err)
		}
		return p
	}

	views := make(chan subnet.EndpointView, 64)
	wctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.WatchEndpoints(wctx, func(v subnet.EndpointView) {
			select {
			case views <- v:
			default:
			}
		})
	}()
	// WatchLeases on the same store shares the Node and WeftNode
	// informers: one pair runs while both watch, none after.
	leaseViews := make(chan subnet.View, 1)
	lctx, lcancel := context.WithCancel(context.Background())
	ldone := make(chan error, 1)
	go func() {
		ldone <- s.WatchLeases(lctx, func(v subnet.View) {
			select {
			case leaseViews <- v:
			default:
			}
		})
	}()
	defer func() {
		cancel()
		lcancel()
		if err := <-done; err != nil {
			t.Errorf("WatchEndpoints = %v, want nil after its context ended", err)
		}
		<-ldone
		s.leasesMu.Lock()
		defer s.leasesMu.Unlock()
		if s.leases != nil {
			t.Errorf("lease informers still held (%d) after both watchers returned", s.leases.refs)
		}
	}()
	// until returns the first view for which ok holds, and how long it
	// took from t0.
	until := func(what string, t0 time.Time, ok func(subnet.EndpointView) bool) subnet.EndpointView {
		t.Helper()
		for {
			select {
			case v := <-views:
				if ok(v) {
					t.Logf("%s: in a view %s after the API call", what, time.Since(t0).Round(time.Millisecond))
					return v
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("%s: no such view within 30 s", what)
			}
		}
	}
	find := func(v subnet.EndpointView, name string) *subnet.Endpoint {
		for i := range v.Endpoints {
			if v.Endpoints[i].Name == name && v.Endpoints[i].Namespace == "weft-system" {
				return &v.Endpoints[i]
			}
		}
		return nil
	}
	rejected := func(v subnet.EndpointView, name string) bool {
		for _, r := range v.Rejected {
			if r.Key == "weft-system/"+name {
				return true
			}
		}
		return false
	}

	t0 := time.Now()
	web := pod("ep-web", false, map[string]string{"app": "web"}, ip4.String(), ip6.String())
	pod("ep-rogue", false, map[string]string{"app": "rogue"}, "10.99.0.9")
	pod("ep-host", true, nil, "198.18.1.41")
	v := until("pods created", t0, func(v subnet.EndpointView) bool {
		return find(v, "ep-web") != nil && rejected(v, "ep-rogue")
	})
	got := find(v, "ep-web")
	select {
	case <-leaseViews:
	case <-time.After(30 * time.Second):
		t.Fatal("WatchLeases gave no view within 30 s")
	}
	s.leasesMu.Lock()
	if s.leases == nil || s.leases.refs != 2 {
		t.Errorf("lease informers %+v: want one pair held by both watchers", s.leases)
	}
	s.leasesMu.Unlock()
	want := subnet.Endpoint{Node: n.Name, Key: string(web.UID), IPv4: ip4, IPv6: ip6,
		PodIdentity: subnet.PodIdentity{Namespace: "weft-system", Name: "ep-web", Labels: map[string]string{"app": "web"}}}
	if got.Node != want.Node || got.Key != want.Key || got.IPv4 != want.IPv4 || got.IPv6 != want.IPv6 || !maps.Equal(got.Labels, want.Labels) {
		t.Errorf("endpoint of ep-web = %+v, want %+v", *got, want)
	}
	if !slices.Equal(got.Ports, []subnet.ContainerPort{{Name: "http", Protocol: "TCP", Port: 80}}) {
		t.Errorf("endpoint of ep-web: ports %+v, want http TCP 80 (the API server's default protocol)", got.Ports)
	}
	if find(v, "ep-host") != nil || rejected(v, "ep-host") || find(v, "ep-rogue") != nil {
		t.Errorf("view %+v: ep-host must be absent and ep-rogue only rejected", v)
	}
	listed, err := s.ListEndpoints(ctx)
	if err != nil {
		t.Fatalf("ListEndpoints: %v", err)
	}
	if lw := find(listed, "ep-web"); lw == nil || lw.Key != got.Key || lw.IPv4 != got.IPv4 || !rejected(listed, "ep-rogue") {
		t.Errorf("ListEndpoints: ep-web %+v, rejected %v; WatchEndpoints gave %+v", lw, listed.Rejected, *got)
	}

	t0 = time.Now()
	if _, err := e.admin.CoreV1().Pods("weft-system").Patch(ctx, "ep-web", types.MergePatchType, []byte(`{"metadata":{"labels":{"app":"api"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	until("label changed", t0, func(v subnet.EndpointView) bool {
		ep := find(v, "ep-web")
		return ep != nil && ep.Labels["app"] == "api"
	})
	// A pod that finishes is gone from the view (rejected and unaddressed
	// alike) and from ListEndpoints.
	t0 = time.Now()
	rogue, err := e.admin.CoreV1().Pods("weft-system").Get(ctx, "ep-rogue", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rogue.Status.Phase = corev1.PodSucceeded
	if _, err := e.admin.CoreV1().Pods("weft-system").UpdateStatus(ctx, rogue, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	unaddressed := func(v subnet.EndpointView, name string) bool {
		return slices.ContainsFunc(v.Unaddressed, func(e subnet.Endpoint) bool { return e.Name == name })
	}
	until("pod finished", t0, func(v subnet.EndpointView) bool {
		return !rejected(v, "ep-rogue") && !unaddressed(v, "ep-rogue") && find(v, "ep-web") != nil
	})
	if listed, err = s.ListEndpoints(ctx); err != nil || rejected(listed, "ep-rogue") || unaddressed(listed, "ep-rogue") {
		t.Errorf("ListEndpoints after ep-rogue finished: %v, rejected %v", err, listed.Rejected)
	}

	t0 = time.Now()
	if err := e.admin.CoreV1().Pods("weft-system").Delete(ctx, "ep-web", metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))}); err != nil {
		t.Fatal(err)
	}
	until("pod deleted", t0, func(v subnet.EndpointView) bool { return find(v, "ep-web") == nil })
}
