// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package policy

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Compile computes the desired state of in.Node from the cluster's
// policies, pods and namespaces. It is pure and deterministic: the same
// input gives the same state.
//
// Semantics (networking.k8s.io/v1): a pod selected by a policy whose
// policyTypes include a direction is isolated in that direction and only
// what some rule of some policy selecting it allows passes (policies are a
// union); a pod no policy isolates is open. Empty policyTypes mean Ingress,
// plus Egress when the policy has egress rules. A rule with no peers allows
// every peer, one with no ports every port and protocol. A named port is
// resolved on the destination pod; where it cannot be (the pod did not
// declare it, or its ports are unknown) the rule is skipped for that pod
// and a [Problem] says so. An invalid policy is reported and still
// isolates the pods it selects, allowing nothing.
func Compile(in Input) *State {
	c := compiler{in: in, st: &State{}, sets: map[string]string{}, selections: map[string]*selection{}}
	c.run()
	return c.st
}

type compiler struct {
	in       Input
	st       *State
	nsLabels map[string]map[string]string
	pods     []Pod
	sets     map[string]string // content key → set name, to share equal sets
	isolated [2]map[Family][]netip.Addr
	// selections holds what each distinct list of selector peers selects,
	// by its selectorKey: policies that name the same peers (every policy
	// allowing "all namespaces", say) select them once, not once each
	// over every pod of the cluster.
	selections map[string]*selection
}

// selection is what a rule's selector peers select: the pods, and the
// names of the sets of their addresses by family ("" for none), made when
// first asked for. Shared between rules: read only once made.
type selection struct {
	pods []Pod
	sets map[Family]string
}

type direction int

const (
	ingress direction = iota
	egress
)

func (d direction) String() string {
	if d == ingress {
		return "ingress"
	}
	return "egress"
}

func (c *compiler) run() {
	c.nsLabels = map[string]map[string]string{}
	for _, ns := range c.in.Namespaces {
		m := map[string]string{}
		for k, v := range ns.Labels {
			m[k] = v
		}
		m[NamespaceNameLabel] = ns.Name
		c.nsLabels[ns.Name] = m
	}
	// Only policies read the pods: with none (most nodes of a cluster
	// without policies) the sort of every pod is not worth making.
	if len(c.in.Policies) > 0 {
		c.pods = slices.Clone(c.in.Pods)
		slices.SortFunc(c.pods, func(a, b Pod) int {
			return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
		})
	}
	c.isolated = [2]map[Family][]netip.Addr{{}, {}}
	pols := slices.Clone(c.in.Policies)
	slices.SortFunc(pols, func(a, b *networkingv1.NetworkPolicy) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	for i, np := range pols {
		c.policy(i, np)
	}
	for _, s := range []struct {
		name string
		dir  direction
		fam  Family
	}{{IngressIsolated4, ingress, IPv4}, {IngressIsolated6, ingress, IPv6}, {EgressIsolated4, egress, IPv4}, {EgressIsolated6, egress, IPv6}} {
		c.st.Sets = append(c.st.Sets, Set{Name: s.name, Family: s.fam, Comment: "this node's pods isolated for " + s.dir.String(), Addrs: uniq(c.isolated[s.dir][s.fam])})
	}
}

func (c *compiler) namespaceLabels(ns string) map[string]string {
	if m, ok := c.nsLabels[ns]; ok {
		return m
	}
	return map[string]string{NamespaceNameLabel: ns}
}

func (c *compiler) problem(np *networkingv1.NetworkPolicy, field, format string, a ...any) {
	c.st.Problems = append(c.st.Problems, Problem{Policy: np.Namespace + "/" + np.Name, Field: field, Detail: fmt.Sprintf(format, a...)})
}

// policyTypes applies the API's defaulting.
func policyTypes(spec *networkingv1.NetworkPolicySpec) (in, eg bool) {
	if len(spec.PolicyTypes) == 0 {
		return true, len(spec.Egress) > 0
	}
	for _, t := range spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			in = true
		case networkingv1.PolicyTypeEgress:
			eg = true
		}
	}
	return in, eg
}

