// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package hostgw

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/e2e/netnstest"
)

// Topology:
//
//	underlay netns: bridge seg0 ─┬─ node1 eth0 198.18.0.1 / 2001:2::1
//	                             ├─ node2 eth0 198.18.0.2 / 2001:2::2
//	                             └─ router r0 198.18.0.254 ── r1 198.18.1.254 ── bridge seg1 ── node3 eth0 198.18.1.3
//
// Each node has a pod (10.244.i.2, fd10:244:0:i::2) with a UDP echo server.

const echoPort = 7777

type node struct {
	name            string
	ns, pod         *netnstest.NS
	pub, pub6       netip.Addr
	subnet, subnet6 netip.Prefix
	podIP, podIP6   netip.Addr
	b               *Backend
	attrs           backend.Attrs
	logs            *bytes.Buffer
}

func P(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func A(s string) netip.Addr   { return netip.MustParseAddr(s) }

func topology(t *testing.T) []*node {
	t.Helper()
	netnstest.SkipUnlessRoot(t)
	u := netnstest.NewNS(t, "whu")
	netnstest.AddBridge(t, u, "seg0")
	netnstest.AddBridge(t, u, "seg1")
	r := netnstest.NewNS(t, "whr")
	netnstest.Attach(t, u, "seg0", r, "r0", P("198.18.0.254/24"), P("2001:2::fe/64"))
	netnstest.Attach(t, u, "seg1", r, "r1", P("198.18.1.254/24"), P("2001:2:1::fe/64"))
	netnstest.EnableForwarding(t, r)
	var nodes []*node
	for i := 1; i <= 3; i++ {
		seg, n4, n6, gw4, gw6, far4, far6 := "seg0", 0, "0", "198.18.0.254", "2001:2::fe", "198.18.1.0/24", "2001:2:1::/64"
		if i == 3 {
			seg, n4, n6, gw4, gw6, far4, far6 = "seg1", 1, "1", "198.18.1.254", "2001:2:1::fe", "198.18.0.0/24", "2001:2::/64"
		}
		n := &node{
			name:    fmt.Sprintf("node%d", i),
			ns:      netnstest.NewNS(t, fmt.Sprintf("whn%d", i)),
			pub:     A(fmt.Sprintf("198.18.%d.%d", n4, i)),
			pub6:    A(fmt.Sprintf("2001:2:%s::%d", n6, i)),
			subnet:  P(fmt.Sprintf("10.244.%d.0/24", i)),
			subnet6: P(fmt.Sprintf("fd10:244:0:%d::/64", i)),
			podIP:   A(fmt.Sprintf("10.244.%d.2", i)),
			podIP6:  A(fmt.Sprintf("fd10:244:0:%d::2", i)),
			logs:    &bytes.Buffer{},
		}
		netnstest.Attach(t, u, seg, n.ns, "eth0", netip.PrefixFrom(n.pub, 24), netip.PrefixFrom(n.pub6, 64))
		netnstest.AddRoute(t, n.ns, P(far4), A(gw4), "eth0")
		netnstest.AddRoute(t, n.ns, P(far6), A(gw6), "eth0")
		netnstest.EnableForwarding(t, n.ns)
		n.pod = netnstest.AddPod(t, n.ns, fmt.Sprintf("whp%d", i), "pod0",
			[]netip.Prefix{netip.PrefixFrom(n.subnet.Addr().Next(), 24), netip.PrefixFrom(n.subnet6.Addr().Next(), 64)},
			[]netip.Prefix{netip.PrefixFrom(n.podIP, 24), netip.PrefixFrom(n.podIP6, 64)})
		netnstest.UDPEcho(t, n.pod, netip.AddrPortFrom(netip.IPv6Unspecified(), echoPort))

		log := logrus.New()
		log.Out = n.logs
		err := n.ns.Do(func() (err error) {
			if n.b, err = New(Config{PublicIP: n.pub, Iface: "eth0", Log: log}); err != nil {
				return err
			}
			n.attrs, err = n.b.Setup(context.Background())
			return err
		})
		if err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
		t.Cleanup(func() { n.b.Close() })
		nodes = append(nodes, n)
	}
	return nodes
}

func desired(n *node, all []*node, complete bool) backend.Desired {
	d := backend.Desired{Local: backend.Local{Subnet: n.subnet, IPv6Subnet: n.subnet6}, Complete: complete}
	for _, p := range all {
		if p != n {
			d.Peers = append(d.Peers, backend.Peer{Name: p.name, Subnet: p.subnet, IPv6Subnet: p.subnet6, PublicIP: p.pub, PublicIPv6: p.pub6})
		}
	}
	return d
}

func ownRoutes(t *testing.T, n *node) []string {
	t.Helper()
	rs, err := backend.ListOwnRoutes(n.ns.Netlink(t))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s via %s", r.Dst, r.Gw))
	}
	sort.Strings(out)
	return out
}

