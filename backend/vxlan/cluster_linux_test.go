// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package vxlan

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/e2e/netnstest"
	"github.com/weftnet/weft/subnet"
)

// The test topology (all in namespaces made per test):
//
//	                 underlay netns
//	        ┌──────── bridge seg0 ─────────┐          bridge seg1 (routed)
//	        │              │               │              │
//	  node1 eth0      node2 eth0     router r0 ── r1   node3 eth0 (when behindRouter)
//	  198.18.0.1      198.18.0.2     198.18.0.254  198.18.1.254  198.18.1.3
//	  2001:2::1       2001:2::2      2001:2::fe    2001:2:1::fe  2001:2:1::3
//	    │ pod0            │ pod0                                  │ pod0
//	  pod 10.244.1.2    pod 10.244.2.2                         pod 10.244.3.2
//	  fd10:244:0:1::2   fd10:244:0:2::2                        fd10:244:0:3::2
//
// Nodes on seg0 otherwise: node i has 198.18.0.i. Each pod runs a UDP echo
// server on port echoPort (both families).

const echoPort = 7777

type tnode struct {
	i               int
	name            string
	ns, pod         *netnstest.NS
	pub, pub6       netip.Addr
	subnet, subnet6 netip.Prefix
	podIP, podIP6   netip.Addr
	stateDir        string
	b               *Backend
	attrs           backend.Attrs
	directRouting   bool
	v6Underlay      bool
}

type cluster struct {
	t        *testing.T
	underlay *netnstest.NS
	router   *netnstest.NS
	nodes    []*tnode
}