func (c *compiler) policy(idx int, np *networkingv1.NetworkPolicy) {
	sel, err := compileSelector(&np.Spec.PodSelector)
	if err != nil {
		c.problem(np, "spec.podSelector", "policy ignored: %v", err)
		return
	}
	valid := true
	if errs := Validate(np); len(errs) > 0 {
		c.problem(np, "", "invalid policy, enforced as deny-all for the pods it selects: %v", errs)
		valid = false
	}
	var local []Pod
	for _, p := range c.pods {
		if p.Node == c.in.Node && p.Namespace == np.Namespace && sel.matches(p.Labels) {
			local = append(local, p)
		}
	}
	if len(local) == 0 {
		return
	}
	in, eg := policyTypes(&np.Spec)
	pc := policyCompiler{compiler: c, np: np, idx: idx, local: local}
	if in {
		pc.isolate(ingress)
		if valid {
			for i, r := range np.Spec.Ingress {
				pc.rule(ingress, i, r.From, r.Ports)
			}
		}
	}
	if eg {
		pc.isolate(egress)
		if valid {
			for i, r := range np.Spec.Egress {
				pc.rule(egress, i, r.To, r.Ports)
			}
		}
	}
}

type policyCompiler struct {
	*compiler
	np    *networkingv1.NetworkPolicy
	idx   int
	local []Pod
	nsets int
}

func (pc *policyCompiler) isolate(d direction) {
	for _, p := range pc.local {
		for _, a := range p.IPs {
			pc.isolated[d][familyOf(a)] = append(pc.isolated[d][familyOf(a)], a.Unmap())
		}
	}
}

// set returns the name of a set holding addrs (of family f), making it if
// no equal set exists yet.
func (pc *policyCompiler) set(f Family, comment string, addrs []netip.Addr) string {
	addrs = uniq(addrs)
	key := setKey(f, addrs)
	if name, ok := pc.sets[key]; ok {
		return name
	}
	pc.nsets++
	name := fmt.Sprintf("p%d-s%d-%d", pc.idx, pc.nsets, f)
	pc.sets[key] = name
	pc.st.Sets = append(pc.st.Sets, Set{Name: name, Family: f, Comment: comment, Addrs: addrs})
	return name
}

// setKey is the content key of a set: its family and its sorted
// addresses, 16 bytes each.
func setKey(f Family, addrs []netip.Addr) string {
	b := make([]byte, 1, 1+16*len(addrs))
	b[0] = byte(f)
	for _, a := range addrs {
		x := a.As16()
		b = append(b, x[:]...)
	}
	return string(b)
}

func addrsOf(pods []Pod, f Family) []netip.Addr {
	var out []netip.Addr
	for _, p := range pods {
		for _, a := range p.IPs {
			if familyOf(a) == f {
				out = append(out, a.Unmap())
			}
		}
	}
	return out
}

// peerSet returns the name of the set of the selected peer pods'
// addresses of family f, "" when they have none.
func (pc *policyCompiler) peerSet(f Family, ps peers, ruleField string) string {
	if name, ok := ps.sets[f]; ok {
		return name
	}
	name := ""
	if addrs := addrsOf(ps.pods, f); len(addrs) > 0 {
		name = pc.set(f, pc.np.Namespace+"/"+pc.np.Name+" "+ruleField+" peer pods", addrs)
	}
	ps.sets[f] = name
	return name
}

// portItem is one entry of a rule's ports, resolved where it can be.
type portItem struct {
	field  string
	proto  uint8 // 0: any protocol (a rule without ports)
	lo, hi uint16
	named  string
}

func (pc *policyCompiler) ports(d direction, ruleField string, ports []networkingv1.NetworkPolicyPort) []portItem {
	if len(ports) == 0 {
		return []portItem{{field: ruleField}}
	}
	var out []portItem
	for j, p := range ports {
		it := portItem{field: fmt.Sprintf("%s.ports[%d]", ruleField, j), proto: ProtoTCP}
		if p.Protocol != nil {
			it.proto = protoNumber(*p.Protocol)
		}
		switch {
		case p.Port == nil:
		case p.Port.Type == intstr.String:
			it.named = p.Port.StrVal
		default:
			it.lo, it.hi = uint16(p.Port.IntVal), uint16(p.Port.IntVal)
			if p.EndPort != nil {
				it.hi = uint16(*p.EndPort)
			}
		}
		out = append(out, it)
	}
	return out
}

// resolve finds pod's container port named name with protocol proto.
func resolve(pod Pod, name string, proto uint8) (uint16, bool) {
	for _, np := range pod.Ports {
		if np.Name == name && protoNumber(np.Protocol) == proto {
			return np.Port, true
		}
	}
	return 0, false
}

type peers struct {
	all bool // no peers listed: everyone
	// *selection holds the pods the pod/namespace selectors select.
	*selection
	blocks []block
}

type block struct {
	field  string
	cidr   netip.Prefix
	except []netip.Prefix
}

func (b block) contains(a netip.Addr) bool {
	return b.cidr.Contains(a) && !slices.ContainsFunc(b.except, func(e netip.Prefix) bool { return e.Contains(a) })
}

