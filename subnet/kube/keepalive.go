// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kube

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftnet/weft/subnet"
)

// KeepAlive holds l until ctx is done: the claim needs no renewal, so it
// watches this node's Node and record (an informer on each, selected by
// name) and returns an error wrapping subnet.ErrLeaseLost when the record
// is gone or no longer l's, or when the Node is deleted, or re-created
// (another UID than the record's owner), or holds other podCIDRs. A
// broken watch is re-established by the informers; nothing is decided
// before both have listed. onChange is never called (the store never
// changes l by itself).
func (s *Store) KeepAlive(ctx context.Context, l *subnet.Lease, onChange func(*subnet.Lease)) error {
	name := l.Record.NodeName
	nodes, err := s.nodeInformer(name)
	if err != nil {
		return err
	}
	recs, err := s.recordInformer(name)
	if err != nil {
		return err
	}
	kick := make(chan struct{}, 1)
	if _, err := nodes.AddEventHandler(kicker(kick)); err != nil {
		return fmt.Errorf("watch Node %s: %w", name, err)
	}
	if _, err := recs.AddEventHandler(kicker(kick)); err != nil {
		return fmt.Errorf("watch WeftNode %s: %w", name, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	synced, wait := runInformers(ctx, nodes, recs)
	defer func() { cancel(); wait() }()
	if !synced {
		return ctx.Err()
	}
	for {
		var node *corev1.Node
		var w *WeftNode
		if obj, ok, _ := nodes.GetStore().GetByKey(name); ok {
			node, _ = obj.(*corev1.Node)
		}
		if obj, ok, _ := recs.GetStore().GetByKey(name); ok {
			w, _ = obj.(*WeftNode)
		}
		if err := held(l, node, w); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-kick:
		}
	}
}

// held returns an error wrapping subnet.ErrLeaseLost unless the Node and
// record (nil: absent) still hold lease l.
func held(l *subnet.Lease, node *corev1.Node, w *WeftNode) error {
	if err := ours(w, l); err != nil {
		return err
	}
	if node == nil {
		return fmt.Errorf("%w: Node %s was deleted", subnet.ErrLeaseLost, l.Record.NodeName)
	}
	if owner := w.owner(); node.UID != owner {
		return fmt.Errorf("%w: Node %s was re-created (UID %s, our record's owner %s)", subnet.ErrLeaseLost, node.Name, node.UID, owner)
	}
	v4, v6, err := nodeSubnets(node)
	if err != nil || v4 != l.Subnet || v6 != l.IPv6Subnet {
		return fmt.Errorf("%w: Node %s podCIDRs are now %v, our lease's %s", subnet.ErrLeaseLost, node.Name, node.Spec.PodCIDRs, leaseSubnets(l))
	}
	return nil
}

func leaseSubnets(l *subnet.Lease) string {
	switch {
	case l.Subnet.IsValid() && l.IPv6Subnet.IsValid():
		return "[" + l.Subnet.String() + " " + l.IPv6Subnet.String() + "]"
	case l.Subnet.IsValid():
		return "[" + l.Subnet.String() + "]"
	}
	return "[" + l.IPv6Subnet.String() + "]"
}
