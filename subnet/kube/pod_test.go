// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kube

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestEndpointOf: the endpoint of one Pod, as ListEndpoints builds it, or
// why the pod is none.
func TestEndpointOf(t *testing.T) {
	pod := func(mod func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "a", UID: "0b7c6d1e-2f3a-4b5c-8d9e-0f1a2b3c4d5e"},
			Spec:       corev1.PodSpec{NodeName: "n1"},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.1.5",
				PodIPs: []corev1.PodIP{{IP: "10.244.1.5"}, {IP: "fd10:244:0:1::5"}}},
		}
		mod(p)
		return p
	}
	e, err := endpointOf(pod(func(*corev1.Pod) {}))
	if err != nil || e.Node != "n1" || e.Namespace != "x" || e.Name != "a" ||
		e.IPv4 != netip.MustParseAddr("10.244.1.5") || e.IPv6 != netip.MustParseAddr("fd10:244:0:1::5") {
		t.Errorf("running pod: %+v, %v", e, err)
	}
	for _, c := range []struct {
		name string
		mod  func(*corev1.Pod)
		err  string
	}{
		{"not scheduled", func(p *corev1.Pod) { p.Spec.NodeName = "" }, "not scheduled"},
		{"host network", func(p *corev1.Pod) { p.Spec.HostNetwork = true }, "hostNetwork"},
		{"succeeded", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }, "finished (phase Succeeded)"},
		{"failed", func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }, "finished (phase Failed)"},
		{"not started", func(p *corev1.Pod) { p.Status.PodIP, p.Status.PodIPs = "", nil }, "no address yet"},
		{"unparsable", func(p *corev1.Pod) { p.Status.PodIPs = []corev1.PodIP{{IP: "bogus"}} }, "no valid address"},
	} {
		if _, err := endpointOf(pod(c.mod)); err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), "x/a") {
			t.Errorf("%s: %v, want an error naming x/a with %q", c.name, err, c.err)
		}
	}
}
