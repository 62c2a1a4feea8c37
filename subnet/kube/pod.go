// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kube

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftnet/weft/subnet"
)

// PodEndpoint reads the Pod namespace/name and returns its endpoint as
// [Store.ListEndpoints] builds it (not yet checked against the leases:
// see [subnet.CheckEndpoint]), or an error saying why the pod is none.
// It costs one GET, where ListEndpoints lists every Pod.
func (s *Store) PodEndpoint(ctx context.Context, namespace, name string) (subnet.Endpoint, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	p, err := s.cs.getPod(cctx, namespace, name)
	if err != nil {
		return subnet.Endpoint{}, fmt.Errorf("get Pod %s/%s: %w", namespace, name, err)
	}
	return endpointOf(p)
}

// endpointOf is podEndpoint with the reason a pod is no endpoint.
func endpointOf(p *corev1.Pod) (subnet.Endpoint, error) {
	switch {
	case p.Spec.NodeName == "":
		return subnet.Endpoint{}, fmt.Errorf("pod %s/%s is not scheduled to a node yet", p.Namespace, p.Name)
	case p.Spec.HostNetwork:
		return subnet.Endpoint{}, fmt.Errorf("pod %s/%s uses its node's network (hostNetwork): weft enforces no policy on it", p.Namespace, p.Name)
	case p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed:
		return subnet.Endpoint{}, fmt.Errorf("pod %s/%s has finished (phase %s)", p.Namespace, p.Name, p.Status.Phase)
	}
	e, ok := podEndpoint(p)
	if !ok {
		return subnet.Endpoint{}, fmt.Errorf("pod %s/%s on %s has no address yet (status.podIPs is empty)", p.Namespace, p.Name, p.Spec.NodeName)
	}
	if !e.IPv4.IsValid() && !e.IPv6.IsValid() {
		return subnet.Endpoint{}, fmt.Errorf("pod %s/%s on %s: no valid address in status.podIPs %v", p.Namespace, p.Name, p.Spec.NodeName, p.Status.PodIPs)
	}
	return e, nil
}