func (pc *policyCompiler) peers(ruleField, peerKey string, list []networkingv1.NetworkPolicyPeer) peers {
	if len(list) == 0 {
		return peers{all: true, selection: &selection{sets: map[Family]string{}}}
	}
	var ps peers
	for k, peer := range list {
		if peer.IPBlock == nil {
			continue
		}
		b := block{field: fmt.Sprintf("%s.%s[%d]", ruleField, peerKey, k)}
		var err error
		if b.cidr, err = parseCIDR(peer.IPBlock.CIDR); err != nil {
			continue // Validate reported it
		}
		for _, e := range peer.IPBlock.Except {
			if ep, err := parseCIDR(e); err == nil {
				b.except = append(b.except, ep)
			}
		}
		ps.blocks = append(ps.blocks, b)
	}
	key, keyed := selectorKey(pc.np.Namespace, list)
	if sel := pc.selections[key]; keyed && sel != nil {
		ps.selection = sel
		return ps
	}
	ps.selection = &selection{sets: map[Family]string{}}
	if keyed {
		pc.selections[key] = ps.selection
	}
	seen := map[*Pod]bool{}
	for _, peer := range list {
		if peer.IPBlock != nil {
			continue
		}
		var podSel, nsSel selector
		var err error
		if peer.PodSelector != nil {
			if podSel, err = compileSelector(peer.PodSelector); err != nil {
				continue
			}
		}
		if peer.NamespaceSelector != nil {
			if nsSel, err = compileSelector(peer.NamespaceSelector); err != nil {
				continue
			}
		}
		for i := range pc.pods {
			p := &pc.pods[i]
			if peer.NamespaceSelector == nil {
				if p.Namespace != pc.np.Namespace {
					continue
				}
			} else if !nsSel.matches(pc.namespaceLabels(p.Namespace)) {
				continue
			}
			if peer.PodSelector != nil && !podSel.matches(p.Labels) {
				continue
			}
			if !seen[p] {
				seen[p] = true
				ps.pods = append(ps.pods, *p)
			}
		}
	}
	return ps
}

// selectorKey names what the selector peers of list select (its ipBlock
// peers left out), for the caches of the compiler: their selectors as
// JSON (map keys sorted), and the policy's namespace when a peer without
// a namespace selector makes it count. ok is false when a selector does
// not encode.
func selectorKey(ns string, list []networkingv1.NetworkPolicyPeer) (key string, ok bool) {
	var b strings.Builder
	for _, peer := range list {
		if peer.IPBlock != nil {
			continue
		}
		podSel, err1 := json.Marshal(peer.PodSelector)
		nsSel, err2 := json.Marshal(peer.NamespaceSelector)
		if err1 != nil || err2 != nil {
			return "", false
		}
		b.Write(podSel)
		b.WriteByte(' ')
		b.Write(nsSel)
		if peer.NamespaceSelector == nil {
			b.WriteString(" in ")
			b.WriteString(ns)
		}
		b.WriteByte('\n')
	}
	return b.String(), true
}

func (pc *policyCompiler) rule(d direction, i int, list []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort) {
	ruleField := fmt.Sprintf("spec.%s[%d]", d, i)
	peerKey := "from"
	if d == egress {
		peerKey = "to"
	}
	ps := pc.peers(ruleField, peerKey, list)
	items := pc.ports(d, ruleField, ports)
	name := pc.np.Namespace + "/" + pc.np.Name
	unresolved := map[string][]string{} // port item field → pods
	defer func() {
		for _, it := range items {
			pods := uniqStrings(unresolved[it.field])
			if len(pods) == 0 {
				continue
			}
			more := ""
			if len(pods) > 5 {
				more = fmt.Sprintf(" and %d more", len(pods)-5)
				pods = pods[:5]
			}
			pc.problem(pc.np, it.field, "named port %q (%s) cannot be resolved for %s%s: skipped for them", it.named, protocolName(it.proto), strings.Join(pods, ", "), more)
		}
	}()
	for _, f := range []Family{IPv4, IPv6} {
		localAddrs := addrsOf(pc.local, f)
		if len(localAddrs) == 0 {
			continue
		}
		for _, it := range items {
			id := func(peer string) string {
				return fmt.Sprintf("%s %s %s ipv%d", name, strings.TrimPrefix(it.field, "spec."), peer, f)
			}
			if it.named == "" {
				pc.emit(d, f, ps, it, pc.set(f, name+" "+d.String()+" selected pods", localAddrs), ruleField, peerKey, id)
				continue
			}
			unresolved[it.field] = append(unresolved[it.field], pc.named(d, f, ps, it, ruleField, peerKey, name)...)
		}
	}
}

