// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e && linux

package e2e_test

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/e2etest"
)

// resync is the --resync-interval of the shared VXLAN cluster: short, so
// that the drift test stays quick.
const resync = 2 * time.Second

// TestVXLAN runs the VXLAN scenarios on one shared dual-stack cluster of
// three nodes with two pods each. The subtests run in order and build on
// each other (the last ones add and remove nodes).
//
//	underlay br0 198.18.0.0/24 ── node1 .11 ── node2 .12 ── node3 .13 ── outside .5
//	                               2 pods       2 pods       2 pods
func TestVXLAN(t *testing.T) {
	c := e2etest.NewCluster(t, e2e.Options{Nodes: 3, PodsPerNode: 2, DualStack: true, ResyncInterval: resync})
	ctx := t.Context()

	t.Run("pods-all-to-all", func(t *testing.T) {
		for _, v6 := range []bool{false, true} {
			t.Run(family(v6), func(t *testing.T) {
				allToAll(t, c.Pods(), v6)
			})
		}
	})

	t.Run("node-to-remote-pod", func(t *testing.T) {
		for _, n := range c.Nodes() {
			for _, p := range c.Pods() {
				if p.Node == n {
					continue
				}
				for _, v6 := range []bool{false, true} {
					if _, err := e2e.Ping(n.NS, p.Addr(v6), 5*time.Second); err != nil {
						t.Errorf("%s → %s (%s): %v", n.Name, p.Name, family(v6), err)
					}
				}
			}
		}
	})

	t.Run("encapsulation-is-real", func(t *testing.T) {
		testEncapsulation(t, c)
	})

	t.Run("mtu", func(t *testing.T) {
		testMTU(t, c)
	})

	t.Run("masquerade", func(t *testing.T) {
		testMasquerade(t, c)
	})

	t.Run("drift-repaired", func(t *testing.T) {
		testDrift(t, c)
	})

	t.Run("bad-config-while-running", func(t *testing.T) {
		testBadConfig(t, c)
	})

	t.Run("restart-under-traffic", func(t *testing.T) {
		testRestartUnderTraffic(t, c)
	})

	t.Run("restart-while-etcd-down", func(t *testing.T) {
		testRestartEtcdDown(t, c)
	})

	t.Run("fourth-node-joins", func(t *testing.T) {
		testJoin(t, c)
	})

	t.Run("lease-removed", func(t *testing.T) {
		testLeaseRemoved(t, c)
	})
	_ = ctx
}

func family(v6 bool) string {
	if v6 {
		return "ipv6"
	}
	return "ipv4"
}

// allToAll pings every pod from every other pod, in parallel.
func allToAll(t *testing.T, pods []*e2e.Pod, v6 bool) {
	t.Helper()
	var wg sync.WaitGroup
	for _, a := range pods {
		for _, b := range pods {
			if a == b {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := e2e.Ping(a.NS, b.Addr(v6), 5*time.Second); err != nil {
					t.Errorf("%s → %s: %v", a.Name, b.Name, err)
				}
			}()
		}
	}
	wg.Wait()
}

// inPodNetwork reports whether a is a pod address of the default networks.
func inPodNetwork(a netip.Addr) bool {
	return netip.MustParsePrefix(e2e.DefaultNetwork).Contains(a) || netip.MustParsePrefix(e2e.DefaultIPv6Network).Contains(a)
}

