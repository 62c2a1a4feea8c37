// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package status

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/weftnet/weft/subnet"
)

// PolicyExplainPath is weftd's endpoint explaining a packet with the
// policy state it applied: GET PolicyExplainPath?from=F&to=T&proto=P&port=N,
// F and T each a pod ("namespace/name") or an address, P tcp, udp or sctp,
// N 1-65535. It answers a [PolicyExplanation].
const PolicyExplainPath = "/policy/explain"

// PolicyExplanation is weftd's answer on [PolicyExplainPath]: for each
// address family the two ends share, the directions this node enforces
// (egress when the source is one of its pods, ingress when the
// destination is).
type PolicyExplanation struct {
	Node string `json:"node"`
	// Applied is when the explained state was applied to the kernel;
	// Revision and EndpointRevision are the store revisions it reflects.
	Applied          time.Time `json:"applied"`
	Revision         int64     `json:"revision"`
	EndpointRevision int64     `json:"endpointRevision"`
	// From and To are the ends as this node's state knows them.
	From PolicyEnd `json:"from"`
	To   PolicyEnd `json:"to"`
	// Proto is "TCP", "UDP" or "SCTP".
	Proto   string                `json:"proto"`
	Port    uint16                `json:"port"`
	Packets []PolicyPacketVerdict `json:"packets"`
}

// PolicyEnd is one end of an explained packet.
type PolicyEnd struct {
	// Pod is "namespace/name" when the end is a pod the state knows.
	Pod string `json:"pod,omitempty"`
	// Node is the node hosting the pod.
	Node string       `json:"node,omitempty"`
	IPs  []netip.Addr `json:"ips"`
}

// PolicyPacketVerdict is what one node's state does with a packet of one
// family: Egress is set when the source is a pod of this node, Ingress
// when the destination is.
type PolicyPacketVerdict struct {
	Src     netip.Addr              `json:"src"`
	Dst     netip.Addr              `json:"dst"`
	Egress  *PolicyDirectionVerdict `json:"egress,omitempty"`
	Ingress *PolicyDirectionVerdict `json:"ingress,omitempty"`
}

// PolicyDirectionVerdict is one direction's verdict and the rule that
// decides it.
type PolicyDirectionVerdict struct {
	// Pod is the local end ("namespace/name").
	Pod     string `json:"pod"`
	Allowed bool   `json:"allowed"`
	// Isolated is false when no policy selects the pod for this direction
	// (open).
	Isolated bool `json:"isolated"`
	// SelectedBy are the policies ("namespace/name") selecting the pod.
	SelectedBy []string `json:"selectedBy,omitempty"`
	// Rule is the rule that allowed the packet; nil when the pod is open
	// or no rule allows it.
	Rule *PolicyRuleCount `json:"rule,omitempty"`
	// DefaultDeny is the drop rule's counter when no rule allows the
	// packet of an isolated pod.
	DefaultDeny *PolicyRuleCount `json:"defaultDeny,omitempty"`
	// Rules are the direction's rules that apply to the pod, in the
	// kernel's order, with their counters.
	Rules []PolicyRuleCount `json:"rules,omitempty"`
}

// PolicyRuleCount is one rule of the policy table and its packet counter
// (weft_policy_packets_total{rule=ID}).
type PolicyRuleCount struct {
	ID string `json:"id"`
	// Policy ("namespace/name"), Direction and Index name the policy rule
	// (spec.ingress[Index] or spec.egress[Index]); empty for a default
	// deny.
	Policy    string `json:"policy,omitempty"`
	Direction string `json:"direction,omitempty"`
	Index     int    `json:"index"`
	Packets   uint64 `json:"packets"`
}

// MaxPolicyEnd bounds a from or to argument: a namespace (63 bytes), a
// slash and a pod name (253).
const MaxPolicyEnd = 63 + 1 + 253

// PolicyEndArg is a from or to argument of an explain query: a pod
// (Namespace and Name) or an address (Addr).
type PolicyEndArg struct {
	Namespace, Name string
	Addr            netip.Addr
}

// String is the argument as given: "namespace/name" or the address.
func (e PolicyEndArg) String() string {
	if e.Name != "" {
		return e.Namespace + "/" + e.Name
	}
	return e.Addr.String()
}

// ParsePolicyEnd parses a pod ("namespace/name", both checked as the
// Kubernetes API server checks them) or an IP address without zone.
func ParsePolicyEnd(s string) (PolicyEndArg, error) {
	switch {
	case s == "":
		return PolicyEndArg{}, errors.New("missing: give a pod (namespace/name) or an IP address")
	case len(s) > MaxPolicyEnd:
		return PolicyEndArg{}, fmt.Errorf("%d bytes: at most %d", len(s), MaxPolicyEnd)
	}
	if ns, name, ok := strings.Cut(s, "/"); ok {
		if err := subnet.ValidateNamespace(ns); err != nil {
			return PolicyEndArg{}, fmt.Errorf("pod %q: %w", clip(s), err)
		}
		if err := subnet.ValidatePodName(name); err != nil {
			return PolicyEndArg{}, fmt.Errorf("pod %q: %w", clip(s), err)
		}
		return PolicyEndArg{Namespace: ns, Name: name}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return PolicyEndArg{}, fmt.Errorf("%q is neither a pod (namespace/name) nor an IP address without zone", clip(s))
	}
	return PolicyEndArg{Addr: a.Unmap()}, nil
}

// clip shortens untrusted text quoted in an error.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
