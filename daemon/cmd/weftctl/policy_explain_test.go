// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package main

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/daemon/status"
	"github.com/weftnet/weft/subnet"
)

func TestParsePortProto(t *testing.T) {
	for _, tc := range []struct {
		in    string
		port  uint16
		proto string
		err   string
	}{
		{"80", 80, "TCP", ""},
		{"53/udp", 53, "UDP", ""},
		{"9/SCTP", 9, "SCTP", ""},
		{"65535/tcp", 65535, "TCP", ""},
		{"", 0, "", "PORT 1-65535"},
		{"0", 0, "", "PORT 1-65535"},
		{"65536", 0, "", "PORT 1-65535"},
		{"http", 0, "", "PORT 1-65535"},
		{"80/icmp", 0, "", `protocol "icmp"`},
		{"80/", 0, "", `protocol ""`},
	} {
		port, proto, err := parsePortProto(tc.in)
		switch {
		case tc.err == "" && (err != nil || port != tc.port || proto != tc.proto):
			t.Errorf("%q: %d %q %v, want %d %q", tc.in, port, proto, err, tc.port, tc.proto)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want one with %q", tc.in, err, tc.err)
		}
	}
}

// TestPolicyExplainArgs: the arguments are checked before anything is
// asked.
func TestPolicyExplainArgs(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"explain", "--to", "x/b", "--port", "80"}, "--from: missing"},
		{[]string{"explain", "--from", "x/a", "--port", "80"}, "--to: missing"},
		{[]string{"explain", "--from", "x/a", "--to", "x/b"}, "--port"},
		{[]string{"explain", "--from", "X/a", "--to", "x/b", "--port", "80"}, `pod "X/a"`},
		{[]string{"explain", "--from", "x/a", "--to", "10.1", "--port", "80"}, "neither a pod"},
		{[]string{"explain", "--from", "x/a", "--to", "x/b", "--port", "80", "-o", "yaml"}, "want table or json"},
		{[]string{"explain", "--from", "x/a", "--to", "x/b", "--port", "80", "--http-port", "0"}, "--http-port 0"},
		{[]string{"explain", "--from", "x/a", "--to", "x/b", "--port", "80", "extra"}, "unexpected arguments"},
		{[]string{"explain", "--from", "x/a", "--to", "x/b", "--port", "80", "--node-addr", "n1"}, "want NODE=HOST:PORT"},
		{[]string{"explain", "--from", "x/a", "--to", "x/b", "--port", "80", "--node-addr", "n1=127.0.0.1"}, "is not HOST:PORT"},
		{[]string{"explain", "--from", "x/a", "--to", "x/b", "--port", "80", "--node-addr", "n1=127.0.0.1:0"}, "is not HOST:PORT"},
		{[]string{"explain", "--from", "x/a", "--to", "x/b", "--port", "80", "--node-addr", "n1=127.0.0.1:9950", "--node-addr", "n1=127.0.0.1:9951"}, "given twice"},
		{[]string{"explain", "--from", "x/nobody", "--to", "x/b", "--port", "80"}, "pod x/nobody: no node publishes it"},
		{[]string{"explain", "--from", "198.18.1.1", "--to", "198.18.1.2", "--port", "80"}, "in a node's pod subnet"},
		{[]string{"explain", "--from", "x/a", "--to", "x/b", "--port", "80", "--kubeconfig", "/nonexistent/kubeconfig"}, "/nonexistent/kubeconfig"},
	} {
		if _, err := e.policy("", tc.args...); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%q: %v, want an error with %q", tc.args, err, tc.err)
		}
	}
}

func TestNodeOf(t *testing.T) {
	eps := []subnet.Endpoint{{Node: "n1", Key: "p1", PodIdentity: subnet.PodIdentity{Namespace: "x", Name: "a"}, IPv4: netip.MustParseAddr("10.244.1.5")}}
	leases := []subnet.Lease{{Subnet: netip.MustParsePrefix("10.244.2.0/24"), IPv6Subnet: netip.MustParsePrefix("fd10:244:0:2::/64"), Record: subnet.Record{NodeName: "n2"}}}
	for in, want := range map[string]string{"x/a": "n1", "10.244.1.5": "n1", "10.244.2.9": "n2", "fd10:244:0:2::9": "n2", "198.18.0.1": ""} {
		e, err := status.ParsePolicyEnd(in)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := nodeOf(e, eps, leases); err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", in, got, err, want)
		}
	}
}