func testEncapsulation(t *testing.T, c *e2e.Cluster) {
	n1, n2 := c.Nodes()[0], c.Nodes()[1]
	a, b := n1.Pods()[0], n2.Pods()[0]
	for _, v6 := range []bool{false, true} {
		t.Run(family(v6), func(t *testing.T) {
			srv, err := e2e.ServeUDP(b.NS, netip.AddrPortFrom(b.Addr(v6), 0))
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			capture, err := e2e.StartCapture(c.Underlay)
			if err != nil {
				t.Fatal(err)
			}
			marker := fmt.Sprintf("weft-encap-%s-%s", family(v6), c.ID)
			if err := e2e.UDPEcho(a.NS, srv.Addr, []byte(marker), 5*time.Second); err != nil {
				capture.Stop()
				t.Fatal(err)
			}
			pkts := capture.Stop()
			var inner, bare int
			for _, p := range pkts {
				if inPodNetwork(p.Src) || inPodNetwork(p.Dst) {
					bare++
					t.Errorf("pod address in the clear on the underlay: %s", p)
					continue
				}
				if !p.DecodeVXLAN(8472) {
					continue
				}
				if p.VNI() != 1 || p.Src != n1.IP && p.Src != n2.IP {
					continue
				}
				if strings.Contains(string(p.Inner.Payload), marker) {
					if !(p.Inner.Src == a.Addr(v6) && p.Inner.Dst == b.Addr(v6) || p.Inner.Src == b.Addr(v6) && p.Inner.Dst == a.Addr(v6)) {
						t.Errorf("marker in VXLAN packet with unexpected inner addresses: %s", p)
					}
					inner++
				}
			}
			if inner < 2 { // request and reply, each seen at least once
				t.Errorf("saw %d VXLAN packets (UDP/8472, VNI 1) carrying the datagram between %s and %s, want ≥ 2 (of %d packets captured)", inner, a.Addr(v6), b.Addr(v6), len(pkts))
			}
			t.Logf("%d packets captured, %d VXLAN packets carrying the test datagram, %d bare pod packets", len(pkts), inner, bare)
		})
	}
}

