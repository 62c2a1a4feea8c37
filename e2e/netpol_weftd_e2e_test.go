// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e && linux

package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/weftnet/weft/cni/gate"
	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/e2etest"
	"github.com/weftnet/weft/subnet"
)

// weftdPolicies are applied with `weftctl policy apply`: b admits TCP 80
// only from pod=a pods of namespaces labelled team=blue (x gets the label
// with `weftctl namespace label`); c may send nothing.
const weftdPolicies = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: b-from-blue-a}
spec:
  podSelector: {matchLabels: {pod: b}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: blue}}
      podSelector: {matchLabels: {pod: a}}
    ports: [{protocol: TCP, port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: c-sends-nothing}
spec:
  podSelector: {matchLabels: {pod: c}}
  policyTypes: [Egress]
`

// TestNetworkPolicyWeftd: weftd enforces the policies applied with
// weftctl, on every node, with real packets, and keeps enforcing them
// across a restart:
//
//	node1: x/a x/c    node2: x/b
//
// a → b (across nodes) is allowed once x is labelled team=blue, c → b
// (across nodes: ingress on node2) and c → a (one bridge: egress on
// node1) are dropped. Then weftd on node2 restarts while a and c probe b
// all along: no probe of c passes, every probe of a gets its reply.
func TestNetworkPolicyWeftd(t *testing.T) {
	const resync = 2 * time.Second
	c := e2etest.NewCluster(t, e2e.Options{Nodes: 2, DualStack: true, ResyncInterval: resync})
	ctx := t.Context()
	n1, n2 := c.Nodes()[0], c.Nodes()[1]
	for _, n := range c.Nodes() {
		if err := n.WaitReady(ctx, 60*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	pods := map[string]*e2e.Pod{}
	for _, p := range []struct {
		name string
		n    *e2e.Node
	}{{"a", n1}, {"c", n1}, {"b", n2}} {
		pod, err := p.n.AddPodAs(ctx, subnet.PodIdentity{Namespace: "x", Name: p.name, Labels: map[string]string{"pod": p.name}})
		if err != nil {
			t.Fatal(err)
		}
		pods[p.name] = pod
		s, err := e2e.ServeTCP(pod.NS, netip.AddrPortFrom(netip.IPv6Unspecified(), 80))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
	}
	reach := func(from, to string, v6 bool, timeout time.Duration) bool {
		dst := netip.AddrPortFrom(pods[to].Addr(v6), 80)
		return e2e.TCPEcho(pods[from].NS, dst, []byte("weft policy"), timeout) == nil
	}
	type pair struct {
		from, to string
		allowed  bool
	}
	check := func(stage string, want []pair) {
		t.Helper()
		for _, v6 := range []bool{false, true} {
			for _, p := range want {
				timeout := 500 * time.Millisecond
				if p.allowed {
					timeout = 3 * time.Second
				}
				if got := reach(p.from, p.to, v6, timeout); got != p.allowed {
					t.Errorf("%s: %s → %s (ipv6 %t): reachable %t, want %t", stage, p.from, p.to, v6, got, p.allowed)
				}
			}
		}
	}
	check("no policy", []pair{{"a", "b", true}, {"c", "b", true}, {"c", "a", true}})

	// revision is the store's revision after a weftctl call; converged
	// waits until every node's /status shows a policy revision at least
	// rev applied.
	cli, err := c.Etcd.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	revision := func() int64 {
		t.Helper()
		resp, err := cli.Get(ctx, "weft-revision-probe")
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	converged := func(what string, rev int64, policies int) {
		t.Helper()
		start := time.Now()
		for _, n := range c.Nodes() {
			for {
				st, err := n.Status(ctx)
				if err == nil && st.Policy != nil && st.Policy.Revision >= rev && st.Policy.Policies == policies && st.Policy.ApplyError == "" {
					if !st.Policy.Enforced {
						t.Fatalf("%s: policy not enforced: %s", n.Name, st.Policy.Problem)
					}
					break
				}
				if time.Since(start) > 30*time.Second {
					t.Fatalf("%s: %s not applied within 30 s; status %+v, %v", what, n.Name, st, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		t.Logf("%s: applied on every node %.1f ms after weftctl returned", what, millis(time.Since(start)))
	}

	// How soon a new pod is in the policy state: of its own node (from
	// its pod record) and of the other node (from its published
	// endpoint), relative to CNI ADD returning.
	var localD, remoteD []time.Duration
	for i := range 5 {
		p, err := n1.AddPodAs(ctx, subnet.PodIdentity{Namespace: "y", Name: fmt.Sprintf("d%d", i), Labels: map[string]string{"pod": "d"}})
		if err != nil {
			t.Fatal(err)
		}
		var gotLocal, gotRemote time.Time
		for gotLocal.IsZero() || gotRemote.IsZero() {
			if time.Since(p.Added) > 30*time.Second {
				t.Fatalf("pod %s not in the policy state of both nodes within 30 s", p.Name)
			}
			if s1, err := n1.Status(ctx); gotLocal.IsZero() && err == nil && s1.Policy != nil && s1.Policy.LocalPods == 3+i {
				gotLocal = time.Now()
			}
			if s2, err := n2.Status(ctx); gotRemote.IsZero() && err == nil && s2.Policy != nil && s2.Policy.RemotePods == 3+i {
				gotRemote = time.Now()
			}
			time.Sleep(2 * time.Millisecond)
		}
		localD, remoteD = append(localD, gotLocal.Sub(p.Added)), append(remoteD, gotRemote.Sub(p.Added))
	}
	slices.Sort(localD)
	slices.Sort(remoteD)
	t.Logf("a new pod in the applied policy state after CNI ADD returned, 5 pods: own node median %.1f ms (max %.1f), other node median %.1f ms (max %.1f)",
		millis(localD[2]), millis(localD[4]), millis(remoteD[2]), millis(remoteD[4]))

	file := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(file, []byte(weftdPolicies), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := c.Weftctl(ctx, "policy", "apply", "-f", file); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	converged("policies applied", revision(), 2)
	check("x not labelled yet", []pair{{"a", "b", false}, {"c", "b", false}, {"c", "a", false}, {"a", "c", true}})
	if out, err := c.Weftctl(ctx, "namespace", "label", "x", "team=blue"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	rev := revision()
	converged("x labelled team=blue", rev, 2)
	check("x labelled", []pair{{"a", "b", true}, {"c", "b", false}, {"c", "a", false}, {"a", "c", true}})
	explainAgrees(t, c, reach, []explainCase{
		{from: "a", to: "b", allowed: true, ingressRule: "x/b-from-blue-a"},
		{from: "c", to: "b", allowed: false, egressDeniedBy: "x/c-sends-nothing"},
		{from: "c", to: "a", allowed: false, egressDeniedBy: "x/c-sends-nothing"},
		{from: "a", to: "c", allowed: true},
		{from: "b", to: "a", allowed: true},
	}, pods)

	// Restart under policy: node2 (b's node) restarts while a and c probe
	// b in a loop.
	var leaks, losses, rounds atomic.Int64
	var logged atomic.Int64
	var restartAt atomic.Int64 // unix nanos
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			rounds.Add(1)
			if reach("c", "b", false, 300*time.Millisecond) {
				leaks.Add(1)
			}
			if err := e2e.TCPEcho(pods["a"].NS, netip.AddrPortFrom(pods["b"].IP, 80), []byte("weft policy"), 2*time.Second); err != nil {
				losses.Add(1)
				if logged.Add(1) <= 5 {
					t.Logf("allowed probe failed %s after the restart began: %v", time.Since(time.Unix(0, restartAt.Load())).Round(time.Millisecond), err)
				}
			}
		}
	}()
	time.Sleep(2 * time.Second)
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	restartAt.Store(time.Now().UnixNano())
	if err := n2.Restart(rctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	cancel()
	converged("after node2's restart", rev, 2)
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	t.Logf("restart of weftd on %s under policy: %d probe rounds, %d denied probes passed, %d allowed probes failed", n2.Name, rounds.Load(), leaks.Load(), losses.Load())
	if leaks.Load() != 0 || losses.Load() != 0 {
		t.Logf("node2's weftd log:\n%s", n2.LogTail(80))
		t.Errorf("restart under policy: %d denied probes passed, %d allowed probes failed; want 0 and 0", leaks.Load(), losses.Load())
	}
	check("after the restart", []pair{{"a", "b", true}, {"c", "b", false}, {"c", "a", false}})

	// The counters show in /metrics, by rule: b's ingress rule on node2
	// counted a's connections, c's egress isolation on node1 its drops.
	metric := func(n *e2e.Node, prefix string) (float64, string) {
		t.Helper()
		_, body, err := n.Get(ctx, "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		v := -1.0
		for _, l := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(l, "weft_policy_packets_total") {
				lines = append(lines, l)
				if rest, ok := strings.CutPrefix(l, prefix); ok {
					_, _ = fmt.Sscan(rest[strings.LastIndexByte(rest, ' ')+1:], &v)
				}
			}
		}
		return v, strings.Join(lines, "\n")
	}
	if v, all := metric(n2, `weft_policy_packets_total{rule="x/b-from-blue-a ingress[0].ports[0] from pods ipv4"}`); v <= 0 {
		t.Errorf("node2: b's ingress rule counted %v packets, want some:\n%s", v, all)
	}
	if v, all := metric(n1, `weft_policy_packets_total{rule="egress default deny ipv4"}`); v <= 0 {
		t.Errorf("node1: the IPv4 egress default deny counted %v packets, want c's probes:\n%s", v, all)
	}

	// Birth: a pod a policy isolates is never reachable, not even while
	// its ADD runs; a pod no policy selects is reachable once ADD returned.
	guard := filepath.Join(t.TempDir(), "guard.yaml")
	if err := os.WriteFile(guard, []byte(guardPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := c.Weftctl(ctx, "policy", "apply", "-f", guard); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	converged("g-admits-nobody applied", revision(), 3)
	probers := []*e2e.Pod{pods["a"], pods["b"]}
	tuneNeighbours(t, n1, probers)
	if err := n1.NS.Do(func() error {
		ok, err := nftTableExists(gate.Table)
		if err == nil && !ok {
			err = fmt.Errorf("nftables table inet %s does not exist: no pod is held at its birth", gate.Table)
		}
		return err
	}); err != nil {
		t.Fatalf("%s: %v", n1.Name, err)
	}
	for _, b := range []struct {
		name, label string
		isolated    bool
	}{{"g0", "g", true}, {"free0", "free", false}, {"g1", "g", true}} {
		birth(t, n1, probers, subnet.PodIdentity{Namespace: "x", Name: b.name, Labels: map[string]string{"pod": b.label}}, b.isolated)
	}
}

// guardPolicy isolates the pod=g pods of x for ingress, admitting nothing.
const guardPolicy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: g-admits-nobody}
spec:
  podSelector: {matchLabels: {pod: g}}
  policyTypes: [Ingress]
`

// tuneNeighbours makes ARP retry every 10 ms on the probers and node n's
// bridge (the default is 1 s), so that a probe finds the new pod's MAC
// as soon as its address is up, and a window in which it is reachable
// cannot hide behind neighbour resolution.
func tuneNeighbours(t *testing.T, n *e2e.Node, probers []*e2e.Pod) {
	t.Helper()
	set := []struct {
		ns  e2e.NS
		dev string
	}{{n.NS, "weft0"}}
	for _, p := range probers {
		set = append(set, struct {
			ns  e2e.NS
			dev string
		}{p.NS, "eth0"})
	}
	for _, s := range set {
		if err := s.ns.Sysctl("net/ipv4/neigh/"+s.dev+"/retrans_time_ms", "10"); err != nil {
			t.Fatal(err)
		}
	}
}

// birth adds pod id on node n while probers hammer the address the node
// hands out next with TCP connects (a reply, even a refusal, means the
// SYN reached the pod), from before ADD until 300 ms after it returned.
// An isolated pod must never be reached; any other pod must be reached
// by every prober within a second of ADD returning.
func birth(t *testing.T, n *e2e.Node, probers []*e2e.Pod, id subnet.PodIdentity, isolated bool) {
	t.Helper()
	ctx := t.Context()
	var last netip.Addr
	for _, p := range n.Pods() {
		if p.IP.Compare(last) > 0 {
			last = p.IP
		}
	}
	next := last.Next() // the IPAM hands out addresses round robin
	dst := netip.AddrPortFrom(next, 80)
	var attempts, reached atomic.Int64
	firstReach := make([]atomic.Int64, len(probers)) // unix nanos
	var returned atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, p := range probers {
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					dctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
					conn, err := p.NS.DialContext(dctx, "tcp", dst.String())
					cancel()
					attempts.Add(1)
					if err == nil || errors.Is(err, syscall.ECONNREFUSED) {
						if conn != nil {
							conn.Close()
						}
						now := time.Now().UnixNano()
						firstReach[i].CompareAndSwap(0, now)
						if returned.Load() == 0 || isolated {
							reached.Add(1)
						}
					}
				}
			}()
		}
	}
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	pod, err := n.AddPodAs(ctx, id)
	if err != nil {
		close(stop)
		wg.Wait()
		t.Fatal(err)
	}
	returned.Store(pod.Added.UnixNano())
	time.Sleep(300 * time.Millisecond)
	if !isolated {
		for i := range probers {
			for firstReach[i].Load() == 0 && time.Since(pod.Added) < time.Second {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	close(stop)
	wg.Wait()
	if pod.IP != next {
		t.Fatalf("%s got %s, the probes aimed at %s: the round-robin prediction failed, the test proves nothing", pod.Name, pod.IP, next)
	}
	after := make([]string, len(probers))
	for i, p := range probers {
		after[i] = "never"
		if r := firstReach[i].Load(); r != 0 {
			after[i] = fmt.Sprintf("%.1f ms", millis(time.Unix(0, r).Sub(pod.Added)))
		}
		after[i] = p.Name + " " + after[i]
	}
	when := "before ADD returned"
	if isolated {
		when = "at all"
	}
	t.Logf("birth of %s/%s (isolated %t) at %s: ADD took %.1f ms; %d probes, %d reached it %s; first reach after ADD returned: %s",
		id.Namespace, id.Name, isolated, next, millis(pod.Added.Sub(start)), attempts.Load(), reached.Load(), when, strings.Join(after, ", "))
	if isolated && reached.Load() != 0 {
		t.Errorf("%s/%s was reached %d times against policy at its birth", id.Namespace, id.Name, reached.Load())
	}
	if !isolated {
		for i, p := range probers {
			if firstReach[i].Load() == 0 {
				t.Errorf("%s never reached %s/%s within 1 s of ADD returning", p.Name, id.Namespace, id.Name)
			}
		}
	}
}

// nftTableExists reports whether the inet table name exists in the calling
// thread's namespace.
func nftTableExists(name string) (bool, error) {
	c, err := nftables.New()
	if err != nil {
		return false, err
	}
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	for _, t := range ts {
		if t.Name == name {
			return true, nil
		}
	}
	return false, err
}

// explainCase is a pair `weftctl policy explain` is asked about:
// allowed is the expected verdict; ingressRule, when set, the policy
// whose ingress rule 0 must decide; egressDeniedBy, when set, the policy
// that must isolate the source for egress.
type explainCase struct {
	from, to       string
	allowed        bool
	ingressRule    string
	egressDeniedBy string
}

// explainJSON is the part of `weftctl policy explain -o json` checked.
type explainJSON struct {
	Packets []struct {
		Src     netip.Addr `json:"src"`
		Allowed bool       `json:"allowed"`
		Egress  *struct {
			Node    string `json:"node"`
			Verdict *struct {
				Allowed     bool     `json:"allowed"`
				SelectedBy  []string `json:"selectedBy"`
				DefaultDeny *struct {
					ID      string `json:"id"`
					Packets uint64 `json:"packets"`
				} `json:"defaultDeny"`
			} `json:"verdict"`
		} `json:"egress"`
		Ingress *struct {
			Node    string `json:"node"`
			Verdict *struct {
				Allowed bool `json:"allowed"`
				Rule    *struct {
					ID      string `json:"id"`
					Policy  string `json:"policy"`
					Index   int    `json:"index"`
					Packets uint64 `json:"packets"`
				} `json:"rule"`
			} `json:"verdict"`
		} `json:"ingress"`
	} `json:"packets"`
}

// explainAgrees asks `weftctl policy explain` about each case (TCP 80,
// by pod name and, for the first case, by address) and checks that its
// verdict for each family agrees with a real probe, with the expected
// one, and names the expected rule; then that the deciding rule's
// counter grew with the probes.
func explainAgrees(t *testing.T, c *e2e.Cluster, reach func(from, to string, v6 bool, timeout time.Duration) bool, cases []explainCase, pods map[string]*e2e.Pod) {
	t.Helper()
	ctx := t.Context()
	explain := func(from, to string) explainJSON {
		t.Helper()
		out, err := c.Weftctl(ctx, "policy", "explain", "--from", from, "--to", to, "--port", "80/tcp", "-o", "json")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		var res explainJSON
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("decode %q: %v", out, err)
		}
		return res
	}
	for _, tc := range cases {
		start := time.Now()
		res := explain("x/"+tc.from, "x/"+tc.to)
		took := time.Since(start)
		if len(res.Packets) != 2 {
			t.Errorf("explain %s → %s: %d packets, want IPv4 and IPv6", tc.from, tc.to, len(res.Packets))
			continue
		}
		for _, p := range res.Packets {
			v6 := p.Src.Is6()
			timeout := 500 * time.Millisecond
			if p.Allowed {
				timeout = 3 * time.Second
			}
			probe := reach(tc.from, tc.to, v6, timeout)
			if p.Allowed != probe || p.Allowed != tc.allowed {
				t.Errorf("explain %s → %s (ipv6 %t): allowed %t, the probe %t, want %t", tc.from, tc.to, v6, p.Allowed, probe, tc.allowed)
			}
			if tc.ingressRule != "" {
				if p.Ingress == nil || p.Ingress.Verdict == nil || p.Ingress.Verdict.Rule == nil ||
					p.Ingress.Verdict.Rule.Policy != tc.ingressRule || p.Ingress.Verdict.Rule.Index != 0 {
					t.Errorf("explain %s → %s (ipv6 %t): ingress not decided by %s rule 0: %+v", tc.from, tc.to, v6, tc.ingressRule, p.Ingress)
				}
			}
			if tc.egressDeniedBy != "" {
				if p.Egress == nil || p.Egress.Verdict == nil || p.Egress.Verdict.Allowed || !slices.Equal(p.Egress.Verdict.SelectedBy, []string{tc.egressDeniedBy}) || p.Egress.Verdict.DefaultDeny == nil {
					t.Errorf("explain %s → %s (ipv6 %t): egress not denied by %s's isolation: %+v", tc.from, tc.to, v6, tc.egressDeniedBy, p.Egress)
				}
			}
		}
		t.Logf("explain %s → %s: allowed %t, answered in %.1f ms", tc.from, tc.to, res.Packets[0].Allowed, millis(took))
	}

	// By address, and the counters: the first case's deciding rule (or
	// default deny) counted the probes made above.
	tc := cases[0]
	res := explain(pods[tc.from].IP.String(), pods[tc.to].IP.String())
	if len(res.Packets) != 1 || res.Packets[0].Allowed != tc.allowed {
		t.Fatalf("explain by address %s → %s: %+v", pods[tc.from].IP, pods[tc.to].IP, res.Packets)
	}
	if in := res.Packets[0].Ingress; tc.ingressRule != "" && (in == nil || in.Verdict == nil || in.Verdict.Rule == nil || in.Verdict.Rule.Packets == 0) {
		t.Errorf("explain %s → %s: the deciding rule counted no packet: %+v", tc.from, tc.to, in)
	}
	out, err := c.Weftctl(ctx, "policy", "explain", "--from", "x/c", "--to", "x/b", "--port", "80")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Logf("weftctl policy explain --from x/c --to x/b --port 80:\n%s", out)

	// --node-addr overrides where a node is asked: node2's weftd is
	// asked at a closed port, so the ingress verdict is unknown and
	// weftctl fails, naming the address.
	n2 := c.Nodes()[1].Name
	out, err = c.Weftctl(ctx, "policy", "explain", "--from", "x/c", "--to", "x/b", "--port", "80", "--node-addr", n2+"=127.0.0.1:1")
	if err == nil || !strings.Contains(out, "ingress on "+n2+": unknown") || !strings.Contains(out, "127.0.0.1:1") {
		t.Errorf("explain with node2 asked at a closed port: want an unknown ingress verdict and a failure naming 127.0.0.1:1; got %v:\n%s", err, out)
	}
}
