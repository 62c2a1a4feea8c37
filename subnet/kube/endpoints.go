// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kube

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/tools/cache"

	"github.com/weftnet/weft/subnet"
)

// In Kubernetes mode a pod's identity comes from its Pod object, which the
// kubelet of its node keeps: namespace, name, labels, spec.nodeName and
// status.podIPs. Nothing is published by weftd; [Store.ListEndpoints] and
// [Store.WatchEndpoints] read every Pod of the cluster (a policy's peers
// may be anywhere) and check each against the leases of the lease view,
// as the etcd store checks what nodes publish: a pod whose address lies
// outside its node's subnets is rejected, so a node cannot claim another
// node's pod addresses.
//
// What becomes an endpoint: a pod with a node, at least one address, not
// on the host's network (its addresses are the node's, not weft's) and
// not finished (phase Succeeded or Failed: its addresses may already be
// another pod's). Its Key is the pod's UID (an RFC 1123 label), Node its
// spec.nodeName, IPv4 and IPv6 the first address of each family of
// status.podIPs, Ports its containers' named ports. Such a pod without
// an address yet (the kubelet reports status.podIPs after the CNI ADD),
// or whose addresses were rejected, is in the view's Unaddressed: its
// node takes the pod's labels and ports from there, its addresses from
// its own pod records.
//
// The informer asks the API server only for such pods (a field selector:
// scheduled, not on the host's network, not finished), and its cache
// keeps a slim copy of each (see slimPod).

// podSelector selects the Pods that may be endpoints. A pod that leaves
// it (it finishes) reaches the informer as deleted.
var podSelector = fields.AndSelectors(
	fields.OneTermNotEqualSelector("spec.nodeName", ""),
	fields.OneTermEqualSelector("spec.hostNetwork", "false"),
	fields.OneTermNotEqualSelector("status.phase", string(corev1.PodSucceeded)),
	fields.OneTermNotEqualSelector("status.phase", string(corev1.PodFailed)),
)

var _ subnet.EndpointSource = (*Store)(nil)

// podInformer returns an informer on every Pod whose cache holds slim
// Pods (see slimPod).
func (s *Store) podInformer() (cache.SharedIndexInformer, error) {
	lw := patient(s.observed(cache.NewListWatchFromClient(s.cs.core, "pods", metav1.NamespaceAll, podSelector)))
	inf := cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, cache.Indexers{})
	if err := inf.SetTransform(slimPod); err != nil {
		return nil, fmt.Errorf("Pod informer: %w", err)
	}
	return inf, nil
}

// slimPod keeps of a Pod what policy needs: its namespace, name, UID,
// labels, node, host-network flag, containers' ports (names, protocols,
// numbers: a named port of a policy resolves against them) and its
// addresses and phase. A Pod of a large cluster weighs a few KiB; this
// keeps some hundred bytes of it.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: p.Namespace, Name: p.Name, UID: p.UID, Labels: p.Labels, ResourceVersion: p.ResourceVersion,
		},
		Spec: corev1.PodSpec{NodeName: p.Spec.NodeName, HostNetwork: p.Spec.HostNetwork},
		Status: corev1.PodStatus{
			Phase: p.Status.Phase, PodIP: p.Status.PodIP, PodIPs: p.Status.PodIPs,
		},
	}
	for _, c := range p.Spec.Containers {
		if len(c.Ports) == 0 {
			continue
		}
		ports := make([]corev1.ContainerPort, len(c.Ports))
		for i, cp := range c.Ports {
			ports[i] = corev1.ContainerPort{Name: cp.Name, Protocol: cp.Protocol, ContainerPort: cp.ContainerPort}
		}
		out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: c.Name, Ports: ports})
	}
	return out, nil
}

// podIdentity returns the endpoint of pod without its addresses, or false
// when the pod is none (see the comment at the top of this file).
func podIdentity(p *corev1.Pod) (subnet.Endpoint, bool) {
	if p.Spec.NodeName == "" || p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return subnet.Endpoint{}, false
	}
	e := subnet.Endpoint{
		Node: p.Spec.NodeName, Key: string(p.UID),
		PodIdentity: subnet.PodIdentity{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels},
		Ports:       []subnet.ContainerPort{}, // known: none unless listed
	}
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == "" || cp.ContainerPort <= 0 || cp.ContainerPort > 65535 {
				continue // an unnamed port cannot be named in a policy
			}
			proto := string(cp.Protocol)
			if proto == "" {
				proto = string(corev1.ProtocolTCP)
			}
			e.Ports = append(e.Ports, subnet.ContainerPort{Name: cp.Name, Protocol: proto, Port: uint16(cp.ContainerPort)})
		}
	}
	return e, true
}

