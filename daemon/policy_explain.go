// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/weftnet/weft/daemon/policy"
	"github.com/weftnet/weft/daemon/status"
)

// appliedPolicy is the compiled state the kernel holds (the last
// successful apply) and the input it was compiled from, which
// GET /policy/explain answers from.
type appliedPolicy struct {
	in       policy.Input
	st       *policy.State
	at       time.Time
	rev, eps int64
}

// setAppliedPolicy records st (compiled from in) as the state in the
// kernel.
func (d *daemon) setAppliedPolicy(in policy.Input, st *policy.State, cur status.Policy) {
	d.pol.mu.Lock()
	d.pol.applied = &appliedPolicy{in: in, st: st, at: cur.LastApply, rev: cur.Revision, eps: cur.EndpointRevision}
	d.pol.mu.Unlock()
}

// policyPacketCounts returns the packets each rule of the applied table
// counted, across applies (the base plus the kernel's counters now; the
// base alone when the kernel cannot be read), and the rule IDs.
func (d *daemon) policyPacketCounts() (map[string]uint64, []string) {
	d.pol.mu.Lock()
	rules := d.pol.rules
	counts := make(map[string]uint64, len(d.pol.base))
	for k, v := range d.pol.base {
		counts[k] = v
	}
	d.pol.mu.Unlock()
	if len(rules) == 0 {
		return counts, nil
	}
	if now, err := readPolicyCounters(); err == nil {
		for k, v := range now {
			counts[k] += v
		}
	}
	return counts, rules
}

// maxExplainQuery bounds an explain query (it comes from the network:
// untrusted).
const maxExplainQuery = 1024

// explainQuery is a checked GET /policy/explain query.
type explainQuery struct {
	from, to status.PolicyEndArg
	proto    uint8
	port     uint16
}

// parseExplainQuery checks a GET /policy/explain query: exactly the
// parameters from, to, proto and port, each once.
func parseExplainQuery(raw string) (explainQuery, error) {
	var q explainQuery
	if len(raw) > maxExplainQuery {
		return q, fmt.Errorf("query of %d bytes: at most %d", len(raw), maxExplainQuery)
	}
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return q, fmt.Errorf("query: %w", err)
	}
	for k, v := range vals {
		switch k {
		case "from", "to", "proto", "port":
			if len(v) != 1 {
				return q, fmt.Errorf("parameter %s given %d times: give it once", k, len(v))
			}
		default:
			return q, fmt.Errorf("unknown parameter %q (want from, to, proto, port)", clipString(k))
		}
	}
	for _, e := range []struct {
		key string
		end *status.PolicyEndArg
	}{{"from", &q.from}, {"to", &q.to}} {
		if *e.end, err = status.ParsePolicyEnd(vals.Get(e.key)); err != nil {
			return q, fmt.Errorf("%s: %w", e.key, err)
		}
	}
	switch p := strings.ToUpper(vals.Get("proto")); p {
	case "TCP":
		q.proto = policy.ProtoTCP
	case "UDP":
		q.proto = policy.ProtoUDP
	case "SCTP":
		q.proto = policy.ProtoSCTP
	default:
		return q, fmt.Errorf("proto %q: want tcp, udp or sctp", clipString(vals.Get("proto")))
	}
	port, err := strconv.ParseUint(vals.Get("port"), 10, 16)
	if err != nil || port == 0 {
		return q, fmt.Errorf("port %q: want 1-65535", clipString(vals.Get("port")))
	}
	q.port = uint16(port)
	return q, nil
}

// clipString shortens untrusted text quoted in an error.
func clipString(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// errNoPod is returned for a pod the applied state does not know.
var errNoPod = errors.New("not in this node's applied policy state")

// resolve turns e into a status.PolicyEnd with the pod's addresses.
func (a *appliedPolicy) resolve(e status.PolicyEndArg) (status.PolicyEnd, error) {
	if e.Name != "" {
		p, ok := policy.PodByName(a.in, e.Namespace, e.Name)
		if !ok {
			return status.PolicyEnd{}, fmt.Errorf("pod %s: %w", e, errNoPod)
		}
		return status.PolicyEnd{Pod: e.String(), Node: p.Node, IPs: unmapAll(p.IPs)}, nil
	}
	out := status.PolicyEnd{IPs: []netip.Addr{e.Addr}}
	for _, p := range a.in.Pods {
		for _, ip := range p.IPs {
			if ip.Unmap() == e.Addr {
				out.Pod, out.Node = p.Namespace+"/"+p.Name, p.Node
			}
		}
	}
	return out, nil
}

func unmapAll(as []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(as))
	for _, a := range as {
		out = append(out, a.Unmap())
	}
	return out
}

