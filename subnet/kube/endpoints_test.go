// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kube

import (
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/subnet"
)

// TestPodEndpoint: which Pods are endpoints, with which addresses, and
// that the cache's slim Pod gives the same endpoint as the full one.
func TestPodEndpoint(t *testing.T) {
	base := func(mod func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "a", UID: "0b7c6d1e-2f3a-4b5c-8d9e-0f1a2b3c4d5e", Labels: map[string]string{"pod": "a"},
				Annotations: map[string]string{"big": "dropped"}},
			Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Image: "img", Command: []string{"serve"},
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80, Protocol: corev1.ProtocolTCP, HostPort: 8080}}}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.1.5",
				PodIPs: []corev1.PodIP{{IP: "10.244.1.5"}, {IP: "fd10:244:0:1::5"}}},
		}
		if mod != nil {
			mod(p)
		}
		return p
	}
	full := subnet.Endpoint{Node: "n1", Key: "0b7c6d1e-2f3a-4b5c-8d9e-0f1a2b3c4d5e",
		PodIdentity: subnet.PodIdentity{Namespace: "x", Name: "a", Labels: map[string]string{"pod": "a"}},
		IPv4:        netip.MustParseAddr("10.244.1.5"), IPv6: netip.MustParseAddr("fd10:244:0:1::5")}
	for _, c := range []struct {
		name string
		pod  *corev1.Pod
		want *subnet.Endpoint
	}{
		{"dual-stack", base(nil), &full},
		{"podIP only", base(func(p *corev1.Pod) { p.Status.PodIPs = nil }), &subnet.Endpoint{Node: full.Node, Key: full.Key, PodIdentity: full.PodIdentity, IPv4: full.IPv4}},
		{"not scheduled", base(func(p *corev1.Pod) { p.Spec.NodeName = "" }), nil},
		{"not started", base(func(p *corev1.Pod) { p.Status.PodIP, p.Status.PodIPs = "", nil }), nil},
		{"host network", base(func(p *corev1.Pod) { p.Spec.HostNetwork = true }), nil},
		{"succeeded", base(func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }), nil},
		{"failed", base(func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }), nil},
		{"unparsable address", base(func(p *corev1.Pod) { p.Status.PodIPs = []corev1.PodIP{{IP: "bogus"}} }),
			&subnet.Endpoint{Node: full.Node, Key: full.Key, PodIdentity: full.PodIdentity}},
	} {
		t.Run(c.name, func(t *testing.T) {
			slim, _ := slimPod(c.pod)
			sp := slim.(*corev1.Pod)
			if len(sp.Annotations) != 0 || len(sp.Spec.Containers) != 1 || sp.Spec.Containers[0].Image != "" ||
				sp.Spec.Containers[0].Ports[0] != (corev1.ContainerPort{Name: "http", ContainerPort: 80, Protocol: corev1.ProtocolTCP}) {
				t.Errorf("slim Pod %+v keeps more or less than its ports' names, numbers and protocols", sp.Spec)
			}
			for what, p := range map[string]*corev1.Pod{"full": c.pod, "slim": sp} {
				got, ok := podEndpoint(p)
				if (c.want != nil) != ok {
					t.Fatalf("%s: podEndpoint ok = %t, want %t", what, ok, c.want != nil)
				}
				if ok && (got.Node != c.want.Node || got.Key != c.want.Key || got.IPv4 != c.want.IPv4 || got.IPv6 != c.want.IPv6 ||
					got.Namespace != c.want.Namespace || got.Name != c.want.Name || got.Labels["pod"] != "a") {
					t.Errorf("%s: endpoint %+v, want %+v", what, got, *c.want)
				}
				if ok && !slices.Equal(got.Ports, []subnet.ContainerPort{{Name: "http", Protocol: "TCP", Port: 80}}) {
					t.Errorf("%s: ports %+v, want http TCP 80", what, got.Ports)
				}
			}
		})
	}
	// Checked against the leases: an address outside the node's subnet,
	// or no address at all, is rejected under the pod's name. A pod not
	// started, and a rejected one, are in Unaddressed with their labels
	// and ports and without an address; a pod whose identity or ports are
	// invalid is in neither.
	leases := []subnet.Lease{{Record: subnet.Record{NodeName: "n1"},
		Subnet: netip.MustParsePrefix("10.244.1.0/24"), IPv6Subnet: netip.MustParsePrefix("fd10:244:0:1::/64")}}
	v := endpointView([]*corev1.Pod{
		base(nil),
		base(func(p *corev1.Pod) { p.Name, p.UID, p.Status.PodIPs = "b", "uid-b", []corev1.PodIP{{IP: "10.244.2.5"}} }),
		base(func(p *corev1.Pod) { p.Name, p.UID, p.Status.PodIPs = "c", "uid-c", []corev1.PodIP{{IP: "bogus"}} }),
		base(func(p *corev1.Pod) { p.Name, p.UID, p.Status.PodIP, p.Status.PodIPs = "d", "uid-d", "", nil }),
		base(func(p *corev1.Pod) {
			p.Name, p.UID, p.Status.PodIP, p.Status.PodIPs = "e", "uid-e", "", nil
			p.Spec.Containers[0].Ports[0].Name = "Not-IANA"
		}),
		base(func(p *corev1.Pod) { p.Name, p.UID, p.Spec.HostNetwork = "f", "uid-f", true }),
	}, subnet.View{Leases: leases})
	if len(v.Endpoints) != 1 || v.Endpoints[0].Name != "a" || len(v.Rejected) != 2 || v.Rejected[0].Key != "x/b" || v.Rejected[1].Key != "x/c" {
		t.Errorf("view %+v, want endpoint x/a and x/b, x/c rejected", v)
	}
	var names []string
	for _, e := range v.Unaddressed {
		names = append(names, e.Name)
		if e.IPv4.IsValid() || e.IPv6.IsValid() || e.Labels["pod"] != "a" || len(e.Ports) != 1 || e.Ports[0].Name != "http" {
			t.Errorf("unaddressed %+v: want labels and ports, no address", e)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"b", "c", "d"}) {
		t.Errorf("unaddressed pods %v, want b, c, d", names)
	}
}