func testMTU(t *testing.T, c *e2e.Cluster) {
	n1, n2 := c.Nodes()[0], c.Nodes()[1]
	a, b := n1.Pods()[0], n2.Pods()[0]
	sf, err := n1.SubnetFile()
	if err != nil {
		t.Fatal(err)
	}
	// VXLAN over an IPv4 underlay with MTU 1500: 1500 − 50.
	if sf.MTU != 1450 {
		t.Errorf("WEFT_MTU = %d, want 1450 (underlay 1500 − 50)", sf.MTU)
	}
	mtu := sf.MTU
	srv, err := e2e.ServeUDP(b.NS, netip.AddrPortFrom(b.IP, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := e2e.UDPEchoDF(a.NS, srv.Addr, mtu, 5*time.Second); err != nil {
		t.Errorf("DF packet of exactly the pod MTU (%d) across nodes: %v", mtu, err)
	}
	if err := e2e.UDPEchoDF(a.NS, srv.Addr, mtu+1, 2*time.Second); !e2e.IsMsgSize(err) {
		t.Errorf("DF packet of %d from a pod with MTU %d: got %v, want EMSGSIZE", mtu+1, mtu, err)
	}
	// A pod whose own MTU is larger (as if misconfigured) must get
	// "fragmentation needed" with the tunnel MTU from its node, not a
	// silent drop.
	if err := a.SetPodMTU(1500); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := a.SetPodMTU(mtu); err != nil {
			t.Errorf("restore pod MTU: %v", err)
		}
	}()
	got, from, err := e2e.FragNeeded(a.NS, srv.Addr, mtu+1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got != mtu {
		t.Errorf("fragmentation needed announces MTU %d, want %d", got, mtu)
	}
	t.Logf("%d-byte DF packet refused by %s with fragmentation needed, MTU %d", mtu+1, from, got)
}

func testMasquerade(t *testing.T, c *e2e.Cluster) {
	n1, n2 := c.Nodes()[0], c.Nodes()[1]
	a, b := n1.Pods()[0], n2.Pods()[0]
	out, err := e2e.ServeUDP(c.Outside, netip.AddrPortFrom(e2e.OutsideIP, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	outTCP, err := e2e.ServeTCP(c.Outside, netip.AddrPortFrom(e2e.OutsideIP, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer outTCP.Close()
	if err := e2e.UDPEcho(a.NS, out.Addr, []byte("to the outside"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := e2e.TCPEcho(a.NS, outTCP.Addr, []byte("to the outside"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*e2e.Server{out, outTCP} {
		if got := s.Peers(); len(got) == 0 || got[len(got)-1] != n1.IP {
			t.Errorf("outside host saw %v, want the node's address %s", got, n1.IP)
		}
	}
	in, err := e2e.ServeUDP(b.NS, netip.AddrPortFrom(b.IP, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := e2e.UDPEcho(a.NS, in.Addr, []byte("to a pod"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := in.Peers(); len(got) == 0 || got[len(got)-1] != a.IP {
		t.Errorf("pod on %s saw %v, want the pod's own address %s", n2.Name, got, a.IP)
	}
	// A node reaching a remote pod is not a pod: whatever source it uses
	// must be answerable, which the node-to-remote-pod test covers.
}

func testDrift(t *testing.T, c *e2e.Cluster) {
	n1, n2 := c.Nodes()[0], c.Nodes()[1]
	st, err := n2.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	mac := st.Node.BackendData.VTEPMAC
	sub := st.Node.Subnet.Masked()
	vtep := sub.Addr()
	k, err := n1.Kernel()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := k.RouteTo(sub); !ok {
		t.Fatalf("%s has no route to %s before the drift: %v", n1.Name, sub, k.Routes)
	}
	if err := n1.DeleteFDB(mac); err != nil {
		t.Fatal(err)
	}
	if err := n1.DeleteNeighbour(vtep); err != nil {
		t.Fatal(err)
	}
	if err := n1.DeleteRoute(sub); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// Within the resync interval, plus a second for the reconcile itself
	// on a loaded machine.
	err = e2e.Eventually(resync+time.Second, 20*time.Millisecond, func() error {
		k, err := n1.Kernel()
		if err != nil {
			return err
		}
		var missing []string
		if _, ok := k.RouteTo(sub); !ok {
			missing = append(missing, "route "+sub.String())
		}
		if ne, ok := k.Neighbour(vtep); !ok || !strings.EqualFold(ne.MAC, mac) {
			missing = append(missing, "neighbour "+vtep.String())
		}
		if f, ok := k.FDBFor(mac); !ok || f.Dst != n2.IP {
			missing = append(missing, "fdb "+mac)
		}
		if len(missing) > 0 {
			return fmt.Errorf("still missing on %s: %s", n1.Name, strings.Join(missing, ", "))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("route, neighbour and FDB entry repaired %.2fs after deletion (resync interval %s)", time.Since(start).Seconds(), resync)
	if _, err := e2e.Ping(n1.Pods()[0].NS, n2.Pods()[0].IP, 3*time.Second); err != nil {
		t.Errorf("after repair: %v", err)
	}
}

func testBadConfig(t *testing.T, c *e2e.Cluster) {
	ctx := t.Context()
	bad := `{"Network":"10.244.0.0/33","Backend":{"Type":"vxlan"}}`
	if err := c.Etcd.PutConfig(ctx, bad); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.Etcd.PutConfig(ctx, c.NetworkConfig()); err != nil {
			t.Errorf("restore config: %v", err)
		}
		for _, n := range c.Nodes() {
			err := e2e.Eventually(5*time.Second, 50*time.Millisecond, func() error {
				st, err := n.Status(ctx)
				if err != nil {
					return err
				}
				if st.Node.ConfigError != "" {
					return fmt.Errorf("%s still reports config error %q", n.Name, st.Node.ConfigError)
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}
	}()
	for _, n := range c.Nodes() {
		err := e2e.Eventually(5*time.Second, 50*time.Millisecond, func() error {
			st, err := n.Status(ctx)
			if err != nil {
				return err
			}
			if st.Node.ConfigError == "" {
				return fmt.Errorf("%s reports no config error", n.Name)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
			continue
		}
		st, _ := n.Status(ctx)
		t.Logf("%s reports: %s", n.Name, st.Node.ConfigError)
		if !n.Running() {
			t.Errorf("weftd on %s exited after a bad config", n.Name)
		}
		if code, _, err := n.Get(ctx, "/readyz"); err != nil || code != 200 {
			t.Errorf("%s /readyz after a bad config: %d %v", n.Name, code, err)
		}
	}
	allToAll(t, c.Pods(), false)
}

// vtepMAC returns the MAC of the node's VXLAN device from the kernel.
func vtepMAC(t *testing.T, n *e2e.Node) string {
	t.Helper()
	k, err := n.Kernel()
	if err != nil {
		t.Fatal(err)
	}
	return k.VTEPMAC
}

func testRestartUnderTraffic(t *testing.T, c *e2e.Cluster) {
	ctx := t.Context()
	n1, n2 := c.Nodes()[0], c.Nodes()[1]
	before, err := n1.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	macBefore := vtepMAC(t, n1)
	// Traffic both ways through the restarting node.
	out, err := e2e.StartStream(n1.Pods()[0].NS, n2.Pods()[0].IP, 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	in, err := e2e.StartStream(n2.Pods()[1].NS, n1.Pods()[1].IP, 5*time.Millisecond)
	if err != nil {
		out.Stop()
		t.Fatal(err)
	}
	waitStream(out, 50)
	start := time.Now()
	restartErr := n1.Restart(ctx)
	took := time.Since(start)
	waitStream(out, out.Sent()+100) // keep traffic going after ready
	ro, ri := out.Stop(), in.Stop()
	if restartErr != nil {
		t.Fatal(restartErr)
	}
	t.Logf("restart to ready in %.2fs; %s → %s: %s; back: %s", took.Seconds(), n1.Name, n2.Name, ro, ri)
	if ro.Lost() != 0 || ri.Lost() != 0 {
		t.Errorf("packets lost across the restart: out %s, in %s", ro, ri)
	}
	after, err := n1.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkSubnetsKept(t, before, after, "across the restart")
	if macAfter := vtepMAC(t, n1); macAfter != macBefore || after.Node.BackendData.VTEPMAC != before.Node.BackendData.VTEPMAC {
		t.Errorf("VTEP MAC changed across the restart: %s (published %s) → %s (published %s)", macBefore, before.Node.BackendData.VTEPMAC, macAfter, after.Node.BackendData.VTEPMAC)
	}
}

func testRestartEtcdDown(t *testing.T, c *e2e.Cluster) {
	ctx := t.Context()
	n2, n3 := c.Nodes()[1], c.Nodes()[2]
	before, err := n2.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s, err := e2e.StartStream(n3.Pods()[0].NS, n2.Pods()[0].IP, 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if err := stopEtcd(t, c); err != nil {
		s.Stop()
		t.Fatal(err)
	}
	restartStart := time.Now()
	restartErr := n2.Restart(ctx)
	restartTook := time.Since(restartStart)
	waitStream(s, s.Sent()+100)
	r := s.Stop()
	if restartErr != nil {
		t.Fatal(restartErr)
	}
	t.Logf("%s restarted with etcd down, ready in %.2fs; stream %s → %s: %s", n2.Name, restartTook.Seconds(), n3.Name, n2.Name, r)
	if r.Lost() != 0 {
		t.Errorf("packets lost: %s", r)
	}
	after, err := n2.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkSubnetsKept(t, before, after, "while etcd was down")
	if after.Node.EtcdReachable {
		t.Errorf("%s claims etcd is reachable while it is stopped", n2.Name)
	}
	// New flows, both directions, from the restarted node's pods.
	for _, p := range n2.Pods() {
		for _, q := range c.Pods() {
			if q.Node == n2 {
				continue
			}
			if _, err := e2e.Ping(p.NS, q.IP, 3*time.Second); err != nil {
				t.Errorf("etcd down, after restart: %s → %s: %v", p.Name, q.Name, err)
			}
		}
	}
	if err := c.Etcd.Start(ctx); err != nil {
		t.Fatal(err)
	}
	backAt := time.Now()
	defer func() { t.Logf("etcd back: %s sees it after %.2fs", n2.Name, time.Since(backAt).Seconds()) }()
	err = e2e.Eventually(30*time.Second, 100*time.Millisecond, func() error {
		st, err := n2.Status(ctx)
		if err != nil {
			return err
		}
		if !st.Node.EtcdReachable {
			return fmt.Errorf("%s does not see etcd again", n2.Name)
		}
		if st.Node.Subnet != before.Node.Subnet {
			return fmt.Errorf("subnet changed after etcd returned: %s → %s", before.Node.Subnet, st.Node.Subnet)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

func testJoin(t *testing.T, c *e2e.Cluster) {
	ctx := t.Context()
	n4, err := c.AddNode(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := n4.Start(); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	if err := n4.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	ready := time.Now()
	checkJoinReach(t, c, n4, started, ready, func(p4 *e2e.Pod) { diagnoseJoin(t, c, n4, p4) })
}

func testLeaseRemoved(t *testing.T, c *e2e.Cluster) {
	ctx := t.Context()
	nodes := c.Nodes()
	gone := nodes[2]
	st, err := gone.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sub, sub6, mac := st.Node.Subnet.Masked(), st.Node.IPv6Subnet.Masked(), st.Node.BackendData.VTEPMAC
	if err := gone.Stop(); err != nil {
		t.Fatal(err)
	}
	removeLeaseAndWait(t, c, gone, nodesExcept(nodes, gone), "routes, neighbour and FDB entry", func(n *e2e.Node) ([]string, error) {
		k, err := n.Kernel()
		if err != nil {
			return nil, err
		}
		var left []string
		if r, ok := k.RouteTo(sub); ok {
			left = append(left, "route "+r.String())
		}
		if sub6.IsValid() {
			if r, ok := k.RouteTo(sub6); ok {
				left = append(left, "route "+r.String())
			}
		}
		if _, ok := k.Neighbour(sub.Addr()); ok {
			left = append(left, "neighbour "+sub.Addr().String())
		}
		if _, ok := k.FDBFor(mac); ok {
			left = append(left, "fdb "+mac)
		}
		return left, nil
	})
}

// diagnoseJoin logs what a failed join check needs: whether the new pod
// answers its own node, what the peers' kernels hold for the new subnet,
// and whether the pods reach it now.
func diagnoseJoin(t *testing.T, c *e2e.Cluster, n4 *e2e.Node, p4 *e2e.Pod) {
	t.Helper()
	if d, err := e2e.Ping(n4.NS, p4.IP, time.Second); err != nil {
		t.Logf("diagnosis: %s → its own pod %s: %v", n4.Name, p4.Name, err)
	} else {
		t.Logf("diagnosis: %s → its own pod %s: %s", n4.Name, p4.Name, d)
	}
	sub, _ := n4.Subnet()
	for _, n := range c.Nodes() {
		k, err := n.Kernel()
		if err != nil {
			t.Logf("diagnosis: %s: %v", n.Name, err)
			continue
		}
		r, ok := k.RouteTo(sub)
		t.Logf("diagnosis: %s: route to %s: %v (%t); neighbours %v; fdb %v", n.Name, sub, r, ok, k.Neighbours, k.FDB)
		h, err := n.NS.Handle()
		if err != nil {
			continue
		}
		flows, err := h.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
		h.Close()
		for _, f := range flows {
			if str := f.String(); strings.Contains(str, p4.IP.String()) {
				t.Logf("diagnosis: %s conntrack: %s", n.Name, str)
			}
		}
		if err != nil {
			t.Logf("diagnosis: %s conntrack: %v", n.Name, err)
		}
	}
	for _, p := range c.Pods() {
		if p.Node == n4 {
			continue
		}
		_, err := e2e.Ping(p.NS, p4.IP, 2*time.Second)
		t.Logf("diagnosis: now %s → %s: %v", p.Name, p4.Name, err)
	}
}
