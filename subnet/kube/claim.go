// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kube

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/subnet"
)

// maxTries bounds the read-check-write rounds of one call that keeps
// losing races.
const maxTries = 8

// fieldManager names weftd's writes in managedFields.
const fieldManager = "weftd"

// Claim takes the node's subnets from its Node's podCIDRs and makes sure
// its record exists, is owned by the Node and carries its node ID:
//
//   - no Node of that name, or no podCIDRs yet: an error wrapping
//     subnet.ErrNotAssigned (the caller waits), naming what assigns them;
//   - podCIDRs that are not subnets of the network at its subnet lengths,
//     or a family the network has and the Node lacks: an error wrapping
//     subnet.ErrSubnetRefused naming both values;
//   - a record owned by another Node UID (the Node was re-created) is
//     deleted (guarded by its UID and resourceVersion) and created anew,
//     with a new epoch;
//   - a record of this Node carrying another node ID: an error wrapping
//     subnet.ErrNodeConflict naming both IDs; it is left alone.
//
// req.Prev is not used: the Node, not weftd, says which subnet is the
// node's. The returned lease carries the record as stored (the caller
// writes its own data with UpdateRecord when it differs).
func (s *Store) Claim(ctx context.Context, req subnet.ClaimRequest) (*subnet.Lease, error) {
	rec := req.Record
	if err := rec.Validate(); err != nil {
		return nil, fmt.Errorf("claim: invalid record (other nodes would reject it): %w", err)
	}
	if req.Config == nil {
		return nil, errors.New("claim: no network config")
	}
	for range maxTries {
		l, retry, err := s.claimOnce(ctx, req.Config, rec)
		if err != nil || !retry {
			return l, err
		}
	}
	return nil, fmt.Errorf("claim: the WeftNode %s kept changing; try again", rec.NodeName)
}

// claimOnce is one round of Claim; retry is true when a guarded write lost
// a race and the round must start again.
func (s *Store) claimOnce(ctx context.Context, nc *subnet.Config, rec subnet.Record) (l *subnet.Lease, retry bool, err error) {
	node, err := s.getNode(ctx, rec.NodeName)
	if err != nil {
		return nil, false, err
	}
	v4, v6, err := s.assigned(nc, node)
	if err != nil {
		return nil, false, err
	}
	w, err := s.getRecord(ctx, rec.NodeName)
	if err != nil {
		return nil, false, err
	}
	switch {
	case w != nil && w.owner() != node.UID:
		s.log.WithField("node", node.Name).Infof("deleting the stale WeftNode of an earlier Node (UID %q; the Node's UID is now %s)", w.owner(), node.UID)
		return nil, true, s.deleteRecord(ctx, w)
	case w != nil && w.Spec.NodeID != rec.NodeID:
		return nil, false, fmt.Errorf("%w: WeftNode %s carries node ID %s, this node's ID is %s; if the node that wrote it is gone, delete it (kubectl delete weftnode %s)",
			subnet.ErrNodeConflict, w.Name, w.Spec.NodeID, rec.NodeID, w.Name)
	case w == nil:
		w, err = s.create(ctx, newWeftNode(node, rec))
		if apierrors.IsAlreadyExists(err) {
			return nil, true, nil
		}
		if err != nil {
			return nil, false, err
		}
	}
	if _, err := w.record(); err != nil || w.Spec.Epoch <= 0 {
		// Ours but unfinished (epoch not yet written) or damaged:
		// finish it with our data, guarded.
		epoch := w.Spec.Epoch
		if epoch <= 0 {
			epoch = revision(w)
		}
		w.Spec = specOf(rec)
		w.Spec.Epoch = epoch
		if w, err = s.update(ctx, w); err != nil {
			return nil, apierrors.IsConflict(err), ignoreConflict(err)
		}
	}
	r, err := w.record()
	if err != nil {
		return nil, false, fmt.Errorf("claim: our WeftNode %s: %w", w.Name, err)
	}
	return &subnet.Lease{Subnet: v4, IPv6Subnet: v6, Record: r, Epoch: w.Spec.Epoch, ModRevision: revision(w)}, false, nil
}

// assigned returns the node's subnets, checked against nc.
func (s *Store) assigned(nc *subnet.Config, node *corev1.Node) (v4, v6 netip.Prefix, err error) {
	v4, v6, err = nodeSubnets(node)
	if err != nil {
		return v4, v6, fmt.Errorf("%w: %w", subnet.ErrSubnetRefused, err)
	}
	if !v4.IsValid() && !v6.IsValid() {
		return v4, v6, fmt.Errorf("%w: Node %s has no podCIDR: kube-controller-manager assigns them when run with --allocate-node-cidrs=true --cluster-cidr=%s (kubeadm: --pod-network-cidr), or set spec.podCIDRs when creating the Node",
			subnet.ErrNotAssigned, node.Name, clusterCIDRs(nc))
	}
	for _, f := range []struct {
		family  string
		p       netip.Prefix
		network netip.Prefix
	}{{"IPv4", v4, nc.Network}, {"IPv6", v6, nc.IPv6Network}} {
		if f.network.IsValid() && !f.p.IsValid() {
			return v4, v6, fmt.Errorf("%w: Node %s has podCIDRs %v but no %s one, and the network config's network %s needs one (kube-controller-manager's --cluster-cidr must hold %s)",
				subnet.ErrSubnetRefused, node.Name, node.Spec.PodCIDRs, f.family, f.network, clusterCIDRs(nc))
		}
	}
	probe := &subnet.Lease{Subnet: v4, IPv6Subnet: v6, Record: subnet.Record{NodeName: node.Name, NodeID: "-"}}
	if err := nc.CheckLease(probe); err != nil {
		return v4, v6, fmt.Errorf("%w: Node %s podCIDRs %v: %w (kube-controller-manager's --cluster-cidr and --node-cidr-mask-size must match the network config)",
			subnet.ErrSubnetRefused, node.Name, node.Spec.PodCIDRs, err)
	}
	return v4, v6, nil
}

