// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package subnet

import (
	"context"

	networkingv1 "k8s.io/api/networking/v1"
)

// PolicySource is where a node's network policies and namespace labels
// come from: the etcd store (`weftctl policy apply`, `weftctl namespace
// label`) or, later, Kubernetes informers. It is level-triggered: a
// consumer lists, compiles, then waits for a change and lists again.
type PolicySource interface {
	// ListPolicies returns every policy and namespace of the source,
	// each one valid (see [PolicyView.Rejected]).
	ListPolicies(ctx context.Context) (*PolicyView, error)
	// WaitPolicies returns nil once the source has changed after the
	// view of revision rev, or an error when ctx ends or the source
	// fails. A spurious return is allowed; a missed change is not.
	WaitPolicies(ctx context.Context, rev int64) error
}

// PolicyView is one consistent picture of a [PolicySource].
type PolicyView struct {
	// Policies are sorted by namespace, then name. Each one passed
	// validation; in place of a stored object that fails it, the view
	// holds that key's last valid version seen by this source, or, when
	// there was none, a policy that denies every ingress and egress of
	// the pods the broken object selects (of its whole namespace when its
	// selector cannot be read). A broken entry therefore never opens
	// traffic; it can only close it.
	Policies []*networkingv1.NetworkPolicy
	// Namespaces are the namespaces with stored labels, sorted by name;
	// the implicit kubernetes.io/metadata.name label is included. A
	// broken entry is replaced by its last valid version, or, when there
	// was none, by the namespace with only the implicit label.
	Namespaces []PolicyNamespace
	// Revision orders views of one source (0 when it does not say).
	Revision int64
	// Rejected lists the stored entries that failed validation, sorted
	// by key, with what stands in their place.
	Rejected []RejectedEntry
}

// PolicyNamespace is a namespace and its labels.
type PolicyNamespace struct {
	Name   string
	Labels map[string]string
}

// RejectedEntry is a stored policy or namespace entry that failed
// validation.
type RejectedEntry struct {
	// Key is where the entry is stored.
	Key string
	// Err says why it was rejected.
	Err error
	// Kept is true when the entry's last valid version stands in its
	// place, false when the deny-all (policy) or the bare namespace does.
	Kept bool
}
