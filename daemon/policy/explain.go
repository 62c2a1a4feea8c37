// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package policy

import (
	"net/netip"
	"regexp"
	"slices"
	"strconv"
)

// Direction is "egress" or "ingress".
type Direction string

// The directions of a policy.
const (
	Egress  Direction = "egress"
	Ingress Direction = "ingress"
)

// Explanation says why one direction of a packet is allowed or dropped by
// a node's state, for `weftctl policy explain`.
type Explanation struct {
	Direction Direction
	// Pod is the node's pod at the local end of the packet (the source
	// for egress, the destination for ingress).
	Pod Pod
	// Isolated: the pod is in the direction's isolation set (some policy
	// selects it for this direction), so only what a rule allows passes.
	Isolated bool
	Allowed  bool
	// Rule is the ID of the first rule that matched (the one whose counter
	// counts the packet); "" when none did.
	Rule string
	// SelectedBy are the policies ("namespace/name", sorted) that select
	// the pod for this direction.
	SelectedBy []string
	// Rules are the IDs of the direction's rules that apply to the pod
	// (it is in their local set), in the kernel's order: the rules the
	// packet was tried against.
	Rules []string
}

// Explain explains direction dir of p with the state s compiled from in:
// it returns false when the local end of p (the source for egress, the
// destination for ingress) is no pod of in.Node, so that s does not decide
// that direction. The verdict is [State.Evaluate]'s, which is the kernel's
// with s loaded.
func (s *State) Explain(in Input, p Packet, dir Direction) (Explanation, bool) {
	s.indexOnce.Do(s.buildIndex)
	local, rules, isoSets := p.Dst, s.Ingress, [2]string{IngressIsolated4, IngressIsolated6}
	if dir == Egress {
		local, rules, isoSets = p.Src, s.Egress, [2]string{EgressIsolated4, EgressIsolated6}
	}
	local = local.Unmap()
	pod, ok := LocalPod(in, local)
	if !ok {
		return Explanation{}, false
	}
	e := Explanation{Direction: dir, Pod: pod}
	iso := isoSets[0]
	if familyOf(local) == IPv6 {
		iso = isoSets[1]
	}
	e.Isolated = s.index[iso][local]
	for _, r := range rules {
		if r.Family == familyOf(local) && s.index[r.Local][local] {
			e.Rules = append(e.Rules, r.ID)
		}
	}
	d := s.Evaluate(p)
	switch {
	case dir == Egress:
		e.Rule, e.Allowed = d.Egress, d.DroppedBy != "egress"
	case d.DroppedBy == "egress":
		// Evaluate stops at a dropped egress; ingress on its own.
		e.Rule, e.Allowed = s.pass(s.Ingress, p, false)
	default:
		e.Rule, e.Allowed = d.Ingress, d.DroppedBy != "ingress"
	}
	e.SelectedBy = Selecting(in, pod, dir)
	return e, true
}

// LocalPod finds the pod of in.Node with address a.
func LocalPod(in Input, a netip.Addr) (Pod, bool) {
	for _, p := range in.Pods {
		if p.Node != in.Node {
			continue
		}
		for _, ip := range p.IPs {
			if ip.Unmap() == a {
				return p, true
			}
		}
	}
	return Pod{}, false
}

// Selecting returns the policies of in ("namespace/name", sorted) that
// select pod for direction dir, as [Compile] decides it: the policies
// whose podSelector matches the pod in its namespace and whose policy
// types include dir (an invalid policy included: it isolates, allowing
// nothing).
func Selecting(in Input, pod Pod, dir Direction) []string {
	var out []string
	for _, np := range in.Policies {
		if np.Namespace != pod.Namespace {
			continue
		}
		sel, err := compileSelector(&np.Spec.PodSelector)
		if err != nil || !sel.matches(pod.Labels) {
			continue
		}
		ing, eg := policyTypes(&np.Spec)
		if (dir == Ingress && ing) || (dir == Egress && eg) {
			out = append(out, np.Namespace+"/"+np.Name)
		}
	}
	slices.Sort(out)
	return out
}

// PodByName finds the pod namespace/name in in.Pods.
func PodByName(in Input, namespace, name string) (Pod, bool) {
	for _, p := range in.Pods {
		if p.Namespace == namespace && p.Name == name {
			return p, true
		}
	}
	return Pod{}, false
}

// RuleRef is what a rule ID says of the policy rule it comes from.
type RuleRef struct {
	// Policy is "namespace/name".
	Policy    string
	Direction Direction
	// Index is the rule's index in the policy's spec.ingress or
	// spec.egress.
	Index int
}

var ruleIDRe = regexp.MustCompile(`^([^ /]+/[^ /]+) (ingress|egress)\[([0-9]+)\]`)

// ParseRuleID returns the policy rule a [Rule] ID names; false for the IDs
// of rules that come from no policy (the default denies).
func ParseRuleID(id string) (RuleRef, bool) {
	m := ruleIDRe.FindStringSubmatch(id)
	if m == nil {
		return RuleRef{}, false
	}
	i, err := strconv.Atoi(m[3])
	if err != nil {
		return RuleRef{}, false
	}
	return RuleRef{Policy: m[1], Direction: Direction(m[2]), Index: i}, true
}
