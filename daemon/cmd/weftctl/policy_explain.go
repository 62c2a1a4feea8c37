// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/weftnet/weft/daemon/status"
	"github.com/weftnet/weft/subnet"
)

const explainUsage = `usage: weftctl policy explain --from POD|IP --to POD|IP --port PORT[/PROTO] [flags]

Says whether a connection from --from to --to is allowed, and which
policy rule decides: egress as the source's node enforces it, ingress as
the destination's node does. Each node's weftd answers from the policy
state it applied to the kernel (GET /policy/explain on its --http-addr,
asked at its lease's public IP and --http-port). The ends and nodes
are found in etcd (published endpoints, leases) or, with --kubeconfig,
from the API server (the Pod's spec.nodeName and status.podIPs; an IP's
node is the Node whose podCIDR holds it). A POD is
namespace/name; an IP that is no pod's is outside the cluster (an
ipBlock peer), so only the pod end's node is asked. PROTO is tcp
(default), udp or sctp.
`

// explainSide is one direction of an explained packet: the node that
// enforces it and its verdict, or why there is none.
type explainSide struct {
	Node string `json:"node,omitempty"`
	// Verdict is the node's; nil when the end is no pod of any node
	// (not enforced by weft) or when the node did not answer (Error).
	Verdict *status.PolicyDirectionVerdict `json:"verdict,omitempty"`
	Error   string                         `json:"error,omitempty"`
}

// explainPacket is the explanation of one address family.
type explainPacket struct {
	Src     netip.Addr   `json:"src"`
	Dst     netip.Addr   `json:"dst"`
	Allowed bool         `json:"allowed"`
	Egress  *explainSide `json:"egress,omitempty"`
	Ingress *explainSide `json:"ingress,omitempty"`
}

// explainResult is `weftctl policy explain -o json`.
type explainResult struct {
	From    string          `json:"from"`
	To      string          `json:"to"`
	Proto   string          `json:"proto"`
	Port    uint16          `json:"port"`
	Packets []explainPacket `json:"packets"`
	// Answers are the nodes' documents as served.
	Answers map[string]*status.PolicyExplanation `json:"answers"`
}

// parsePortProto parses PORT[/PROTO] ("80", "80/tcp", "53/UDP").
func parsePortProto(s string) (uint16, string, error) {
	port, proto, ok := strings.Cut(s, "/")
	if !ok {
		proto = "tcp"
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return 0, "", fmt.Errorf("--port %q: want PORT[/PROTO] with PORT 1-65535", s)
	}
	switch strings.ToLower(proto) {
	case "tcp", "udp", "sctp":
		return uint16(n), strings.ToUpper(proto), nil
	}
	return 0, "", fmt.Errorf("--port %q: protocol %q: want tcp, udp or sctp", s, proto)
}

