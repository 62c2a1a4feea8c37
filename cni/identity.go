// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package cni

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/weftnet/weft/subnet"
)

// The CNI_ARGS keys the plugin reads (the names Kubernetes runtimes use).
const (
	ArgPodNamespace = "K8S_POD_NAMESPACE"
	ArgPodName      = "K8S_POD_NAME"
)

// maxCNIArgs bounds the CNI_ARGS string the plugin parses.
const maxCNIArgs = 16 << 10

// IdentityError is a pod identity the runtime passed that is not valid:
// a malformed CNI_ARGS (CNI code 4) or bad labels in the network config's
// args (code 7, Config set).
type IdentityError struct {
	// Config is set when the error is in the network config's args.
	Config bool
	Msg    string
}

func (e *IdentityError) Error() string { return e.Msg }

// ParsePodIdentity reads a pod's identity from the CNI call:
// K8S_POD_NAMESPACE and K8S_POD_NAME from cniArgs (CNI_ARGS,
// "KEY=VALUE;KEY=VALUE", other keys ignored) and the labels from the
// network config's args (its "cni" object's "labels", a list of
// {"key", "value"} as the CNI conventions pass them; other keys of args
// ignored). Everything read is validated (see
// [subnet.PodIdentity.Validate]); a bad value is an [*IdentityError],
// never dropped. No namespace, name or labels is the zero identity.
func ParsePodIdentity(cniArgs string, args json.RawMessage) (subnet.PodIdentity, error) {
	var id subnet.PodIdentity
	if len(cniArgs) > maxCNIArgs {
		return id, &IdentityError{Msg: fmt.Sprintf("CNI_ARGS is %d bytes: at most %d are accepted", len(cniArgs), maxCNIArgs)}
	}
	seen := map[string]bool{}
	for pair := range strings.SplitSeq(cniArgs, ";") {
		if pair == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		if !ok || k == "" {
			return id, &IdentityError{Msg: fmt.Sprintf("CNI_ARGS: %q is not KEY=VALUE", clipArg(pair))}
		}
		if k != ArgPodNamespace && k != ArgPodName {
			continue
		}
		if seen[k] {
			return id, &IdentityError{Msg: fmt.Sprintf("CNI_ARGS: %s given twice", k)}
		}
		seen[k] = true
		if k == ArgPodNamespace {
			id.Namespace = v
		} else {
			id.Name = v
		}
	}
	if id.Namespace != "" || id.Name != "" || seen[ArgPodNamespace] || seen[ArgPodName] {
		if id.Namespace == "" || id.Name == "" {
			return id, &IdentityError{Msg: fmt.Sprintf("CNI_ARGS: %s and %s must both be given (got %q and %q)", ArgPodNamespace, ArgPodName, id.Namespace, id.Name)}
		}
		if err := subnet.ValidateNamespace(id.Namespace); err != nil {
			return id, &IdentityError{Msg: "CNI_ARGS " + ArgPodNamespace + ": " + err.Error()}
		}
		if err := subnet.ValidatePodName(id.Name); err != nil {
			return id, &IdentityError{Msg: "CNI_ARGS " + ArgPodName + ": " + err.Error()}
		}
	}
	labels, err := parseLabels(args)
	if err != nil {
		return id, err
	}
	if len(labels) > 0 && id.Name == "" {
		return id, &IdentityError{Config: true, Msg: fmt.Sprintf("args.cni.labels given without %s and %s in CNI_ARGS: labels need a pod", ArgPodNamespace, ArgPodName)}
	}
	id.Labels = labels
	return id, nil
}

// parseLabels reads args.cni.labels.
func parseLabels(args json.RawMessage) (map[string]string, error) {
	bad := func(format string, a ...any) error {
		return &IdentityError{Config: true, Msg: "invalid network config: key \"args\": " + fmt.Sprintf(format, a...)}
	}
	if isNull(args) {
		return nil, nil
	}
	var a map[string]json.RawMessage
	if err := json.Unmarshal(args, &a); err != nil {
		return nil, bad("want an object, got %s", shorten(args))
	}
	if isNull(a["cni"]) {
		return nil, nil
	}
	var c map[string]json.RawMessage
	if err := json.Unmarshal(a["cni"], &c); err != nil {
		return nil, bad("cni: want an object, got %s", shorten(a["cni"]))
	}
	if isNull(c["labels"]) {
		return nil, nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(c["labels"], &list); err != nil {
		return nil, bad("cni.labels: want a list of {\"key\", \"value\"}, got %s", shorten(c["labels"]))
	}
	if len(list) > subnet.MaxLabels {
		return nil, bad("cni.labels: %d labels, at most %d are allowed", len(list), subnet.MaxLabels)
	}
	labels := make(map[string]string, len(list))
	for i, raw := range list {
		var l struct {
			Key   *string `json:"key"`
			Value *string `json:"value"`
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil || l.Key == nil || l.Value == nil {
			return nil, bad("cni.labels[%d]: want {\"key\": string, \"value\": string}, got %s", i, shorten(raw))
		}
		if _, dup := labels[*l.Key]; dup {
			return nil, bad("cni.labels[%d]: key %q given twice", i, *l.Key)
		}
		if err := subnet.ValidateLabel(*l.Key, *l.Value); err != nil {
			return nil, bad("cni.labels[%d]: %v", i, err)
		}
		labels[*l.Key] = *l.Value
	}
	if err := subnet.ValidateLabels(labels); err != nil {
		return nil, bad("cni.labels: %v", err)
	}
	return labels, nil
}

func isNull(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	return len(v) == 0 || bytes.Equal(v, []byte("null"))
}

func clipArg(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}
