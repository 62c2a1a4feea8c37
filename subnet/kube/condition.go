// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Reason and message of the NetworkUnavailable condition weftd sets.
const (
	conditionReason  = "WeftIsUp"
	conditionMessage = "weft's data plane is ready on this node"
)

// SetNetworkAvailable sets the Node's NetworkUnavailable condition to False
// (flannel's --set-node-network-unavailable), unless it is already False
// for weft's reason. It never sets it True. One strategic-merge patch of
// the Node's status (conditions merge by type), so other conditions are
// left alone.
func (s *Store) SetNetworkAvailable(ctx context.Context, nodeName string) error {
	cctx, cancel := s.call(ctx)
	defer cancel()
	n, err := s.cs.getNode(cctx, nodeName)
	if err != nil {
		return fmt.Errorf("read Node %s: %w", nodeName, err)
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeNetworkUnavailable && c.Status == corev1.ConditionFalse && c.Reason == conditionReason {
			return nil
		}
	}
	now := metav1.NewTime(time.Now())
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{{
		Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionFalse,
		Reason: conditionReason, Message: conditionMessage,
		LastTransitionTime: now, LastHeartbeatTime: now,
	}}}})
	if err != nil {
		return err
	}
	if err := s.cs.patchNodeStatus(cctx, nodeName, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager}); err != nil {
		return fmt.Errorf("set Node %s condition NetworkUnavailable=False: %w", nodeName, err)
	}
	return nil
}