func policyExplain(ctx context.Context, args []string, cio *cmdIO) error {
	fs := flag.NewFlagSet("weftctl policy explain", flag.ContinueOnError)
	fs.SetOutput(cio.errOut)
	fs.Usage = func() { fmt.Fprint(cio.errOut, explainUsage); fs.PrintDefaults() }
	conn := connFlags(fs)
	fromArg := fs.String("from", "", "source: a pod (namespace/name) or an IP address")
	toArg := fs.String("to", "", "destination: a pod (namespace/name) or an IP address")
	portArg := fs.String("port", "", "destination port and protocol: PORT[/tcp|udp|sctp]")
	httpPort := fs.Int("http-port", defaultHTTPPort, "the port of weftd's --http-addr on each node's public IP")
	nodeAddrs := nodeAddrFlag{}
	fs.Var(nodeAddrs, "node-addr", "NODE=HOST:PORT: ask NODE's weftd there instead (repeatable; for a weftd listening on 127.0.0.1 only, run on its node)")
	output := fs.String("o", "table", "output: table or json")
	kubeconfig := kubeconfigFlag(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("policy explain: unexpected arguments %q (give --from, --to and --port)", pos)
	}
	from, err := status.ParsePolicyEnd(*fromArg)
	if err != nil {
		return fmt.Errorf("policy explain: --from: %w", err)
	}
	to, err := status.ParsePolicyEnd(*toArg)
	if err != nil {
		return fmt.Errorf("policy explain: --to: %w", err)
	}
	port, proto, err := parsePortProto(*portArg)
	if err != nil {
		return fmt.Errorf("policy explain: %w", err)
	}
	if *httpPort < 1 || *httpPort > 65535 {
		return fmt.Errorf("policy explain: --http-port %d: want 1-65535", *httpPort)
	}
	if *output != "table" && *output != "json" {
		return fmt.Errorf("policy explain: -o %q: want table or json", *output)
	}
	if err := argsChecked(ctx); err != nil {
		return err
	}

	var loc explainLocator
	if *kubeconfig != "" {
		kl, closeStore, err := newKubeLocator(ctx, *kubeconfig)
		if err != nil {
			return fmt.Errorf("policy explain: %w", err)
		}
		defer closeStore()
		loc = kl
	} else {
		st, closeStore, err := conn.store(ctx)
		if err != nil {
			return err
		}
		defer closeStore()
		leases, err := st.List(ctx)
		if err != nil {
			return conn.explain(err)
		}
		eps, err := st.ListEndpoints(ctx)
		if err != nil {
			return conn.explain(err)
		}
		loc = etcdLocator{eps: eps.Endpoints, leases: leases.Leases}
	}
	fromNode, err := loc.nodeOf(ctx, from)
	if err != nil {
		return fmt.Errorf("policy explain: --from: %w", err)
	}
	toNode, err := loc.nodeOf(ctx, to)
	if err != nil {
		return fmt.Errorf("policy explain: --to: %w", err)
	}
	if fromNode == "" && toNode == "" {
		return fmt.Errorf("policy explain: neither %s nor %s is in a node's pod subnet: weft enforces nothing between them", from, to)
	}
	q := url.Values{"from": {from.String()}, "to": {to.String()}, "proto": {proto}, "port": {strconv.Itoa(int(port))}}
	res := &explainResult{From: from.String(), To: to.String(), Proto: proto, Port: port, Answers: map[string]*status.PolicyExplanation{}}
	errs := map[string]string{}
	for _, node := range []string{fromNode, toNode} {
		if node == "" || res.Answers[node] != nil || errs[node] != "" {
			continue
		}
		addr, ok := nodeAddrs[node]
		if !ok {
			addr, err = loc.httpAddr(node, *httpPort)
		}
		if err == nil {
			res.Answers[node], err = fetchExplain(ctx, addr, q)
		}
		if err != nil {
			delete(res.Answers, node)
			errs[node] = err.Error()
		}
	}
	res.Packets = combineExplain(fromNode, toNode, res.Answers, errs)
	if len(res.Packets) == 0 {
		var msgs []string
		for n, e := range errs {
			msgs = append(msgs, n+": "+e)
		}
		return fmt.Errorf("policy explain: no node answered: %s", strings.Join(msgs, "; "))
	}
	if *output == "json" {
		enc := json.NewEncoder(cio.out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		renderExplain(cio.out, res)
	}
	// A verdict left unknown is a failure: say which node did not answer.
	var nodes []string
	for n, e := range errs {
		nodes = append(nodes, n+": "+e)
	}
	slices.Sort(nodes)
	if len(nodes) > 0 {
		return fmt.Errorf("policy explain: verdict unknown: %s", strings.Join(nodes, "; "))
	}
	return nil
}

// explainLocator finds the nodes hosting the ends of an explained
// connection and the address of a node's weftd. etcd mode and Kubernetes
// mode differ only here; asking the nodes and combining their answers is
// shared. A locator is used from one goroutine.
type explainLocator interface {
	// nodeOf returns the node hosting e; "" when e is an address no
	// node's pod subnet holds (outside the cluster's pods). A pod that
	// is no endpoint of any node is an error saying why.
	nodeOf(ctx context.Context, e status.PolicyEndArg) (string, error)
	// httpAddr returns the address of node's weftd HTTP API, on its
	// lease's public IP and port.
	httpAddr(node string, port int) (string, error)
}

// etcdLocator locates ends by the endpoints the nodes publish in etcd
// and by their leases.
type etcdLocator struct {
	eps    []subnet.Endpoint
	leases []subnet.Lease
}

func (l etcdLocator) nodeOf(_ context.Context, e status.PolicyEndArg) (string, error) {
	return nodeOf(e, l.eps, l.leases)
}

func (l etcdLocator) httpAddr(node string, port int) (string, error) {
	return nodeHTTPAddr(node, l.leases, port)
}

// nodeOf finds the node hosting e: for a pod, the node publishing its
// endpoint; for an address, the node publishing a pod with it, else the
// node whose lease's subnet holds it; "" when none does (outside the
// cluster's pods).
func nodeOf(e status.PolicyEndArg, eps []subnet.Endpoint, leases []subnet.Lease) (string, error) {
	if e.Name != "" {
		for _, ep := range eps {
			if ep.Namespace == e.Namespace && ep.Name == e.Name {
				return ep.Node, nil
			}
		}
		return "", fmt.Errorf("pod %s: no node publishes it (is it running, and was it added with K8S_POD_NAMESPACE and K8S_POD_NAME?)", e)
	}
	for _, ep := range eps {
		if ep.IPv4 == e.Addr || ep.IPv6 == e.Addr {
			return ep.Node, nil
		}
	}
	return leaseNode(e.Addr, leases), nil
}

// leaseNode is the node whose lease's subnet holds a, "" when none does.
func leaseNode(a netip.Addr, leases []subnet.Lease) string {
	for _, l := range leases {
		if l.Subnet.Contains(a) || l.IPv6Subnet.Contains(a) {
			return l.Record.NodeName
		}
	}
	return ""
}

// nodeAddrFlag is --node-addr NODE=HOST:PORT, repeatable.
type nodeAddrFlag map[string]string

func (f nodeAddrFlag) String() string { return "" }

func (f nodeAddrFlag) Set(v string) error {
	node, addr, ok := strings.Cut(v, "=")
	if !ok || node == "" {
		return fmt.Errorf("%q: want NODE=HOST:PORT", v)
	}
	host, port, err := net.SplitHostPort(addr)
	if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: %q is not HOST:PORT", v, addr)
	}
	if _, dup := f[node]; dup {
		return fmt.Errorf("%q: node %s given twice", v, node)
	}
	f[node] = addr
	return nil
}