// podEndpoint returns the endpoint of pod, or false when the pod is none
// or has no address yet (see the comment at the top of this file).
func podEndpoint(p *corev1.Pod) (subnet.Endpoint, bool) {
	e, ok := podIdentity(p)
	if !ok {
		return subnet.Endpoint{}, false
	}
	ips := p.Status.PodIPs
	if len(ips) == 0 && p.Status.PodIP != "" {
		ips = []corev1.PodIP{{IP: p.Status.PodIP}}
	}
	for _, ip := range ips {
		a, err := netip.ParseAddr(ip.IP)
		if err != nil {
			// Left for CheckEndpoint to refuse: an endpoint without a
			// usable address.
			continue
		}
		switch {
		case a.Is4() && !e.IPv4.IsValid():
			e.IPv4 = a
		case a.Is6() && !e.IPv6.IsValid():
			e.IPv6 = a
		}
	}
	if !e.IPv4.IsValid() && !e.IPv6.IsValid() && len(ips) == 0 {
		return subnet.Endpoint{}, false // not started yet
	}
	return e, true
}

// endpointView checks the pods' endpoints against the leases of v.
func endpointView(pods []*corev1.Pod, v subnet.View) subnet.EndpointView {
	out := subnet.EndpointView{Revision: v.Revision}
	leases := subnet.IndexLeases(v.Leases)
	for _, p := range pods {
		if e, ok := podEndpoint(p); ok {
			err := leases.CheckEndpoint(e)
			if err == nil {
				out.Endpoints = append(out.Endpoints, e)
				continue
			}
			out.Rejected = append(out.Rejected, subnet.RejectedLease{Key: p.Namespace + "/" + p.Name, Reason: err.Error()})
		}
		if id, ok := podIdentity(p); ok && id.ValidateIdentity() == nil {
			out.Unaddressed = append(out.Unaddressed, id)
		}
	}
	byNodeKey := func(a, b subnet.Endpoint) int {
		if c := strings.Compare(a.Node, b.Node); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	}
	slices.SortFunc(out.Endpoints, byNodeKey)
	slices.SortFunc(out.Unaddressed, byNodeKey)
	slices.SortFunc(out.Rejected, func(a, b subnet.RejectedLease) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// ListEndpoints lists every Pod and the leases (as [Store.List]) and
// returns the pods' endpoints checked against those leases.
func (s *Store) ListEndpoints(ctx context.Context) (subnet.EndpointView, error) {
	v, err := s.List(ctx)
	if err != nil {
		return subnet.EndpointView{}, err
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	pl, err := s.cs.listPods(cctx, metav1.ListOptions{FieldSelector: podSelector.String()})
	if err != nil {
		return subnet.EndpointView{}, fmt.Errorf("list Pods: %w", err)
	}
	pods := make([]*corev1.Pod, len(pl.Items))
	for i := range pl.Items {
		pods[i] = &pl.Items[i]
	}
	return endpointView(pods, v), nil
}

// WatchEndpoints runs an informer on Pods, and the informers on Nodes and
// WeftNodes (shared with WatchLeases: see leaseinf.go), and calls fn with
// the pods' endpoints checked against the lease view once all three have
// listed everything, then after changes (a burst may give one call) until
// ctx is done; then it returns nil. The informers list again by
// themselves after a broken watch; while the API server is away fn is not
// called, and the consumer keeps the last view.
func (s *Store) WatchEndpoints(ctx context.Context, fn func(subnet.EndpointView)) error {
	pods, err := s.podInformer()
	if err != nil {
		return err
	}
	sl, release, err := s.leaseInformers()
	if err != nil {
		return err
	}
	defer release()
	kick := make(chan struct{}, 1)
	h := kicker(kick)
	if _, err := pods.AddEventHandler(h); err != nil {
		return fmt.Errorf("watch Pods: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	podsSynced, wait := runInformers(ctx, pods)
	defer func() { cancel(); wait() }()
	remove, synced, err := sl.watch(ctx, h)
	if err != nil {
		return err
	}
	defer remove()
	if !podsSynced || !synced {
		return nil
	}
	for {
		fn(endpointView(cachedPods(pods), sl.view()))
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
		}
	}
}

func cachedPods(inf cache.SharedIndexInformer) []*corev1.Pod {
	objs := inf.GetStore().List()
	out := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok {
			out = append(out, p)
		}
	}
	return out
}
