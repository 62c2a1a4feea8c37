// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package policy

import (
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DenyAllStandIn is what a policy source puts in place of a stored
// policy that fails [Validate] and has no valid version to keep: a policy
// named ns/name that isolates, in both directions and allowing nothing,
// the pods the broken object selects when its selector is valid, else
// every pod of the namespace. broken may be nil (nothing could be read).
// A broken entry therefore never opens traffic; it can only close it.
func DenyAllStandIn(ns, name string, broken *networkingv1.NetworkPolicy) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
		},
	}
	if broken != nil {
		np.Spec.PodSelector = *broken.Spec.PodSelector.DeepCopy()
		if Validate(np) != nil {
			np.Spec.PodSelector = metav1.LabelSelector{}
		}
	}
	if Validate(np) != nil {
		// The key's namespace or name is not valid: keep the namespace
		// isolated under a name that is.
		np.Name = "weft-invalid-entry"
	}
	return np
}