// TestContainerPortValidate: port names are checked as the API server's
// IsValidPortName, protocols and numbers as its container port rules.
func TestContainerPortValidate(t *testing.T) {
	for _, c := range []struct {
		p  subnet.ContainerPort
		ok bool
	}{
		{subnet.ContainerPort{Name: "http", Protocol: "TCP", Port: 80}, true},
		{subnet.ContainerPort{Name: "dns-udp", Protocol: "UDP", Port: 53}, true},
		{subnet.ContainerPort{Name: "a1", Protocol: "SCTP", Port: 1}, true},
		{subnet.ContainerPort{Name: "abcdefghijklmno", Protocol: "TCP", Port: 1}, true},
		{subnet.ContainerPort{Name: "abcdefghijklmnop", Protocol: "TCP", Port: 1}, false},
		{subnet.ContainerPort{Name: "", Protocol: "TCP", Port: 1}, false},
		{subnet.ContainerPort{Name: "8080", Protocol: "TCP", Port: 1}, false},
		{subnet.ContainerPort{Name: "-web", Protocol: "TCP", Port: 1}, false},
		{subnet.ContainerPort{Name: "web-", Protocol: "TCP", Port: 1}, false},
		{subnet.ContainerPort{Name: "we--b", Protocol: "TCP", Port: 1}, false},
		{subnet.ContainerPort{Name: "Web", Protocol: "TCP", Port: 1}, false},
		{subnet.ContainerPort{Name: "web", Protocol: "tcp", Port: 1}, false},
		{subnet.ContainerPort{Name: "web", Protocol: "TCP", Port: 0}, false},
	} {
		if err := c.p.Validate(); (err == nil) != c.ok {
			t.Errorf("%+v: Validate() = %v, want ok %t", c.p, err, c.ok)
		}
	}
}