// TestCombineExplain: the source node's egress and the destination
// node's ingress make the verdict; an end outside the cluster is not
// enforced; a node that did not answer makes it unknown.
func TestCombineExplain(t *testing.T) {
	src, dst := netip.MustParseAddr("10.244.1.5"), netip.MustParseAddr("10.244.2.5")
	rule := &status.PolicyRuleCount{ID: "x/b-in ingress[0] from pods ipv4", Policy: "x/b-in", Direction: "ingress", Packets: 3}
	answers := map[string]*status.PolicyExplanation{
		"n1": {Packets: []status.PolicyPacketVerdict{{Src: src, Dst: dst, Egress: &status.PolicyDirectionVerdict{Pod: "x/a", Allowed: true}}}},
		"n2": {Packets: []status.PolicyPacketVerdict{{Src: src, Dst: dst, Ingress: &status.PolicyDirectionVerdict{Pod: "x/b", Allowed: true, Isolated: true, SelectedBy: []string{"x/b-in"}, Rule: rule, Rules: []status.PolicyRuleCount{*rule}}}}},
	}
	ps := combineExplain("n1", "n2", answers, nil)
	if len(ps) != 1 || !ps[0].Allowed || ps[0].Egress.Node != "n1" || ps[0].Ingress.Verdict.Rule.ID != rule.ID {
		t.Fatalf("both allow: %+v", ps)
	}
	var b strings.Builder
	renderExplain(&b, &explainResult{From: "x/a", To: "x/b", Proto: "TCP", Port: 80, Packets: ps})
	for _, want := range []string{"x/a → x/b TCP/80, IPv4 10.244.1.5 → 10.244.2.5: allowed", "egress  on n1: allowed: no policy selects x/a for egress: open",
		`ingress on n2: allowed by policy x/b-in ingress rule 0 ("x/b-in ingress[0] from pods ipv4") (3 packets)`, "* x/b-in ingress[0] from pods ipv4"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}

	answers["n2"].Packets[0].Ingress = &status.PolicyDirectionVerdict{Pod: "x/b", Isolated: true, SelectedBy: []string{"x/b-in"}, DefaultDeny: &status.PolicyRuleCount{ID: "ingress default deny ipv4", Packets: 9}}
	ps = combineExplain("n1", "n2", answers, nil)
	b.Reset()
	renderExplain(&b, &explainResult{From: "x/a", To: "x/b", Proto: "TCP", Port: 80, Packets: ps})
	if len(ps) != 1 || ps[0].Allowed || !strings.Contains(b.String(), `denied: selected by x/b-in, no rule allows ("ingress default deny ipv4": 9 packets)`) {
		t.Fatalf("ingress denies: %+v\n%s", ps, b.String())
	}

	ps = combineExplain("", "n2", answers, nil)
	if len(ps) != 1 || ps[0].Egress != nil {
		t.Fatalf("outside source: %+v", ps)
	}
	ps = combineExplain("n1", "n3", answers, map[string]string{"n3": "connection refused"})
	b.Reset()
	renderExplain(&b, &explainResult{Packets: ps})
	if len(ps) != 1 || ps[0].Allowed || ps[0].Ingress.Error != "connection refused" || !strings.Contains(b.String(), ": unknown\n") {
		t.Fatalf("n3 did not answer: %+v\n%s", ps, b.String())
	}
}

var (
	_ explainLocator = etcdLocator{}
	_ explainLocator = (*kubeLocator)(nil)
)

// TestKubeLocator: in Kubernetes mode a pod is on the node its Pod names,
// if its addresses lie in that node's podCIDRs; an address is on the Node
// whose podCIDR holds it; a node's weftd is asked at its public IP.
func TestKubeLocator(t *testing.T) {
	ctx := t.Context()
	leases := []subnet.Lease{
		{Subnet: netip.MustParsePrefix("10.244.1.0/24"), IPv6Subnet: netip.MustParsePrefix("fd10:244:0:1::/64"),
			Record: subnet.Record{NodeName: "n1", PublicIP: netip.MustParseAddr("198.18.0.1")}},
		{Subnet: netip.MustParsePrefix("10.244.2.0/24"),
			Record: subnet.Record{NodeName: "n2", PublicIPv6: netip.MustParseAddr("2001:2::2")}},
	}
	ep := func(node, name, v4 string) subnet.Endpoint {
		return subnet.Endpoint{Node: node, Key: "k" + name, PodIdentity: subnet.PodIdentity{Namespace: "x", Name: name}, IPv4: netip.MustParseAddr(v4)}
	}
	pods := map[string]subnet.Endpoint{
		"x/a":      ep("n1", "a", "10.244.1.5"),
		"x/b":      ep("n2", "b", "10.244.2.7"),
		"x/forged": ep("n2", "forged", "10.244.1.5"), // n1's address, claimed on n2
		"x/lost":   ep("n3", "lost", "10.244.3.1"),   // a node without a lease
	}
	asked := []string{}
	l := &kubeLocator{leases: leases, pod: func(_ context.Context, ns, name string) (subnet.Endpoint, error) {
		asked = append(asked, ns+"/"+name)
		e, ok := pods[ns+"/"+name]
		if !ok {
			return subnet.Endpoint{}, fmt.Errorf("get Pod %s/%s: not found", ns, name)
		}
		return e, nil
	}}
	for _, c := range []struct{ in, node, err string }{
		{"x/a", "n1", ""},
		{"x/b", "n2", ""},
		{"x/forged", "", "pod x/forged on node n2"},
		{"x/lost", "", "pod x/lost on node n3"},
		{"x/nobody", "", "get Pod x/nobody: not found"},
		{"10.244.1.99", "n1", ""}, // a podCIDR's address, no pod needed
		{"fd10:244:0:1::9", "n1", ""},
		{"10.244.2.1", "n2", ""},
		{"10.244.3.1", "", ""}, // no Node's podCIDR: outside
		{"198.18.0.1", "", ""},
	} {
		e, err := status.ParsePolicyEnd(c.in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := l.nodeOf(ctx, e)
		switch {
		case c.err == "" && (err != nil || got != c.node):
			t.Errorf("%s: node %q, %v; want %q", c.in, got, err, c.node)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: node %q, %v; want an error with %q", c.in, got, err, c.err)
		}
	}
	if want := []string{"x/a", "x/b", "x/forged", "x/lost", "x/nobody"}; !slices.Equal(asked, want) {
		t.Errorf("Pods read %q, want %q (one GET per pod end, none for an address)", asked, want)
	}
	for node, want := range map[string]string{"n1": "198.18.0.1:9950", "n2": "[2001:2::2]:9950", "n3": "has no lease"} {
		got, err := l.httpAddr(node, 9950)
		if got != want && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("httpAddr(%s): %q, %v; want %q", node, got, err, want)
		}
	}
}
