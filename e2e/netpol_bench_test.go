// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build bench && linux

package e2e_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/e2etest"
	"github.com/weftnet/weft/subnet"
	subnetetcd "github.com/weftnet/weft/subnet/etcd"
	"github.com/weftnet/weft/subnet/etcd/leasesim"
)

// TestBenchPolicyTraffic: pod-to-pod TCP across two real weftd nodes
// (VXLAN) with 100 policies over 1000 pods, beside no policy, in the same
// run, on the real path: the policies are in etcd (the store's policy
// API, as `weftctl policy apply` writes them), 998 simulated pods are
// endpoints published in etcd by four simulated nodes (leasesim), and the
// three real pods come from CNI ADDs with their identity. Every policy
// selects a real pod, so each one acts in a real node's table (the
// client's egress rules on node1, the server's ingress rules on node2),
// and their peers fill the address sets with the simulated pods. Rounds
// alternate the order of "policies" and "none": ten rounds of one iperf3
// stream (3 s), then thirty pairs measuring the rate of new TCP
// connections for 0.75 s (connect, one byte echoed, reset) from the
// client pod to the server pod. Before each measure the test checks the
// state is what it says: with the policies a third pod's connection to
// the server is refused, without them it passes.
func TestBenchPolicyTraffic(t *testing.T) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		benchRow("pod-to-pod TCP with 100 policies over 1000 pods", "n/a", "no policy: n/a", "skipped: iperf3 not installed (make bench installs it)")
		t.Skip("iperf3 not installed: apt-get install iperf3 (make bench does)")
	}
	c := e2etest.NewCluster(t, e2e.Options{Nodes: 2})
	ctx := t.Context()
	n1, n2 := c.Nodes()[0], c.Nodes()[1]
	for _, n := range c.Nodes() {
		if err := n.WaitReady(ctx, 60*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	pod := func(n *e2e.Node, name string) *e2e.Pod {
		p, err := n.AddPodAs(ctx, subnet.PodIdentity{Namespace: "bench", Name: name, Labels: map[string]string{"app": name}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	client, other, server := pod(n1, "client"), pod(n1, "other"), pod(n2, "server")
	const connPort = 7000
	srv, err := e2e.ServeTCP(server.NS, netip.AddrPortFrom(netip.IPv4Unspecified(), connPort))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	dst := netip.AddrPortFrom(server.IP, connPort)

	cli, err := c.Etcd.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	store := subnetetcd.New(subnetetcd.Config{Client: cli, Prefix: e2e.EtcdPrefix})
	cfg, err := subnet.ParseConfig([]byte(c.NetworkConfig()))
	if err != nil {
		t.Fatal(err)
	}
	const simulated = 998 // with the 2 real pods a policy can select: 1000
	sims, err := publishSimulatedPods(ctx, cli, store, cfg, simulated)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := store.LabelNamespace(ctx, fmt.Sprintf("ns%d", i), map[string]string{"team": fmt.Sprintf("t%d", i%3)}, nil, true); err != nil {
			t.Fatal(err)
		}
	}
	pols := trafficPolicies()
	if len(pols) != 100 {
		t.Fatalf("%d policies, want 100", len(pols))
	}

	// set puts the policies in etcd or removes them, and waits until both
	// nodes have applied that revision with every simulated pod known.
	set := func(on bool) {
		t.Helper()
		var rev int64
		want := 0
		if on {
			want = len(pols)
			if err := store.PutPolicies(ctx, pols); err != nil {
				t.Fatal(err)
			}
			resp, err := cli.Get(ctx, store.PoliciesPrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				t.Fatal(err)
			}
			rev = resp.Header.Revision
		} else {
			resp, err := cli.Delete(ctx, store.PoliciesPrefix(), clientv3.WithPrefix())
			if err != nil {
				t.Fatal(err)
			}
			rev = resp.Header.Revision
		}
		deadline := time.Now().Add(60 * time.Second)
		for _, n := range c.Nodes() {
			for {
				st, err := n.Status(ctx)
				if err == nil && st.Policy != nil && st.Policy.Revision >= rev && st.Policy.Policies == want &&
					st.Policy.RemotePods >= simulated && st.Policy.ApplyError == "" {
					if !st.Policy.Enforced {
						t.Fatalf("%s: policy not enforced: %s", n.Name, st.Policy.Problem)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: %d policies at revision %d not applied within 60 s: %+v, %v", n.Name, want, rev, st, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		// The proof that the state is the one measured.
		if err := e2e.TCPEcho(client.NS, dst, []byte("allowed"), 3*time.Second); err != nil {
			t.Fatalf("policies %t: the client cannot reach the server: %v", on, err)
		}
		err := e2e.TCPEcho(other.NS, dst, []byte("denied?"), 500*time.Millisecond)
		if on && err == nil {
			t.Fatal("with the policies applied, the third pod still reaches the server")
		}
		if !on && err != nil {
			t.Fatalf("with no policy, the third pod cannot reach the server: %v", err)
		}
	}

	type mode struct {
		name      string
		on        bool
		bps, rate []float64
		cpu       []float64 // µs of this process's CPU per connection
	}
	modes := []*mode{{name: "100 policies", on: true}, {name: "no policy", on: false}}
	// Throughput: rounds of one iperf3 stream (3 s) in each state.
	const rounds = 10
	for r := range rounds {
		var line []string
		for k := range modes {
			m := modes[(r+k)%len(modes)]
			set(m.on)
			bps, err := iperf(t, client.NS, server.NS, server.IP)
			if err != nil {
				t.Fatalf("%s: %v", m.name, err)
			}
			m.bps = append(m.bps, bps)
			line = append(line, fmt.Sprintf("%s %.2f Gbit/s", m.name, bps/1e9))
		}
		t.Logf("throughput round %d: %s", r+1, strings.Join(line, ", "))
	}
	// Connection rate: many short pairs, so that the two states of a pair
	// are about a second apart and load bursts fall on both.
	const pairs = 30
	for r := range pairs {
		var line []string
		for k := range modes {
			m := modes[(r+k)%len(modes)]
			set(m.on)
			rate, cpu, err := connRate(client.NS, dst, 750*time.Millisecond, 2)
			if err != nil {
				t.Fatalf("%s: %v", m.name, err)
			}
			m.rate, m.cpu = append(m.rate, rate), append(m.cpu, cpu)
			line = append(line, fmt.Sprintf("%s %.0f conn/s %.1f µs CPU/conn", m.name, rate, cpu))
		}
		t.Logf("connection pair %d: %s", r+1, strings.Join(line, ", "))
	}
	labelChange(t, c, cli, store, sims, pols)

	on, off := modes[0], modes[1]
	ratio := func(a, b []float64) (med, lo, hi float64) {
		var rs []float64
		for i := range a {
			rs = append(rs, a[i]/b[i])
		}
		return median(rs), slices.Min(rs), slices.Max(rs)
	}
	m, lo, hi := ratio(on.bps, off.bps)
	benchRow("pod-to-pod TCP across nodes with 100 policies over 1000 pods (real weftd, etcd; 1 stream)",
		fmt.Sprintf("%.2f Gbit/s", median(on.bps)/1e9), fmt.Sprintf("no policy, same run: %.2f Gbit/s", median(off.bps)/1e9),
		fmt.Sprintf("%.3f (per-round %.3f–%.3f, %d rounds; goal 0.95–1.05)", m, lo, hi, rounds))
	m, lo, hi = ratio(on.rate, off.rate)
	q1, q3 := quartiles(on.rate, off.rate)
	benchRow("new TCP connections/s across nodes with 100 policies over 1000 pods (2 clients)",
		fmt.Sprintf("%.0f conn/s", median(on.rate)), fmt.Sprintf("no policy, same run: %.0f conn/s", median(off.rate)),
		fmt.Sprintf("%.3f (per-pair quartiles %.3f–%.3f, range %.3f–%.3f, %d pairs of 0.75 s; goal 0.95–1.05)", m, q1, q3, lo, hi, pairs))
	m, lo, hi = ratio(on.cpu, off.cpu)
	q1, q3 = quartiles(on.cpu, off.cpu)
	benchRow("CPU per new TCP connection with 100 policies over 1000 pods (client, server and the kernel's path in their threads)",
		fmt.Sprintf("%.1f µs", median(on.cpu)), fmt.Sprintf("no policy, same run: %.1f µs", median(off.cpu)),
		fmt.Sprintf("%.3f (per-pair quartiles %.3f–%.3f, range %.3f–%.3f, %d pairs; goal 0.95–1.05)", m, q1, q3, lo, hi, pairs))
}

// quartiles returns the first and third quartile of a[i]/b[i].
func quartiles(a, b []float64) (q1, q3 float64) {
	var rs []float64
	for i := range a {
		rs = append(rs, a[i]/b[i])
	}
	slices.Sort(rs)
	return rs[len(rs)/4], rs[3*len(rs)/4]
}

// simPublisher is a simulated node and the endpoints it publishes.
type simPublisher struct {
	lease subnet.Lease
	eps   []subnet.Endpoint
}

// publishSimulatedPods adds four simulated nodes (leasesim) and publishes
// n endpoints over them, as their weftd would: pod j in namespace
// ns<j%10>, labelled app=app<j%20> and role=r<j%5>, with an IPv4 address
// of its node's subnet.
func publishSimulatedPods(ctx context.Context, cli *clientv3.Client, store *subnetetcd.Store, cfg *subnet.Config, n int) ([]*simPublisher, error) {
	const nodes = 4
	sim := leasesim.New(cli, e2e.EtcdPrefix)
	leases, err := sim.Add(ctx, cfg, nodes, time.Hour)
	if err != nil {
		return nil, err
	}
	var out []*simPublisher
	per := (n + nodes - 1) / nodes
	for i, l := range leases {
		var eps []subnet.Endpoint
		for k := range per {
			j := i*per + k
			if j >= n {
				break
			}
			a := l.Subnet.Masked().Addr()
			for range 2 + k {
				a = a.Next()
			}
			eps = append(eps, subnet.Endpoint{
				Key: fmt.Sprintf("weft%08x", j),
				PodIdentity: subnet.PodIdentity{Namespace: fmt.Sprintf("ns%d", j%10), Name: fmt.Sprintf("sim-%d", j),
					Labels: map[string]string{"app": fmt.Sprintf("app%d", j%20), "role": fmt.Sprintf("r%d", j%5)}},
				IPv4: a,
			})
		}
		if _, _, err := store.PublishEndpoints(ctx, &l, eps); err != nil {
			return nil, fmt.Errorf("publish the endpoints of %s: %w", l.Record.NodeName, err)
		}
		out = append(out, &simPublisher{lease: l, eps: eps})
	}
	return out, nil
}

// trafficPolicies returns 100 policies of namespace bench, each selecting
// a real pod: 48 admit to the server traffic from simulated pods (a
// team's namespaces and an app, or a role set, each on a port of its
// own), 48 let the client send to simulated pods (an app in any
// namespace, or an ipBlock with an except), one admits the client to the
// server on iperf3's port and the connection port, one lets the client
// send there, one admits the third pod on another port only, and one
// isolates the server for egress.
func trafficPolicies() []*networkingv1.NetworkPolicy {
	var out []*networkingv1.NetworkPolicy
	sel := func(app string) metav1.LabelSelector {
		return metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
	}
	np := func(name, app string, types ...networkingv1.PolicyType) *networkingv1.NetworkPolicy {
		p := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: name}}
		p.Spec.PodSelector, p.Spec.PolicyTypes = sel(app), types
		return p
	}
	ports := func(ps ...int32) []networkingv1.NetworkPolicyPort {
		var out []networkingv1.NetworkPolicyPort
		for _, p := range ps {
			v := intstr.FromInt32(p)
			out = append(out, networkingv1.NetworkPolicyPort{Port: &v})
		}
		return out
	}
	for i := range 48 {
		p := np(fmt.Sprintf("server-from-sim-%02d", i), "server", networkingv1.PolicyTypeIngress)
		peer := networkingv1.NetworkPolicyPeer{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprintf("t%d", i%3)}},
			PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app%d", i%20)}},
		}
		if i%2 == 1 {
			peer.PodSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "role", Operator: metav1.LabelSelectorOpIn, Values: []string{fmt.Sprintf("r%d", i%5), fmt.Sprintf("r%d", (i+2)%5)}},
			}}
		}
		p.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{peer}, Ports: ports(int32(1000 + i))}}
		out = append(out, p)
	}
	for i := range 48 {
		p := np(fmt.Sprintf("client-to-sim-%02d", i), "client", networkingv1.PolicyTypeEgress)
		peer := networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app%d", (i+7)%20)}}}
		if i%3 == 2 {
			peer = networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: fmt.Sprintf("198.18.%d.0/24", 100+i), Except: []string{fmt.Sprintf("198.18.%d.128/25", 100+i)}}}
		}
		p.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{peer}, Ports: ports(int32(2000 + i))}}
		out = append(out, p)
	}
	allowIn := np("server-from-client", "server", networkingv1.PolicyTypeIngress)
	allowIn.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
		From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}}, Ports: ports(5201, 7000),
	}}
	allowOut := np("client-to-server", "client", networkingv1.PolicyTypeEgress)
	allowOut.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{
		To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}}}}, Ports: ports(5201, 7000),
	}}
	otherIn := np("server-from-other", "server", networkingv1.PolicyTypeIngress)
	otherIn.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
		From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "other"}}}}, Ports: ports(9),
	}}
	serverOut := np("server-sends-nothing", "server", networkingv1.PolicyTypeEgress)
	return append(out, allowIn, allowOut, otherIn, serverOut)
}