// nodeHTTPAddr is the address of node's weftd HTTP API: its lease's
// public IP (IPv4 when it has one) and port.
func nodeHTTPAddr(node string, leases []subnet.Lease, port int) (string, error) {
	for _, l := range leases {
		if l.Record.NodeName != node {
			continue
		}
		ip := l.Record.PublicIP
		if !ip.IsValid() {
			ip = l.Record.PublicIPv6
		}
		if !ip.IsValid() {
			return "", fmt.Errorf("node %s: its lease has no public IP", node)
		}
		return net.JoinHostPort(ip.String(), strconv.Itoa(port)), nil
	}
	return "", fmt.Errorf("node %s has no lease", node)
}

// maxExplainAnswer bounds what weftctl reads of one node's answer.
const maxExplainAnswer = 8 << 20

// fetchExplain asks the weftd at addr.
func fetchExplain(ctx context.Context, addr string, q url.Values) (*status.PolicyExplanation, error) {
	u := "http://" + addr + status.PolicyExplainPath + "?" + q.Encode()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("is weftd serving HTTP on %s (--http-addr, --http-port)? %w", addr, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxExplainAnswer))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(raw)))
	}
	var out status.PolicyExplanation
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("decode %s: %w", u, err)
	}
	return &out, nil
}

// combineExplain puts the source node's egress verdict and the
// destination node's ingress verdict of each address family together.
func combineExplain(fromNode, toNode string, answers map[string]*status.PolicyExplanation, errs map[string]string) []explainPacket {
	var out []explainPacket
	for _, v6 := range []bool{false, true} {
		var p *explainPacket
		side := func(node string, egress bool) *explainSide {
			if node == "" {
				return nil // not a pod: weft enforces nothing at this end
			}
			s := &explainSide{Node: node, Error: errs[node]}
			a := answers[node]
			if a == nil {
				return s
			}
			for _, pv := range a.Packets {
				if pv.Src.Is6() != v6 {
					continue
				}
				if p == nil {
					p = &explainPacket{Src: pv.Src, Dst: pv.Dst}
				}
				s.Verdict = pv.Ingress
				if egress {
					s.Verdict = pv.Egress
				}
				if s.Verdict == nil {
					s.Error = fmt.Sprintf("%s does not hold the %s end of %s → %s", node, map[bool]string{true: "source", false: "destination"}[egress], pv.Src, pv.Dst)
				}
				return s
			}
			s.Error = fmt.Sprintf("%s has no IPv%d packet for these ends", node, map[bool]int{false: 4, true: 6}[v6])
			return s
		}
		eg, in := side(fromNode, true), side(toNode, false)
		if p == nil {
			continue
		}
		p.Egress, p.Ingress = eg, in
		p.Allowed = sideAllows(eg) && sideAllows(in)
		out = append(out, *p)
	}
	return out
}