func reach(t *testing.T, from *netnstest.NS, ok bool, dsts ...netip.Addr) {
	t.Helper()
	timeout := 5 * time.Second
	if !ok {
		timeout = 300 * time.Millisecond
	}
	for _, d := range dsts {
		err := netnstest.UDPRoundTrip(from, netip.AddrPortFrom(d, echoPort), timeout)
		if ok && err != nil {
			t.Errorf("%s → %s: %v", from.Name, d, err)
		}
		if !ok && err == nil {
			t.Errorf("%s → %s: reachable, want unreachable", from.Name, d)
		}
	}
}

func TestHostGW(t *testing.T) {
	nodes := topology(t)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	if n1.attrs.MTU != 1500 {
		t.Errorf("MTU %d, want the underlay's 1500", n1.attrs.MTU)
	}
	// A foreign route that must survive.
	netnstest.AddRoute(t, n1.ns, P("10.244.77.0/24"), A("198.18.0.77"), "eth0")

	var res [3]backend.Result
	for i, n := range nodes {
		var err error
		if res[i], err = n.b.Reconcile(context.Background(), desired(n, nodes, true)); err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
	}
	t.Run("routes and problems", func(t *testing.T) {
		want := []string{"10.244.2.0/24 via 198.18.0.2", "fd10:244:0:2::/64 via 2001:2::2"}
		if diff := cmp.Diff(want, ownRoutes(t, n1)); diff != "" {
			t.Errorf("node1 routes (-want +got):\n%s", diff)
		}
		if res[0].Added != 2 {
			t.Errorf("node1 result %+v, want 2 added", res[0])
		}
		why := res[0].Problems["node3"]
		if !strings.Contains(why, "not on this node's L2 segment") || !strings.Contains(why, "via 198.18.0.254") {
			t.Errorf("node1 problem for node3 = %q", why)
		}
		if len(res[2].Problems) != 2 || len(ownRoutes(t, n3)) != 0 {
			t.Errorf("node3: problems %v, routes %v; want both peers reported and no route", res[2].Problems, ownRoutes(t, n3))
		}
	})
	t.Run("traffic", func(t *testing.T) {
		reach(t, n1.pod, true, n2.podIP, n2.podIP6)
		reach(t, n2.pod, true, n1.podIP, n1.podIP6)
		reach(t, n1.ns, true, n2.podIP)
		// node3 is not routed: no black hole route either, so the
		// packet follows the node's default path (none here).
		reach(t, n1.pod, false, n3.podIP)
	})
	// The daemon logs problems (once, when they appear or change; see
	// daemon.logProblems); the backend reports them on every reconcile.
	t.Run("idempotent, problem reported again", func(t *testing.T) {
		r, err := n1.b.Reconcile(context.Background(), desired(n1, nodes, true))
		if err != nil {
			t.Fatal(err)
		}
		if r.Changed() {
			t.Errorf("second reconcile changed %+v", r)
		}
		if why := r.Problems["node3"]; why == "" || why != res[0].Problems["node3"] {
			t.Errorf("problem for node3 = %q, want it reported as before (%q)", r.Problems["node3"], res[0].Problems["node3"])
		}
	})
	t.Run("drift repaired", func(t *testing.T) {
		h := n1.ns.Netlink(t)
		if err := h.RouteDel(&netlink.Route{Dst: netnstest.IPNet(n2.subnet), Protocol: backend.RouteProtocol}); err != nil {
			t.Fatal(err)
		}
		r, err := n1.b.Reconcile(context.Background(), desired(n1, nodes, true))
		if err != nil || r.Added != 1 {
			t.Fatalf("repair: %+v, %v; want 1 added", r, err)
		}
		reach(t, n1.pod, true, n2.podIP)
	})
	t.Run("departed peer: kept while incomplete, removed when complete", func(t *testing.T) {
		only := []*node{n1, n3}
		r, err := n1.b.Reconcile(context.Background(), desired(n1, only, false))
		if err != nil || r.Changed() {
			t.Fatalf("incomplete: %+v, %v", r, err)
		}
		if len(ownRoutes(t, n1)) != 2 {
			t.Errorf("routes removed while incomplete: %v", ownRoutes(t, n1))
		}
		r, err = n1.b.Reconcile(context.Background(), desired(n1, only, true))
		if err != nil || r.Removed != 2 {
			t.Fatalf("complete: %+v, %v; want 2 removed", r, err)
		}
		if got := ownRoutes(t, n1); len(got) != 0 {
			t.Errorf("routes left: %v", got)
		}
		rs, err := backend.RouteList(n1.ns.Netlink(t), nil, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, r := range rs {
			found = found || (r.Dst != nil && r.Dst.String() == "10.244.77.0/24")
		}
		if !found {
			t.Error("foreign route 10.244.77.0/24 deleted")
		}
	})
}
