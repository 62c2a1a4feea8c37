// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kube

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/subnet"
)

// buildView joins Nodes (the authority: name, UID, podCIDRs) with the
// WeftNode records into a complete view. A record becomes a lease when its
// Node exists, has podCIDRs, owns it (same UID) and it is complete (epoch
// set) and well formed. Records of no Node, of another UID, or malformed
// are rejected with the reason; a Node without podCIDRs or without a
// record is not (yet) a peer and is left out quietly, as is a record being
// created. Revision is the highest resourceVersion among the records and
// the deletions seen (deleted).
func buildView(nodes []*corev1.Node, recs []*WeftNode, deleted int64) subnet.View {
	byName := make(map[string]*corev1.Node, len(nodes))
	for _, n := range nodes {
		byName[n.Name] = n
	}
	v := subnet.View{Complete: true, Revision: deleted}
	for _, w := range recs {
		v.Revision = max(v.Revision, revision(w))
		l, why := leaseOf(byName[w.Name], w)
		switch {
		case why != "":
			v.Rejected = append(v.Rejected, subnet.RejectedLease{Key: w.Name, Reason: why})
		case l != nil:
			v.Leases = append(v.Leases, *l)
		}
	}
	slices.SortFunc(v.Leases, func(a, b subnet.Lease) int { return a.Primary().Addr().Compare(b.Primary().Addr()) })
	subnet.SortRejected(v.Rejected)
	return v
}

// leaseOf returns the lease record w makes with its Node n, or why it is
// rejected, or neither when it is not a lease yet.
func leaseOf(n *corev1.Node, w *WeftNode) (*subnet.Lease, string) {
	if n == nil {
		return nil, fmt.Sprintf("stale: there is no Node %s (the garbage collector deletes records of deleted Nodes)", w.Name)
	}
	if owner := w.owner(); owner != n.UID {
		return nil, fmt.Sprintf("stale: owned by Node UID %q, but Node %s now has UID %s", owner, n.Name, n.UID)
	}
	if w.Spec.Epoch <= 0 {
		return nil, "" // being created
	}
	v4, v6, err := nodeSubnets(n)
	if err != nil {
		return nil, err.Error()
	}
	if !v4.IsValid() && !v6.IsValid() {
		return nil, "" // no podCIDR yet
	}
	rec, err := w.record()
	if err != nil {
		return nil, err.Error()
	}
	return &subnet.Lease{Subnet: v4, IPv6Subnet: v6, Record: rec, Epoch: w.Spec.Epoch, ModRevision: revision(w)}, ""
}

// slimNode keeps of a Node what the store uses, so that an informer's
// cache of thousands of Nodes stays small (a Node's status alone is
// kilobytes: images, conditions, addresses).
func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil // a deletion tombstone
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion},
		Spec:       corev1.NodeSpec{PodCIDR: n.Spec.PodCIDR, PodCIDRs: n.Spec.PodCIDRs},
	}, nil
}
