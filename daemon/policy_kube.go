// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"context"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftnet/weft/daemon/policy"
	"github.com/weftnet/weft/subnet"
	subnetetcd "github.com/weftnet/weft/subnet/etcd"
	subnetkube "github.com/weftnet/weft/subnet/kube"
)

// policyModeKube is status.Policy's mode in Kubernetes mode.
const policyModeKube = "kube"

// policySource is where the policy loop's inputs come from in one store
// mode.
type policySource struct {
	// mode is status.Policy's mode; waiting what /status says until both
	// views have arrived.
	mode, waiting string
	eps           subnet.EndpointSource
	pols          subnet.PolicySource
	// run, when set, runs what pols needs (its informers) until ctx ends.
	run func(ctx context.Context) error
	// podObjects: the endpoint view holds this node's own pods too (Pod
	// objects), whose labels and ports stand in for the pod records'
	// (Kubernetes mode: the kubelet's CNI call carries no labels).
	podObjects bool
}

// policySource returns the policy and endpoint sources of the store: in
// etcd mode the policies, namespaces and endpoints kept in etcd; in
// Kubernetes mode the NetworkPolicy, Namespace and Pod informers of the
// API server. It returns nil for a store that has none.
func (d *daemon) policySource() (*policySource, error) {
	switch s := d.store.(type) {
	case *subnetetcd.Store:
		return &policySource{
			mode: policyModeEtcd, waiting: "waiting for the policies and endpoints from etcd (the table of the previous run, if any, stays)",
			eps: s, pols: subnetetcd.NewPolicySource(s),
		}, nil
	case *subnetkube.Store:
		ps, err := subnetkube.NewPolicySource(s)
		if err != nil {
			return nil, err
		}
		return &policySource{
			mode: policyModeKube, waiting: "waiting for the NetworkPolicies, Namespaces and Pods from the Kubernetes API (the table of the previous run, if any, stays)",
			eps: s, pols: ps, run: ps.Run, podObjects: true,
		}, nil
	}
	return nil, nil
}

// podKey names a pod by namespace and name.
type podKey struct{ namespace, name string }

// localPodObjects returns, when the source serves this node's Pod objects
// (Kubernetes mode), those of eps (addressed or not) by namespace and
// name; nil otherwise. A pod record's labels and ports come from its Pod
// object; its addresses stay the record's (the CNI plugin's, which the
// anti-spoofing set enforces), whatever the Pod's status says.
func (d *daemon) localPodObjects(eps *subnet.EndpointView) map[podKey]subnet.Endpoint {
	if !d.pol.podObjects {
		return nil
	}
	m := map[podKey]subnet.Endpoint{}
	for _, list := range [][]subnet.Endpoint{eps.Unaddressed, eps.Endpoints} {
		for _, e := range list {
			if e.Node == d.nodeName {
				m[podKey{e.Namespace, e.Name}] = e
			}
		}
	}
	return m
}

// podsWithoutObject counts the pod records of in whose Pod object the
// source does not serve (Kubernetes mode; 0 otherwise): their labels are
// the record's (a kubelet passes none), their named ports unknown.
func (d *daemon) podsWithoutObject(in *policyInputs) int {
	objs := d.localPodObjects(in.eps)
	if objs == nil {
		return 0
	}
	n := 0
	for _, r := range in.local {
		if _, ok := objs[podKey{r.Pod.Namespace, r.Pod.Name}]; !ok {
			n++
		}
	}
	return n
}

// policyPorts converts an endpoint's named ports for the compiler (nil
// stays nil: unknown).
func policyPorts(ps []subnet.ContainerPort) []policy.NamedPort {
	if ps == nil {
		return nil
	}
	out := make([]policy.NamedPort, len(ps))
	for i, p := range ps {
		out[i] = policy.NamedPort{Name: p.Name, Protocol: corev1.Protocol(p.Protocol), Port: p.Port}
	}
	return out
}

// runPolicySource runs src.run, if any, until ctx ends (a source runs
// once: its informers list again by themselves after a failure).
func (d *daemon) runPolicySource(ctx context.Context, src *policySource) {
	if src.run == nil {
		return
	}
	if err := src.run(ctx); ctx.Err() == nil {
		d.log.WithError(err).Error("the " + src.mode + " policy source stopped: policies are no longer followed")
	}
}