// clusterCIDRs is the --cluster-cidr value that matches nc.
func clusterCIDRs(nc *subnet.Config) string {
	switch {
	case nc.Network.IsValid() && nc.IPv6Network.IsValid():
		return nc.Network.String() + "," + nc.IPv6Network.String()
	case nc.Network.IsValid():
		return nc.Network.String()
	}
	return nc.IPv6Network.String()
}

// getNode reads the Node; a missing one is an error wrapping
// subnet.ErrNotAssigned (the kubelet may not have registered it yet).
func (s *Store) getNode(ctx context.Context, name string) (*corev1.Node, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	n, err := s.cs.getNode(cctx, name)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%w: there is no Node %s (weftd's node name, from --node-name or NODE_NAME, must be its Node's name)", subnet.ErrNotAssigned, name)
	}
	if err != nil {
		return nil, fmt.Errorf("read Node %s: %w", name, err)
	}
	return n, nil
}

// getRecord reads the WeftNode (nil when there is none).
func (s *Store) getRecord(ctx context.Context, name string) (*WeftNode, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	u, err := s.dyn.Resource(GVR).Get(cctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read WeftNode %s: %w", name, err)
	}
	return fromUnstructured(u)
}

func (s *Store) create(ctx context.Context, w *WeftNode) (*WeftNode, error) {
	u, err := w.toUnstructured()
	if err != nil {
		return nil, err
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	u, err = s.dyn.Resource(GVR).Create(cctx, u, metav1.CreateOptions{FieldManager: fieldManager})
	if err != nil {
		return nil, fmt.Errorf("create WeftNode %s: %w", w.Name, err)
	}
	return fromUnstructured(u)
}

// update writes w, guarded by the resourceVersion it was read at.
func (s *Store) update(ctx context.Context, w *WeftNode) (*WeftNode, error) {
	u, err := w.toUnstructured()
	if err != nil {
		return nil, err
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	u, err = s.dyn.Resource(GVR).Update(cctx, u, metav1.UpdateOptions{FieldManager: fieldManager})
	if err != nil {
		return nil, fmt.Errorf("update WeftNode %s: %w", w.Name, err)
	}
	return fromUnstructured(u)
}

// deleteRecord deletes w only if it is still the object read (same UID and
// resourceVersion); a lost race is not an error (the caller reads again).
func (s *Store) deleteRecord(ctx context.Context, w *WeftNode) error {
	cctx, cancel := s.call(ctx)
	defer cancel()
	uid, rv := w.UID, w.ResourceVersion
	err := s.dyn.Resource(GVR).Delete(cctx, w.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv}})
	if err == nil || apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return fmt.Errorf("delete stale WeftNode %s: %w", w.Name, err)
}

func ignoreConflict(err error) error {
	if apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// UpdateRecord writes rec to our record, guarded by the resourceVersion it
// read, and only while the record is still the one of l (same epoch and
// node ID; else subnet.ErrLeaseLost). A write that loses a race reads
// again and re-checks.
func (s *Store) UpdateRecord(ctx context.Context, l *subnet.Lease, rec subnet.Record) (*subnet.Lease, error) {
	if rec.NodeName != l.Record.NodeName || rec.NodeID != l.Record.NodeID {
		return nil, fmt.Errorf("update record: the new record is for node %q (ID %s), the lease for %q (ID %s)",
			rec.NodeName, rec.NodeID, l.Record.NodeName, l.Record.NodeID)
	}
	if err := rec.Validate(); err != nil {
		return nil, fmt.Errorf("update record: invalid record (other nodes would reject it): %w", err)
	}
	for range maxTries {
		w, err := s.getRecord(ctx, rec.NodeName)
		if err != nil {
			return nil, fmt.Errorf("update record: %w", err)
		}
		if err := ours(w, l); err != nil {
			return nil, err
		}
		if s.testHookBeforeWrite != nil {
			s.testHookBeforeWrite()
		}
		w.Spec = specOf(rec)
		w.Spec.Epoch = l.Epoch
		nw, err := s.update(ctx, w)
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("update record: %w", err)
		}
		nl := *l
		nl.Record = rec
		nl.ModRevision = revision(nw)
		return &nl, nil
	}
	return nil, fmt.Errorf("update record: WeftNode %s kept changing; try again", rec.NodeName)
}

// ours returns an error wrapping subnet.ErrLeaseLost unless w is the
// record of lease l.
func ours(w *WeftNode, l *subnet.Lease) error {
	switch {
	case w == nil:
		return fmt.Errorf("%w: WeftNode %s is gone", subnet.ErrLeaseLost, l.Record.NodeName)
	case w.Spec.Epoch != l.Epoch:
		return fmt.Errorf("%w: WeftNode %s has epoch %d, our lease %d (it was created again)", subnet.ErrLeaseLost, w.Name, w.Spec.Epoch, l.Epoch)
	case w.Spec.NodeID != l.Record.NodeID:
		return fmt.Errorf("%w: WeftNode %s carries node ID %s, ours is %s", subnet.ErrLeaseLost, w.Name, w.Spec.NodeID, l.Record.NodeID)
	}
	return nil
}