type clusterOpts struct {
	nodes int
	// behindRouter puts the last node on a second segment behind a
	// router namespace.
	behindRouter  bool
	directRouting bool
	// v6Underlay runs the tunnels over the nodes' IPv6 addresses.
	v6Underlay bool
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *logrus.Logger {
	l := logrus.New()
	l.Out = tWriter{t}
	l.Level = logrus.DebugLevel
	return l
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func newCluster(t *testing.T, o clusterOpts) *cluster {
	t.Helper()
	netnstest.SkipUnlessRoot(t)
	c := &cluster{t: t, underlay: netnstest.NewNS(t, "wvu")}
	netnstest.AddBridge(t, c.underlay, "seg0")
	if o.behindRouter {
		netnstest.AddBridge(t, c.underlay, "seg1")
		c.router = netnstest.NewNS(t, "wvr")
		netnstest.Attach(t, c.underlay, "seg0", c.router, "r0", pfx("198.18.0.254/24"), pfx("2001:2::fe/64"))
		netnstest.Attach(t, c.underlay, "seg1", c.router, "r1", pfx("198.18.1.254/24"), pfx("2001:2:1::fe/64"))
		netnstest.EnableForwarding(t, c.router)
	}
	for i := 1; i <= o.nodes; i++ {
		n := &tnode{
			i:             i,
			name:          fmt.Sprintf("node%d", i),
			ns:            netnstest.NewNS(t, fmt.Sprintf("wvn%d", i)),
			subnet:        pfx(fmt.Sprintf("10.244.%d.0/24", i)),
			subnet6:       pfx(fmt.Sprintf("fd10:244:0:%d::/64", i)),
			podIP:         netip.MustParseAddr(fmt.Sprintf("10.244.%d.2", i)),
			podIP6:        netip.MustParseAddr(fmt.Sprintf("fd10:244:0:%d::2", i)),
			stateDir:      t.TempDir(),
			directRouting: o.directRouting,
			v6Underlay:    o.v6Underlay,
		}
		seg, net4, net6 := "seg0", 0, "0"
		if o.behindRouter && i == o.nodes {
			seg, net4, net6 = "seg1", 1, "1"
		}
		n.pub = netip.MustParseAddr(fmt.Sprintf("198.18.%d.%d", net4, i))
		n.pub6 = netip.MustParseAddr(fmt.Sprintf("2001:2:%s::%d", net6, i))
		netnstest.Attach(t, c.underlay, seg, n.ns, "eth0",
			netip.PrefixFrom(n.pub, 24), netip.PrefixFrom(n.pub6, 64))
		if o.behindRouter {
			if seg == "seg1" {
				netnstest.AddRoute(t, n.ns, pfx("198.18.0.0/24"), netip.MustParseAddr("198.18.1.254"), "eth0")
				netnstest.AddRoute(t, n.ns, pfx("2001:2::/64"), netip.MustParseAddr("2001:2:1::fe"), "eth0")
			} else {
				netnstest.AddRoute(t, n.ns, pfx("198.18.1.0/24"), netip.MustParseAddr("198.18.0.254"), "eth0")
				netnstest.AddRoute(t, n.ns, pfx("2001:2:1::/64"), netip.MustParseAddr("2001:2::fe"), "eth0")
			}
		}
		netnstest.EnableForwarding(t, n.ns)
		n.pod = netnstest.AddPod(t, n.ns, fmt.Sprintf("wvp%d", i), "pod0",
			[]netip.Prefix{netip.PrefixFrom(n.subnet.Addr().Next(), 24), netip.PrefixFrom(n.subnet6.Addr().Next(), 64)},
			[]netip.Prefix{netip.PrefixFrom(n.podIP, 24), netip.PrefixFrom(n.podIP6, 64)})
		netnstest.UDPEcho(t, n.pod, netip.AddrPortFrom(netip.IPv6Unspecified(), echoPort))
		c.nodes = append(c.nodes, n)
	}
	return c
}

// config is node n's backend config.
func (c *cluster) config(n *tnode) Config {
	return Config{
		PublicIP:      n.tunnelIP(),
		Iface:         "eth0",
		StateDir:      n.stateDir,
		DirectRouting: n.directRouting,
		Log:           testLogger(c.t).WithField("node", n.name),
	}
}

// setup creates node n's backend inside its namespace and runs Setup.
func (c *cluster) setup(n *tnode) {
	c.t.Helper()
	b, attrs, err := setupIn(n.ns, c.config(n))
	if err != nil {
		c.t.Fatalf("%s: setup: %v", n.name, err)
	}
	if n.b != nil {
		n.b.Close()
	}
	n.b, n.attrs = b, attrs
	c.t.Cleanup(func() { b.Close() })
}

func setupIn(ns *netnstest.NS, cfg Config) (b *Backend, attrs backend.Attrs, err error) {
	err = ns.Do(func() error {
		if b, err = New(cfg); err != nil {
			return err
		}
		attrs, err = b.Setup(context.Background())
		return err
	})
	return b, attrs, err
}

// tunnelIP is the node's public IP: its IPv4 or, with v6Underlay, its IPv6
// underlay address.
func (n *tnode) tunnelIP() netip.Addr {
	if n.v6Underlay {
		return n.pub6
	}
	return n.pub
}

func (c *cluster) peer(n *tnode) backend.Peer {
	return backend.Peer{
		Name:       n.name,
		Subnet:     n.subnet,
		IPv6Subnet: n.subnet6,
		PublicIP:   n.tunnelIP(),
		PublicIPv6: n.pub6,
		Data:       n.attrs.Data,
	}
}

// desired is node n's desired state with every other node as a peer
// (except those in skip).
func (c *cluster) desired(n *tnode, complete bool, skip ...*tnode) backend.Desired {
	d := backend.Desired{Local: backend.Local{Subnet: n.subnet, IPv6Subnet: n.subnet6}, Complete: complete}
outer:
	for _, p := range c.nodes {
		if p == n {
			continue
		}
		for _, s := range skip {
			if p == s {
				continue outer
			}
		}
		d.Peers = append(d.Peers, c.peer(p))
	}
	return d
}

func (c *cluster) reconcile(n *tnode, d backend.Desired) backend.Result {
	c.t.Helper()
	res, err := n.b.Reconcile(context.Background(), d)
	if err != nil {
		c.t.Fatalf("%s: reconcile: %v", n.name, err)
	}
	return res
}

// up sets up and fully reconciles every node.
func (c *cluster) up() {
	c.t.Helper()
	for _, n := range c.nodes {
		c.setup(n)
	}
	for _, n := range c.nodes {
		c.reconcile(n, c.desired(n, true))
	}
}

// reach checks UDP echo from src's pod (or node, when fromNode) to every
// address in dsts.
func reach(t *testing.T, from *netnstest.NS, dsts ...netip.Addr) {
	t.Helper()
	for _, d := range dsts {
		if err := netnstest.UDPRoundTrip(from, netip.AddrPortFrom(d, echoPort), 5*time.Second); err != nil {
			t.Errorf("%s → %s: %v", from.Name, d, err)
		}
	}
}

func unreachable(t *testing.T, from *netnstest.NS, dsts ...netip.Addr) {
	t.Helper()
	for _, d := range dsts {
		if err := netnstest.UDPRoundTrip(from, netip.AddrPortFrom(d, echoPort), 300*time.Millisecond); err == nil {
			t.Errorf("%s → %s: reachable, want unreachable", from.Name, d)
		}
	}
}

// kstate is a node's kernel state as sorted strings.
type kstate struct {
	Neighs, FDB, Routes, Addrs []string
}

func (c *cluster) state(n *tnode) kstate {
	c.t.Helper()
	h := n.ns.Netlink(c.t)
	l, err := h.LinkByName(n.b.Device())
	if err != nil {
		c.t.Fatalf("%s: %v", n.name, err)
	}
	idx := l.Attrs().Index
	var s kstate
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		ns, err := backend.NeighList(h, idx, fam)
		if err != nil {
			c.t.Fatal(err)
		}
		for _, e := range ns {
			if e.State&netlink.NUD_PERMANENT != 0 {
				s.Neighs = append(s.Neighs, fmt.Sprintf("%s %s", e.IP, e.HardwareAddr))
			}
		}
	}
	fdb, err := backend.NeighList(h, idx, unix.AF_BRIDGE)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, e := range fdb {
		s.FDB = append(s.FDB, fmt.Sprintf("%s dst %s perm=%t", e.HardwareAddr, e.IP, e.State&netlink.NUD_PERMANENT != 0))
	}
	routes, err := backend.ListOwnRoutes(h)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, r := range routes {
		dev := "?"
		if dl, err := h.LinkByIndex(r.LinkIndex); err == nil {
			dev = dl.Attrs().Name
		}
		s.Routes = append(s.Routes, fmt.Sprintf("%s via %s dev %s onlink=%t", r.Dst, r.Gw, dev, r.Flags&int(netlink.FLAG_ONLINK) != 0))
	}
	addrs, err := backend.AddrList(h, l, netlink.FAMILY_ALL)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, a := range addrs {
		s.Addrs = append(s.Addrs, a.IPNet.String())
	}
	for _, l := range [][]string{s.Neighs, s.FDB, s.Routes, s.Addrs} {
		sort.Strings(l)
	}
	return s
}

// wantState is the kernel state node n should have with the given peers
// all reached through the tunnel.
func wantState(n *tnode, peers ...*tnode) kstate {
	var s kstate
	dev := fmt.Sprintf("weft.%d", subnet.DefaultVNI)
	for _, p := range peers {
		mac := p.attrs.Data.VTEPMAC
		s.Neighs = append(s.Neighs, fmt.Sprintf("%s %s", p.subnet.Addr(), mac), fmt.Sprintf("%s %s", p.subnet6.Addr(), mac))
		s.FDB = append(s.FDB, fmt.Sprintf("%s dst %s perm=true", mac, p.tunnelIP()))
		s.Routes = append(s.Routes,
			fmt.Sprintf("%s via %s dev %s onlink=true", p.subnet, p.subnet.Addr(), dev),
			fmt.Sprintf("%s via %s dev %s onlink=true", p.subnet6, p.subnet6.Addr(), dev))
	}
	s.Addrs = []string{n.subnet.Addr().String() + "/32", n.subnet6.Addr().String() + "/128"}
	for _, l := range [][]string{s.Neighs, s.FDB, s.Routes, s.Addrs} {
		sort.Strings(l)
	}
	return s
}
