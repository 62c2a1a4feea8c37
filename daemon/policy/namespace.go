// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package policy

import "github.com/weftnet/weft/subnet/k8sname"

// ValidateNamespace checks a namespace's name and labels as the API server
// checks a Namespace's metadata. The label [NamespaceNameLabel] may be
// given only with the namespace's own name (Kubernetes sets it and keeps
// it so).
func ValidateNamespace(ns Namespace) ErrorList {
	var v validator
	if ns.Name == "" {
		v.add("metadata.name", ErrRequired, "name or generateName is required")
	} else if msg := k8sname.DNSLabel(ns.Name); msg != "" {
		v.add("metadata.name", ErrInvalid, "%q: %s", ns.Name, msg)
	}
	v.labels(ns.Labels, "metadata.labels")
	if val, ok := ns.Labels[NamespaceNameLabel]; ok && val != ns.Name {
		v.add("metadata.labels", ErrInvalid, "%q: label %s must be the namespace's name %q", val, NamespaceNameLabel, ns.Name)
	}
	return v.errs
}