// explain answers q from a: a packet per family both ends have.
func (a *appliedPolicy) explain(node string, q explainQuery, counts map[string]uint64) (*status.PolicyExplanation, error) {
	from, err := a.resolve(q.from)
	if err != nil {
		return nil, err
	}
	to, err := a.resolve(q.to)
	if err != nil {
		return nil, err
	}
	out := &status.PolicyExplanation{Node: node, Applied: a.at, Revision: a.rev, EndpointRevision: a.eps,
		From: from, To: to, Proto: protoName(q.proto), Port: q.port, Packets: []status.PolicyPacketVerdict{}}
	for _, v6 := range []bool{false, true} {
		src, ok1 := addrOfFamily(from.IPs, v6)
		dst, ok2 := addrOfFamily(to.IPs, v6)
		if !ok1 || !ok2 {
			continue
		}
		pkt := policy.Packet{Src: src, Dst: dst, Proto: q.proto, DstPort: q.port}
		v := status.PolicyPacketVerdict{Src: src, Dst: dst}
		if e, ok := a.st.Explain(a.in, pkt, policy.Egress); ok {
			v.Egress = directionVerdict(e, v6, counts)
		}
		if e, ok := a.st.Explain(a.in, pkt, policy.Ingress); ok {
			v.Ingress = directionVerdict(e, v6, counts)
		}
		out.Packets = append(out.Packets, v)
	}
	if len(out.Packets) == 0 {
		return nil, fmt.Errorf("%s (%v) and %s (%v) share no address family", q.from, from.IPs, q.to, to.IPs)
	}
	return out, nil
}

func addrOfFamily(as []netip.Addr, v6 bool) (netip.Addr, bool) {
	for _, a := range as {
		if a.Is6() == v6 {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func directionVerdict(e policy.Explanation, v6 bool, counts map[string]uint64) *status.PolicyDirectionVerdict {
	v := &status.PolicyDirectionVerdict{Pod: e.Pod.Namespace + "/" + e.Pod.Name, Allowed: e.Allowed, Isolated: e.Isolated, SelectedBy: e.SelectedBy}
	for _, id := range e.Rules {
		v.Rules = append(v.Rules, ruleCount(id, counts))
	}
	if e.Rule != "" {
		rc := ruleCount(e.Rule, counts)
		v.Rule = &rc
	}
	if e.Isolated && !e.Allowed {
		fam := policy.IPv4
		if v6 {
			fam = policy.IPv6
		}
		if id := dropCounterID(e.Direction == policy.Egress, fam); id != "" {
			rc := ruleCount(id, counts)
			v.DefaultDeny = &rc
		}
	}
	return v
}

func ruleCount(id string, counts map[string]uint64) status.PolicyRuleCount {
	rc := status.PolicyRuleCount{ID: id, Packets: counts[id]}
	if ref, ok := policy.ParseRuleID(id); ok {
		rc.Policy, rc.Direction, rc.Index = ref.Policy, string(ref.Direction), ref.Index
	}
	return rc
}

func protoName(p uint8) string {
	switch p {
	case policy.ProtoTCP:
		return "TCP"
	case policy.ProtoUDP:
		return "UDP"
	case policy.ProtoSCTP:
		return "SCTP"
	}
	return strconv.Itoa(int(p))
}

// handlePolicyExplain serves GET /policy/explain (status.PolicyExplainPath).
func (d *daemon) handlePolicyExplain(w http.ResponseWriter, r *http.Request) {
	q, err := parseExplainQuery(r.URL.RawQuery)
	if err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	d.pol.mu.Lock()
	a, mode := d.pol.applied, d.pol.st.Mode
	d.pol.mu.Unlock()
	if a == nil {
		why := "no policy state applied yet on this node"
		if mode == policyModeOff || mode == policyModeUnsupported {
			why = "network policy is not enforced on this node (mode " + mode + ")"
		}
		http.Error(w, why, http.StatusServiceUnavailable)
		return
	}
	counts, _ := d.policyPacketCounts()
	out, err := a.explain(d.nodeName, q, counts)
	switch {
	case errors.Is(err, errNoPod):
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusUnprocessableEntity)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}