// emit appends the rules for one port item and one family: one for the
// selected peer pods, one per ipBlock, or one without a peer condition.
func (pc *policyCompiler) emit(d direction, f Family, ps peers, it portItem, local, ruleField, peerKey string, id func(string) string) {
	base := Rule{Family: f, Local: local, Proto: it.proto, PortLo: it.lo, PortHi: it.hi}
	add := func(r Rule) {
		if d == ingress {
			pc.st.Ingress = append(pc.st.Ingress, r)
		} else {
			pc.st.Egress = append(pc.st.Egress, r)
		}
	}
	if ps.all {
		r := base
		r.ID = id("any peer")
		add(r)
		return
	}
	if set := pc.peerSet(f, ps, ruleField); set != "" {
		r := base
		r.Peer = set
		r.ID = id(peerKey + " pods")
		add(r)
	}
	for _, b := range ps.blocks {
		if familyOf(b.cidr.Addr()) != f {
			continue
		}
		r := base
		r.Block, r.Except = b.cidr, b.except
		r.ID = id(strings.TrimPrefix(b.field, ruleField+".") + " ipBlock " + b.cidr.String())
		add(r)
	}
}

// named compiles a named port: ingress resolves it on the selected (local)
// pods, egress on the peer pods; pods are grouped by the number the name
// resolves to, so each group gets one rule.
func (pc *policyCompiler) named(d direction, f Family, ps peers, it portItem, ruleField, peerKey, name string) (unresolved []string) {
	var candidates []Pod
	if d == ingress {
		candidates = pc.local
	} else {
		selected := make(map[[2]string]bool, len(ps.pods))
		for _, q := range ps.pods {
			selected[[2]string{q.Namespace, q.Name}] = true
		}
		for _, p := range pc.pods {
			addrs := addrsOf([]Pod{p}, f)
			if len(addrs) == 0 {
				continue
			}
			in := ps.all || selected[[2]string{p.Namespace, p.Name}]
			for _, b := range ps.blocks {
				for _, a := range addrs {
					in = in || b.contains(a)
				}
			}
			if in {
				candidates = append(candidates, p)
			}
		}
	}
	groups := map[uint16][]Pod{}
	for _, p := range candidates {
		port, ok := resolve(p, it.named, it.proto)
		if !ok {
			why := "not declared"
			if p.Ports == nil {
				why = "ports unknown"
			}
			unresolved = append(unresolved, fmt.Sprintf("%s/%s (%s)", p.Namespace, p.Name, why))
			continue
		}
		groups[port] = append(groups[port], p)
	}
	nums := make([]uint16, 0, len(groups))
	for n := range groups {
		nums = append(nums, n)
	}
	slices.Sort(nums)
	for _, n := range nums {
		g := it
		g.lo, g.hi = n, n
		gid := func(peer string) string {
			return fmt.Sprintf("%s %s %s %s=%d ipv%d", name, strings.TrimPrefix(it.field, "spec."), peer, it.named, n, f)
		}
		if d == ingress {
			local := pc.set(f, fmt.Sprintf("%s %s selected pods with %s=%d", name, it.field, it.named, n), addrsOf(groups[n], f))
			pc.emit(d, f, ps, g, local, ruleField, peerKey, gid)
			continue
		}
		local := pc.set(f, name+" egress selected pods", addrsOf(pc.local, f))
		r := Rule{Family: f, Local: local, Proto: g.proto, PortLo: n, PortHi: n, ID: gid(peerKey)}
		r.Peer = pc.set(f, fmt.Sprintf("%s %s peer pods with %s=%d", name, it.field, it.named, n), addrsOf(groups[n], f))
		pc.st.Egress = append(pc.st.Egress, r)
	}
	return unresolved
}

func uniqStrings(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

func uniq(addrs []netip.Addr) []netip.Addr {
	out := slices.Clone(addrs)
	slices.SortFunc(out, netip.Addr.Compare)
	out = slices.Compact(out)
	if out == nil {
		out = []netip.Addr{}
	}
	return out
}

// protocolName is the Kubernetes name of an IP protocol number.
func protocolName(p uint8) corev1.Protocol {
	switch p {
	case ProtoTCP:
		return corev1.ProtocolTCP
	case ProtoUDP:
		return corev1.ProtocolUDP
	case ProtoSCTP:
		return corev1.ProtocolSCTP
	}
	return corev1.Protocol(fmt.Sprint(p))
}