// connRate opens TCP connections from ns to dst for d with workers
// clients at once, each connection sending one byte, reading it back and
// closing with a reset (no TIME_WAIT left to exhaust the ports), and
// returns the connections completed per second and this process's CPU
// time per connection in µs. The server is this process's too
// (e2e.ServeTCP), and the kernel handles most of a packet's path between
// the pods (veth, bridge, the policy rules, VXLAN) in the sending
// thread, so that CPU time is the path's cost, less disturbed by other
// tenants' load than the rate.
func connRate(ns e2e.NS, dst netip.AddrPort, d time.Duration, workers int) (rate, cpuPerConn float64, err error) {
	var mu sync.Mutex
	var total int
	var firstErr error
	var wg sync.WaitGroup
	cpu0, err := processCPU()
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	end := start.Add(d)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			err := ns.Do(func() error {
				buf := make([]byte, 1)
				for time.Now().Before(end) {
					c, err := net.DialTimeout("tcp", dst.String(), 2*time.Second)
					if err != nil {
						return fmt.Errorf("connection %d to %s: %w", n+1, dst, err)
					}
					c.SetDeadline(time.Now().Add(2 * time.Second))
					_, err = c.Write([]byte{'x'})
					if err == nil {
						_, err = io.ReadFull(c, buf)
					}
					c.(*net.TCPConn).SetLinger(0)
					c.Close()
					if err != nil {
						return fmt.Errorf("connection %d to %s: echo: %w", n+1, dst, err)
					}
					n++
				}
				return nil
			})
			mu.Lock()
			total += n
			if err != nil && firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1, err := processCPU()
	if err != nil {
		return 0, 0, err
	}
	if firstErr != nil {
		return 0, 0, firstErr
	}
	if total == 0 {
		return 0, 0, fmt.Errorf("no connection to %s completed in %v", dst, d)
	}
	return float64(total) / elapsed.Seconds(), float64((cpu1 - cpu0).Microseconds()) / float64(total), nil
}

