// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e && linux

package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/daemon/status"
	"github.com/weftnet/weft/e2e"
)

// Checks shared by the backend tests (VXLAN, WireGuard): what a backend
// must do is the same, only how its kernel state looks differs, and that
// part is passed in.

// checkJoinReach checks a node that just joined: n4 was started at started
// and first answered /readyz at ready. It adds a pod to n4 and checks that
// every pod of the other nodes reaches it within 1 s of n4 being ready (the
// pod's attachment, CNI ADD, is not weftd's time and is added to the
// budget). On a failure it calls diagnose with the new pod, then logs what
// a capture inside n4 saw of the new pod's packets. Last, it checks all
// pods reach each other over both families.
func checkJoinReach(t *testing.T, c *e2e.Cluster, n4 *e2e.Node, started, ready time.Time, diagnose func(p4 *e2e.Pod)) {
	t.Helper()
	capture, err := e2e.StartCapture(n4.NS)
	if err != nil {
		t.Fatal(err)
	}
	p4, err := n4.AddPod(t.Context())
	if err != nil {
		capture.Stop()
		t.Fatal(err)
	}
	attached := time.Now()
	budget := time.Second + attached.Sub(ready)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var worst time.Duration
	for _, p := range c.Pods() {
		if p.Node == n4 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e2e.Ping(p.NS, p4.IP, time.Until(ready.Add(budget))); err != nil {
				t.Errorf("%s → %s not within %s of %s being ready: %v", p.Name, p4.Name, budget.Round(time.Millisecond), n4.Name, err)
				return
			}
			d := time.Since(ready)
			mu.Lock()
			worst = max(worst, d)
			mu.Unlock()
		}()
	}
	wg.Wait()
	pkts := capture.Stop()
	t.Logf("%s: start → ready %.0f ms, pod attached %.0f ms later, reachable from every pod %.0f ms after ready",
		n4.Name, ready.Sub(started).Seconds()*1000, attached.Sub(ready).Seconds()*1000, worst.Seconds()*1000)
	if t.Failed() {
		diagnose(p4)
		logCapture(t, n4, pkts, p4)
	}
	// Both families, both directions, everyone.
	for _, v6 := range []bool{false, true} {
		allToAll(t, c.Pods(), v6)
	}
}

// logCapture logs the packets of a capture inside n that come from or go
// to pod p, with the name of the link each was seen on.
func logCapture(t *testing.T, n *e2e.Node, pkts []e2e.Packet, p *e2e.Pod) {
	t.Helper()
	names := map[int]string{}
	if h, err := n.NS.Handle(); err == nil {
		links, _ := backend.LinkList(h)
		for _, l := range links {
			names[l.Attrs().Index] = l.Attrs().Name
		}
		h.Close()
	}
	for _, pkt := range pkts {
		if pkt.Src == p.IP || pkt.Dst == p.IP {
			dir := "in "
			if pkt.Outgoing {
				dir = "out"
			}
			t.Logf("diagnosis: %s capture %s %-12s %s", n.Name, dir, names[pkt.Ifindex], pkt)
		}
	}
}

// removeLeaseAndWait removes the lease of the (stopped) node gone with
// weftctl and waits, for each node of rest in parallel and for at most
// 10 s, until leftover reports nothing of gone left on it. what names what
// leftover looks for, for the log. A node that still holds something after
// the deadline fails the test with what it holds and the peers its /status
// lists.
func removeLeaseAndWait(t *testing.T, c *e2e.Cluster, gone *e2e.Node, rest []*e2e.Node, what string, leftover func(n *e2e.Node) ([]string, error)) {
	t.Helper()
	ctx := t.Context()
	out, err := c.Weftctl(ctx, "leases", "rm", "--yes", gone.Name)
	if err != nil {
		t.Fatalf("weftctl leases rm: %v", err)
	}
	t.Logf("weftctl leases rm: %s", strings.TrimSpace(out))
	start := time.Now()
	var wg sync.WaitGroup
	for _, n := range rest {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := e2e.Eventually(10*time.Second, 20*time.Millisecond, func() error {
				left, err := leftover(n)
				if err != nil {
					return err
				}
				if len(left) > 0 {
					return fmt.Errorf("%s still has %s", n.Name, strings.Join(left, ", "))
				}
				return nil
			})
			if err != nil {
				peers := "unknown"
				if st, err := n.Status(ctx); err == nil {
					peers = peerStates(st)
				}
				t.Errorf("%v; its /status lists peers [%s]", err, peers)
				return
			}
			t.Logf("%s: %s of %s gone %.0f ms after the lease was removed", n.Name, what, gone.Name, time.Since(start).Seconds()*1000)
		}()
	}
	wg.Wait()
}

// checkSubnetsKept fails the test if the node's IPv4 or IPv6 subnet differs
// between two of its statuses; when says between which events.
func checkSubnetsKept(t *testing.T, before, after *status.Report, when string) {
	t.Helper()
	if after.Node.Subnet != before.Node.Subnet || after.Node.IPv6Subnet != before.Node.IPv6Subnet {
		t.Errorf("subnets changed %s: %s %s → %s %s", when, before.Node.Subnet, before.Node.IPv6Subnet, after.Node.Subnet, after.Node.IPv6Subnet)
	}
}

// peerStates renders st's peers for messages: name(state) separated by spaces.
func peerStates(st *status.Report) string {
	var s []string
	for _, p := range st.Peers {
		s = append(s, p.Name+"("+p.State+")")
	}
	return strings.Join(s, " ")
}

// waitStream waits (at most 10 s) until s has sent n echoes.
func waitStream(s *e2e.Stream, n int64) {
	deadline := time.Now().Add(10 * time.Second)
	for s.Sent() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// stopEtcd stops the cluster's etcd and registers a cleanup that starts it
// again unless the test did (Start is a no-op on a running etcd).
func stopEtcd(t *testing.T, c *e2e.Cluster) error {
	t.Helper()
	if err := c.Etcd.Stop(); err != nil {
		return err
	}
	t.Cleanup(func() {
		if err := c.Etcd.Start(context.Background()); err != nil {
			t.Errorf("restart etcd: %v", err)
		}
	})
	return nil
}

// nodesExcept returns nodes without n.
func nodesExcept(nodes []*e2e.Node, n *e2e.Node) []*e2e.Node {
	var o []*e2e.Node
	for _, m := range nodes {
		if m != n {
			o = append(o, m)
		}
	}
	return o
}