func sideAllows(s *explainSide) bool {
	return s == nil || (s.Verdict != nil && s.Verdict.Allowed)
}

func renderExplain(w io.Writer, res *explainResult) {
	for _, p := range res.Packets {
		fam := 4
		if p.Src.Is6() {
			fam = 6
		}
		verdict := "denied"
		switch {
		case p.Allowed:
			verdict = "allowed"
		case !sideKnown(p.Egress) || !sideKnown(p.Ingress):
			verdict = "unknown"
		}
		fmt.Fprintf(w, "%s → %s %s/%d, IPv%d %s → %s: %s\n", res.From, res.To, res.Proto, res.Port, fam, p.Src, p.Dst, verdict)
		renderSide(w, "egress", p.Egress, p.Src)
		renderSide(w, "ingress", p.Ingress, p.Dst)
	}
}

func sideKnown(s *explainSide) bool { return s == nil || s.Verdict != nil }

func renderSide(w io.Writer, dir string, s *explainSide, addr netip.Addr) {
	switch {
	case s == nil:
		fmt.Fprintf(w, "  %-7s not enforced by weft: %s is no pod of the cluster\n", dir, addr)
		return
	case s.Verdict == nil:
		fmt.Fprintf(w, "  %-7s on %s: unknown: %s\n", dir, s.Node, s.Error)
		return
	}
	v := s.Verdict
	switch {
	case !v.Isolated:
		fmt.Fprintf(w, "  %-7s on %s: allowed: no policy selects %s for %s: open\n", dir, s.Node, v.Pod, dir)
	case v.Allowed && v.Rule != nil:
		fmt.Fprintf(w, "  %-7s on %s: allowed by %s (%s)\n", dir, s.Node, ruleText(*v.Rule), packets(v.Rule.Packets))
	default:
		fmt.Fprintf(w, "  %-7s on %s: denied: selected by %s, no rule allows", dir, s.Node, strings.Join(v.SelectedBy, ", "))
		if v.DefaultDeny != nil {
			fmt.Fprintf(w, " (%q: %s)", v.DefaultDeny.ID, packets(v.DefaultDeny.Packets))
		}
		fmt.Fprintln(w)
	}
	if v.Isolated {
		if len(v.Rules) == 0 {
			fmt.Fprintf(w, "    no %s rule applies to %s\n", dir, v.Pod)
		}
		for _, r := range v.Rules {
			mark := " "
			if v.Rule != nil && v.Rule.ID == r.ID {
				mark = "*"
			}
			fmt.Fprintf(w, "    %s %s: %s\n", mark, r.ID, packets(r.Packets))
		}
	}
}

func packets(n uint64) string {
	if n == 1 {
		return "1 packet"
	}
	return fmt.Sprintf("%d packets", n)
}

// ruleText names a policy rule: "policy x/b ingress rule 0 (ID)".
func ruleText(r status.PolicyRuleCount) string {
	if r.Policy == "" {
		return fmt.Sprintf("%q", r.ID)
	}
	return fmt.Sprintf("policy %s %s rule %d (%q)", r.Policy, r.Direction, r.Index, r.ID)
}