// processCPU is the user and system CPU time this process has used.
func processCPU() (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// labelChange times, on the real path, one simulated pod's label change
// among the 1000 pods (its endpoint republished in etcd) until both
// nodes have applied it (their /status shows the endpoint revision
// applied; the time is taken from the apply's own time stamp, same
// clock), beside a change of one policy (its port) the same way, in turn.
// The pod moves between app0 and app6, which two of the server's ingress
// policies admit from team t0's namespaces (server-from-sim-00 and -06),
// so each change moves its address between sets of the server node's
// table.
func labelChange(t *testing.T, c *e2e.Cluster, cli *clientv3.Client, store *subnetetcd.Store, sims []*simPublisher, pols []*networkingv1.NetworkPolicy) {
	t.Helper()
	ctx := t.Context()
	if err := store.PutPolicies(ctx, pols); err != nil {
		t.Fatal(err)
	}
	// applied waits until every node has applied revision rev of the
	// endpoints (or the policies) and returns the latest apply's time.
	applied := func(rev int64, endpoints bool) time.Time {
		t.Helper()
		var last time.Time
		deadline := time.Now().Add(30 * time.Second)
		for _, n := range c.Nodes() {
			for {
				st, err := n.Status(ctx)
				if err == nil && st.Policy != nil && st.Policy.ApplyError == "" &&
					((endpoints && st.Policy.EndpointRevision >= rev) || (!endpoints && st.Policy.Revision >= rev)) {
					if st.Policy.LastApply.After(last) {
						last = st.Policy.LastApply
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: revision %d not applied within 30 s: %+v, %v", n.Name, rev, st, err)
				}
				time.Sleep(2 * time.Millisecond)
			}
		}
		return last
	}
	revision := func() int64 {
		t.Helper()
		resp, err := cli.Get(ctx, store.PoliciesPrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	applied(revision(), false)
	sn := sims[0]
	ep := &sn.eps[3] // pod 3: in ns3 (team t0), app3, role r3
	policyIdx := 10  // server-from-sim-10
	var label, pol []float64
	const changes = 10
	for i := range 2 * changes {
		start := time.Now()
		if i%2 == 0 {
			labels := map[string]string{"role": ep.Labels["role"], "app": "app0"}
			if ep.Labels["app"] == "app0" {
				labels["app"] = "app6"
			}
			ep.Labels = labels
			if _, _, err := store.PublishEndpoints(ctx, &sn.lease, sn.eps); err != nil {
				t.Fatal(err)
			}
			label = append(label, ms(applied(revision(), true).Sub(start)))
			continue
		}
		np := pols[policyIdx].DeepCopy()
		port := np.Spec.Ingress[0].Ports[0].Port.IntVal
		if port == 1000+int32(policyIdx) {
			port += 5000
		} else {
			port = 1000 + int32(policyIdx)
		}
		np.Spec.Ingress[0].Ports[0].Port.IntVal = port
		pols[policyIdx] = np
		if err := store.PutPolicies(ctx, []*networkingv1.NetworkPolicy{np}); err != nil {
			t.Fatal(err)
		}
		pol = append(pol, ms(applied(revision(), false).Sub(start)))
	}
	t.Logf("label change → applied on both nodes (ms): %v; policy change: %v", label, pol)
	benchRow("one pod label change among 1000 pods → applied on both nodes (real weftd, etcd, 100 policies)",
		fmt.Sprintf("%.1f ms", median(label)), fmt.Sprintf("one policy change the same way, same run: %.1f ms", median(pol)),
		fmt.Sprintf("%.2fx (label %.1f–%.1f ms, policy %.1f–%.1f ms; %d each, alternating)", median(label)/median(pol),
			slices.Min(label), slices.Max(label), slices.Min(pol), slices.Max(pol), changes))
}
