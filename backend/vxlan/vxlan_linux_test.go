// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package vxlan

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/e2e/netnstest"
)

// TestReachability: three nodes on one segment, pods all-to-all over IPv4
// and IPv6, node → remote pod, the exact kernel state, and an idempotent
// second reconcile.
func TestReachability(t *testing.T) {
	c := newCluster(t, clusterOpts{nodes: 3})
	c.up()
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]

	t.Run("attrs", func(t *testing.T) {
		for _, n := range c.nodes {
			if n.attrs.MTU != 1450 {
				t.Errorf("%s: MTU %d, want 1450 (1500 - 50)", n.name, n.attrs.MTU)
			}
			mac, err := net.ParseMAC(n.attrs.Data.VTEPMAC)
			if err != nil || mac[0]&2 == 0 || mac[0]&1 != 0 {
				t.Errorf("%s: VTEP MAC %q is not a locally administered unicast MAC", n.name, n.attrs.Data.VTEPMAC)
			}
		}
	})
	t.Run("kernel state", func(t *testing.T) {
		if diff := cmp.Diff(wantState(n1, n2, n3), c.state(n1)); diff != "" {
			t.Errorf("node1 state (-want +got):\n%s", diff)
		}
		h := n1.ns.Netlink(t)
		l, err := h.LinkByName("weft.1")
		if err != nil {
			t.Fatal(err)
		}
		vx := l.(*netlink.Vxlan)
		if vx.Learning || vx.VxlanId != 1 || vx.Port != 8472 || !vx.SrcAddr.Equal(n1.pub.AsSlice()) || vx.MTU != 1450 {
			t.Errorf("device: learning=%t vni=%d port=%d local=%s mtu=%d", vx.Learning, vx.VxlanId, vx.Port, vx.SrcAddr, vx.MTU)
		}
		if eth0, err := h.LinkByName("eth0"); err != nil || vx.VtepDevIndex != eth0.Attrs().Index {
			t.Errorf("device parent %d, want eth0 (%v)", vx.VtepDevIndex, err)
		}
		// No link-local address: autoconf is off.
		addrs, err := backend.AddrList(h, l, netlink.FAMILY_V6)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			if a.IP.IsLinkLocalUnicast() {
				t.Errorf("device has link-local address %s", a.IPNet)
			}
		}
	})
	t.Run("pods all-to-all", func(t *testing.T) {
		for _, src := range c.nodes {
			for _, dst := range c.nodes {
				if src != dst {
					reach(t, src.pod, dst.podIP, dst.podIP6)
				}
			}
		}
	})
	t.Run("node to remote pod", func(t *testing.T) {
		reach(t, n1.ns, n2.podIP, n3.podIP, n2.podIP6, n3.podIP6)
	})
	t.Run("idempotent", func(t *testing.T) {
		for _, n := range c.nodes {
			if res := c.reconcile(n, c.desired(n, true)); res.Changed() || len(res.Problems) > 0 {
				t.Errorf("%s: second reconcile changed something: %+v", n.name, res)
			}
		}
	})
}

// TestIPv6Underlay: tunnels over the nodes' IPv6 addresses carry both pod
// families, with 70 bytes of overhead.
func TestIPv6Underlay(t *testing.T) {
	c := newCluster(t, clusterOpts{nodes: 2, v6Underlay: true})
	c.up()
	n1, n2 := c.nodes[0], c.nodes[1]
	if n1.attrs.MTU != 1430 {
		t.Errorf("MTU %d, want 1430 (1500 - 70)", n1.attrs.MTU)
	}
	if diff := cmp.Diff(wantState(n1, n2), c.state(n1)); diff != "" {
		t.Errorf("node1 state (-want +got):\n%s", diff)
	}
	reach(t, n1.pod, n2.podIP, n2.podIP6)
	reach(t, n2.pod, n1.podIP, n1.podIP6)
}

// TestUnderlayRecreated: when the underlay link is replaced (which takes
// the VXLAN device with it), the next reconcile rebuilds everything on the
// new link.
func TestUnderlayRecreated(t *testing.T) {
	c := newCluster(t, clusterOpts{nodes: 2})
	c.up()
	n1, n2 := c.nodes[0], c.nodes[1]
	h := n1.ns.Netlink(t)
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkDel(eth0); err != nil {
		t.Fatal(err)
	}
	netnstest.Attach(t, c.underlay, "seg0", n1.ns, "eth0", netip.PrefixFrom(n1.pub, 24), netip.PrefixFrom(n1.pub6, 64))
	c.reconcile(n1, c.desired(n1, true))
	if diff := cmp.Diff(wantState(n1, n2), c.state(n1)); diff != "" {
		t.Errorf("node1 state (-want +got):\n%s", diff)
	}
	reach(t, n1.pod, n2.podIP, n2.podIP6)
	reach(t, n2.pod, n1.podIP, n1.podIP6)
}

// watchEvents records netlink notifications about node n's VXLAN device,
// the neighbour and FDB entries on it and weft's routes, until
// the returned stop is called.
func watchEvents(t *testing.T, n *tnode) (stop func() []string) {
	t.Helper()
	h := n.ns.Netlink(t)
	l, err := h.LinkByName(n.b.Device())
	if err != nil {
		t.Fatal(err)
	}
	idx := l.Attrs().Index
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	neighs := make(chan netlink.NeighUpdate, 4096)
	routes := make(chan netlink.RouteUpdate, 4096)
	links := make(chan netlink.LinkUpdate, 4096)
	if err := netlink.NeighSubscribeAt(n.ns.Handle, neighs, done); err != nil {
		t.Fatal(err)
	}
	if err := netlink.RouteSubscribeAt(n.ns.Handle, routes, done); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSubscribeAt(n.ns.Handle, links, done); err != nil {
		t.Fatal(err)
	}
	// A fresh marker address per watch (10.255.x.y).
	markerIP := net.IPv4(10, 255, byte(rand.IntN(256)), byte(1+rand.IntN(254)))
	return func() []string {
		defer close(done)
		// Markers: once each marker's own notification arrives, every
		// earlier one on that socket has been delivered.
		if err := h.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: markerIP, Mask: net.CIDRMask(32, 32)}, LinkIndex: lo.Attrs().Index, Protocol: unix.RTPROT_STATIC}); err != nil {
			t.Fatal(err)
		}
		if err := h.NeighSet(&netlink.Neigh{LinkIndex: eth0.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: markerIP, HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 0xfe}}); err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetAlias(lo, "marker"+netnstest.Suffix(4)); err != nil {
			t.Fatal(err)
		}
		var got []string
		seen := 0
		timeout := time.After(10 * time.Second)
		for seen < 3 {
			select {
			case u := <-neighs:
				switch {
				case u.LinkIndex == eth0.Attrs().Index && u.IP.Equal(markerIP):
					seen++
				case u.LinkIndex == idx:
					got = append(got, fmt.Sprintf("neigh(%d) %s %s", u.Type, u.IP, u.HardwareAddr))
				}
			case u := <-routes:
				switch {
				case u.Dst != nil && u.Dst.IP.Equal(markerIP):
					seen++
				case u.Protocol == backend.RouteProtocol:
					got = append(got, fmt.Sprintf("route(%d) %s", u.Type, u.Dst))
				}
			case u := <-links:
				switch {
				case int(u.Index) == lo.Attrs().Index:
					seen++
				case int(u.Index) == idx:
					got = append(got, fmt.Sprintf("link(%d) %s", u.Header.Type, u.Attrs().Name))
				}
			case <-timeout:
				t.Fatalf("marker notifications did not arrive (%d of 3)", seen)
			}
		}
		return got
	}
}

// TestAdopt: a second weftd (new Backend) adopts the device: same ifindex,
// same MAC, no kernel change at all (no notifications), and traffic keeps
// flowing.
func TestAdopt(t *testing.T) {
	c := newCluster(t, clusterOpts{nodes: 2})
	c.up()
	n1, n2 := c.nodes[0], c.nodes[1]
	before := c.state(n1)
	idx := linkIndex(t, n1)
	mac := n1.attrs.Data.VTEPMAC

	stop := watchEvents(t, n1)
	flow := startFlow(t, n1.pod, netip.AddrPortFrom(n2.podIP, echoPort))
	b, attrs, err := setupIn(n1.ns, c.config(n1))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	n1.b.Close()
	n1.b = b
	res := c.reconcile(n1, c.desired(n1, true))
	// Let notifications of anything we did arrive.
	reach(t, n1.pod, n2.podIP)
	events := stop()
	sent, lost := flow()
	if lost > 0 {
		t.Errorf("%d of %d datagrams lost during adopt", lost, sent)
	}

	if res.Changed() {
		t.Errorf("reconcile after adopt changed %+v", res)
	}
	if len(events) > 0 {
		t.Errorf("adopt + reconcile touched the kernel: %v", events)
	}
	if got := linkIndex(t, n1); got != idx {
		t.Errorf("ifindex %d after adopt, want %d (device re-created)", got, idx)
	}
	if attrs.Data.VTEPMAC != mac || attrs.MTU != n1.attrs.MTU {
		t.Errorf("attrs after adopt %+v, want MAC %s MTU %d", attrs, mac, n1.attrs.MTU)
	}
	if diff := cmp.Diff(before, c.state(n1)); diff != "" {
		t.Errorf("state changed (-before +after):\n%s", diff)
	}
	reach(t, n1.pod, n2.podIP, n2.podIP6)
	reach(t, n2.pod, n1.podIP, n1.podIP6)

	// The watcher does see changes: a departed peer's entries going.
	t.Run("watcher sees changes", func(t *testing.T) {
		stop := watchEvents(t, n1)
		c.reconcile(n1, c.desired(n1, true, n2))
		if got := stop(); len(got) < 5 {
			t.Errorf("notifications %v, want at least 5 (2 routes, 2 neighbours, 1 FDB entry)", got)
		}
	})
}

// startFlow sends UDP datagrams from ns to dst back to back (each waits
// for its echo, up to 500 ms) until the returned stop is called, and then
// reports how many were sent and how many got no echo. It sends at least
// 50.
func startFlow(t *testing.T, ns *netnstest.NS, dst netip.AddrPort) (stop func() (sent, lost int)) {
	t.Helper()
	var conn *net.UDPConn
	if err := ns.Do(func() (err error) {
		conn, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	quit := make(chan struct{})
	type counts struct{ sent, lost int }
	result := make(chan counts, 1)
	go func() {
		defer conn.Close()
		var c counts
		buf := make([]byte, 64)
		for seq := 0; ; seq++ {
			select {
			case <-quit:
				if c.sent >= 50 {
					result <- c
					return
				}
			default:
			}
			msg := fmt.Appendf(nil, "seq %d", seq)
			c.sent++
			conn.Write(msg)
			conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			for {
				n, err := conn.Read(buf)
				if err != nil {
					c.lost++
					break
				}
				if bytes.Equal(buf[:n], msg) {
					break
				}
			}
		}
	}()
	return func() (int, int) {
		close(quit)
		r := <-result
		return r.sent, r.lost
	}
}

func linkIndex(t *testing.T, n *tnode) int {
	t.Helper()
	l, err := n.ns.Netlink(t).LinkByName(n.b.Device())
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Index
}

// TestMACStable: the VTEP MAC survives the device's deletion (a reboot)
// because it is persisted, and a fresh state dir adopts the device's.
func TestMACStable(t *testing.T) {
	c := newCluster(t, clusterOpts{nodes: 2})
	c.up()
	n1, n2 := c.nodes[0], c.nodes[1]
	mac := n1.attrs.Data.VTEPMAC
	if data, err := os.ReadFile(macFile(n1.stateDir, "weft.1")); err != nil || strings.TrimSpace(string(data)) != mac {
		t.Fatalf("persisted MAC %q (%v), want %s", data, err, mac)
	}
	h := n1.ns.Netlink(t)
	l, err := h.LinkByName("weft.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkDel(l); err != nil {
		t.Fatal(err)
	}
	c.setup(n1)
	if n1.attrs.Data.VTEPMAC != mac {
		t.Fatalf("MAC after re-creation %s, want %s", n1.attrs.Data.VTEPMAC, mac)
	}
	l, err = h.LinkByName("weft.1")
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().HardwareAddr.String() != mac {
		t.Fatalf("device MAC %s, want %s", l.Attrs().HardwareAddr, mac)
	}
	c.reconcile(n1, c.desired(n1, true))
	// Node 2 was never told anything: its FDB entry still works.
	reach(t, n2.pod, n1.podIP, n1.podIP6)

	t.Run("lost state dir adopts device MAC", func(t *testing.T) {
		n1.stateDir = t.TempDir()
		c.setup(n1)
		if n1.attrs.Data.VTEPMAC != mac {
			t.Fatalf("MAC %s, want the device's %s", n1.attrs.Data.VTEPMAC, mac)
		}
		if data, err := os.ReadFile(macFile(n1.stateDir, "weft.1")); err != nil || strings.TrimSpace(string(data)) != mac {
			t.Fatalf("persisted MAC %q (%v), want %s", data, err, mac)
		}
	})
}

// TestRecreateIncompatible: a device with our name but the wrong settings
// is replaced, with the reason logged; the MAC on record is kept.
func TestRecreateIncompatible(t *testing.T) {
	tests := []struct {
		name   string
		dev    func(parent int) netlink.Link
		reason string
	}{
		{"wrong VNI", func(p int) netlink.Link {
			return &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "weft.1"}, VxlanId: 2, Port: 8472, VtepDevIndex: p, SrcAddr: net.ParseIP("198.18.0.1")}
		}, "VNI is 2, want 1"},
		{"wrong port", func(p int) netlink.Link {
			return &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "weft.1"}, VxlanId: 1, Port: 4789, VtepDevIndex: p, SrcAddr: net.ParseIP("198.18.0.1")}
		}, "UDP port is 4789, want 8472"},
		{"learning on", func(p int) netlink.Link {
			return &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "weft.1"}, VxlanId: 1, Port: 8472, VtepDevIndex: p, SrcAddr: net.ParseIP("198.18.0.1"), Learning: true}
		}, "learning is on, want off"},
		{"wrong local", func(p int) netlink.Link {
			return &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "weft.1"}, VxlanId: 1, Port: 8472, VtepDevIndex: p, SrcAddr: net.ParseIP("198.18.0.99")}
		}, "local address is 198.18.0.99, want 198.18.0.1"},
		{"not vxlan", func(int) netlink.Link {
			return &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "weft.1"}, PeerName: "weft-x"}
		}, "is of type veth, not vxlan"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			netnstest.SkipUnlessRoot(t)
			ns := netnstest.NewNS(t, "wvi")
			h := ns.Netlink(t)
			if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "eth1"}); err != nil {
				t.Fatal(err)
			}
			eth0 := netnstest.SetupLink(t, ns, "eth0", pfx("198.18.0.1/24"))
			if err := h.LinkAdd(tt.dev(eth0.Attrs().Index)); err != nil {
				t.Fatal(err)
			}
			old, err := h.LinkByName("weft.1")
			if err != nil {
				t.Fatal(err)
			}
			stateDir := t.TempDir()
			mac := randomMAC()
			if err := saveMAC(stateDir, "weft.1", mac); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			log := logrus.New()
			log.Out = &logs
			b, attrs, err := setupIn(ns, Config{PublicIP: netip.MustParseAddr("198.18.0.1"), Iface: "eth0", StateDir: stateDir, Log: log})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			l, err := h.LinkByName("weft.1")
			if err != nil {
				t.Fatal(err)
			}
			if l.Attrs().Index == old.Attrs().Index {
				t.Errorf("device not re-created (ifindex %d)", l.Attrs().Index)
			}
			if r := incompatibility(l, b.spec); r != "" {
				t.Errorf("re-created device still incompatible: %s", r)
			}
			if attrs.Data.VTEPMAC != mac.String() || l.Attrs().HardwareAddr.String() != mac.String() {
				t.Errorf("MAC %s (device %s), want the recorded %s", attrs.Data.VTEPMAC, l.Attrs().HardwareAddr, mac)
			}
			if !strings.Contains(logs.String(), "re-creating incompatible vxlan device") || !strings.Contains(logs.String(), tt.reason) {
				t.Errorf("log does not say why (%q):\n%s", tt.reason, logs.String())
			}
		})
	}
}

// TestStaleOnlyWhenComplete: entries of a departed peer stay while the view
// is incomplete and go (route, FDB, neighbour) once it is complete.
func TestStaleOnlyWhenComplete(t *testing.T) {
	c := newCluster(t, clusterOpts{nodes: 3})
	c.up()
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	full := c.state(n1)

	res := c.reconcile(n1, c.desired(n1, false, n3))
	if res.Changed() {
		t.Errorf("incomplete reconcile changed %+v", res)
	}
	if diff := cmp.Diff(full, c.state(n1)); diff != "" {
		t.Errorf("incomplete reconcile removed entries (-want +got):\n%s", diff)
	}

	res = c.reconcile(n1, c.desired(n1, true, n3))
	// Two routes, two neighbours, one FDB entry.
	if res.Removed != 5 || res.Added != 0 || res.Updated != 0 {
		t.Errorf("complete reconcile: %+v, want 5 removed", res)
	}
	if diff := cmp.Diff(wantState(n1, n2), c.state(n1)); diff != "" {
		t.Errorf("after departure (-want +got):\n%s", diff)
	}
	unreachable(t, n1.pod, n3.podIP)
	reach(t, n1.pod, n2.podIP, n2.podIP6)
}

// TestDriftRepaired: entries deleted or changed by hand are restored by the
// next reconcile, counting only what it fixed.
func TestDriftRepaired(t *testing.T) {
	c := newCluster(t, clusterOpts{nodes: 2})
	c.up()
	n1, n2 := c.nodes[0], c.nodes[1]
	want := c.state(n1)
	h := n1.ns.Netlink(t)
	idx := linkIndex(t, n1)
	mac, _ := net.ParseMAC(n2.attrs.Data.VTEPMAC)

	// ip neigh del, bridge fdb del, ip route del, and a wrong neighbour.
	if err := h.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, IP: n2.subnet.Addr().AsSlice()}); err != nil {
		t.Fatal(err)
	}
	if err := h.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, IP: n2.pub.AsSlice(), HardwareAddr: mac}); err != nil {
		t.Fatal(err)
	}
	if err := h.RouteDel(&netlink.Route{Dst: netnstest.IPNet(n2.subnet), Protocol: backend.RouteProtocol}); err != nil {
		t.Fatal(err)
	}
	if err := h.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V6, State: netlink.NUD_PERMANENT, IP: n2.subnet6.Addr().AsSlice(), HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	unreachable(t, n1.pod, n2.podIP)

	res := c.reconcile(n1, c.desired(n1, true))
	if res.Added != 3 || res.Updated != 1 || res.Removed != 0 {
		t.Errorf("repair: %+v, want 3 added, 1 updated", res)
	}
	if diff := cmp.Diff(want, c.state(n1)); diff != "" {
		t.Errorf("after repair (-want +got):\n%s", diff)
	}
	reach(t, n1.pod, n2.podIP, n2.podIP6)

	t.Run("device deleted", func(t *testing.T) {
		l, err := h.LinkByName("weft.1")
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkDel(l); err != nil {
			t.Fatal(err)
		}
		c.reconcile(n1, c.desired(n1, true))
		if diff := cmp.Diff(want, c.state(n1)); diff != "" {
			t.Errorf("after device re-creation (-want +got):\n%s", diff)
		}
		reach(t, n1.pod, n2.podIP, n2.podIP6)
		reach(t, n2.pod, n1.podIP, n1.podIP6)
	})
}

// TestPeerChanges: a peer's new public IP or new VTEP MAC is updated in
// place.
func TestPeerChanges(t *testing.T) {
	c := newCluster(t, clusterOpts{nodes: 2})
	c.up()
	n1, n2 := c.nodes[0], c.nodes[1]

	// Node 2 moves to a new underlay address.
	h2 := n2.ns.Netlink(t)
	eth0, err := h2.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h2.AddrAdd(eth0, &netlink.Addr{IPNet: netnstest.IPNet(pfx("198.18.0.12/24"))}); err != nil {
		t.Fatal(err)
	}
	n2.pub = netip.MustParseAddr("198.18.0.12")
	l, _ := h2.LinkByName("weft.1")
	h2.LinkDel(l)
	n2.stateDir = t.TempDir() // and gets a new MAC
	c.setup(n2)
	c.reconcile(n2, c.desired(n2, true))

	res := c.reconcile(n1, c.desired(n1, false))
	// Two neighbours updated, one FDB entry added (the new MAC); the old
	// MAC's entry stays while incomplete.
	if res.Updated != 2 || res.Added != 1 || res.Removed != 0 {
		t.Errorf("incomplete: %+v, want 2 updated, 1 added", res)
	}
	reach(t, n1.pod, n2.podIP, n2.podIP6)
	res = c.reconcile(n1, c.desired(n1, true))
	if res.Removed != 1 || res.Added+res.Updated != 0 {
		t.Errorf("complete: %+v, want the old FDB entry removed", res)
	}
	if diff := cmp.Diff(wantState(n1, n2), c.state(n1)); diff != "" {
		t.Errorf("state (-want +got):\n%s", diff)
	}
}

// TestDirectRouting: nodes 1 and 2 share a segment and route directly;
// node 3 is behind a router and stays on VXLAN.
func TestDirectRouting(t *testing.T) {
	c := newCluster(t, clusterOpts{nodes: 3, behindRouter: true, directRouting: true})
	c.up()
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	s := c.state(n1)
	want := []string{
		"10.244.2.0/24 via 198.18.0.2 dev eth0 onlink=false",
		"10.244.3.0/24 via 10.244.3.0 dev weft.1 onlink=true",
		"fd10:244:0:2::/64 via 2001:2::2 dev eth0 onlink=false",
		"fd10:244:0:3::/64 via fd10:244:0:3:: dev weft.1 onlink=true",
	}
	if diff := cmp.Diff(want, s.Routes); diff != "" {
		t.Errorf("node1 routes (-want +got):\n%s", diff)
	}
	if len(s.FDB) != 1 || !strings.Contains(s.FDB[0], n3.pub.String()) {
		t.Errorf("node1 FDB %v, want only node3", s.FDB)
	}
	for _, src := range c.nodes {
		for _, dst := range c.nodes {
			if src != dst {
				reach(t, src.pod, dst.podIP, dst.podIP6)
			}
		}
	}
	if s := c.state(n2); len(s.FDB) != 1 || len(s.Neighs) != 2 {
		t.Errorf("node2 FDB %v neighbours %v, want node3's only", s.FDB, s.Neighs)
	}
}

// TestForeignEntriesSurvive: routes of other protocols, and neighbours on
// other devices, are never deleted.
func TestForeignEntriesSurvive(t *testing.T) {
	c := newCluster(t, clusterOpts{nodes: 2})
	c.up()
	n1 := c.nodes[0]
	h := n1.ns.Netlink(t)
	netnstest.AddRoute(t, n1.ns, pfx("10.244.77.0/24"), netip.MustParseAddr("198.18.0.77"), "eth0")
	eth0, _ := h.LinkByName("eth0")
	if err := h.NeighSet(&netlink.Neigh{LinkIndex: eth0.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: net.ParseIP("198.18.0.77"), HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 0x77}}); err != nil {
		t.Fatal(err)
	}
	res := c.reconcile(n1, backend.Desired{Local: backend.Local{Subnet: n1.subnet, IPv6Subnet: n1.subnet6}, Complete: true})
	if res.Removed != 5 {
		t.Errorf("removed %d, want 5 (node2's entries)", res.Removed)
	}
	rs, err := backend.RouteList(h, nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range rs {
		if r.Dst != nil && r.Dst.String() == "10.244.77.0/24" {
			found = true
		}
	}
	if !found {
		t.Error("foreign route 10.244.77.0/24 was deleted")
	}
	ns, err := backend.NeighList(h, eth0.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	found = false
	for _, n := range ns {
		if n.IP.Equal(net.ParseIP("198.18.0.77")) {
			found = true
		}
	}
	if !found {
		t.Error("neighbour on eth0 was deleted")
	}
}

// TestProblems: peers the backend cannot serve are reported, not dropped
// silently, and the others are served.
func TestProblemsReported(t *testing.T) {
	c := newCluster(t, clusterOpts{nodes: 2})
	c.up()
	n1, n2 := c.nodes[0], c.nodes[1]
	d := c.desired(n1, true)
	d.Peers = append(d.Peers,
		backend.Peer{Name: "nomac", Subnet: pfx("10.244.9.0/24"), PublicIP: netip.MustParseAddr("198.18.0.9")},
		// An older claim (node2, epoch 0) wins over a newer overlapping one.
		backend.Peer{Name: "aaa-clash", Epoch: 5, Subnet: pfx("10.244.2.0/25"), PublicIP: netip.MustParseAddr("198.18.0.10"), Data: n1.attrs.Data},
	)
	res := c.reconcile(n1, d)
	if len(res.Problems) != 2 || !strings.Contains(res.Problems["nomac"], "no VTEP MAC") || !strings.Contains(res.Problems["aaa-clash"], "overlaps 10.244.2.0/24 of node2") {
		t.Errorf("problems %v", res.Problems)
	}
	if res.Changed() {
		t.Errorf("changed %+v", res)
	}
	reach(t, n1.pod, n2.podIP)
}

// TestUpdate: Update applies a peer's removal, addition and change (a new
// underlay address and VTEP MAC) to exactly the kernel state Reconcile
// would build, touching no other peer's entries: drift elsewhere stays
// until the next Reconcile repairs it.
func TestUpdate(t *testing.T) {
	c := newCluster(t, clusterOpts{nodes: 3})
	c.up()
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	update := func(changes ...backend.Change) backend.Result {
		t.Helper()
		res, err := n1.b.Update(context.Background(), changes)
		if err != nil {
			t.Fatalf("update: %v", err)
		}
		return res
	}
	ptr := func(p backend.Peer) *backend.Peer { return &p }

	p3 := c.peer(n3)
	if res := update(backend.Change{Old: &p3}); res.Removed != 5 || res.Added+res.Updated != 0 {
		t.Errorf("remove: %+v, want 5 removed (2 routes, 2 neighbours, 1 FDB entry)", res)
	}
	if diff := cmp.Diff(wantState(n1, n2), c.state(n1)); diff != "" {
		t.Errorf("after removing node3 (-want +got):\n%s", diff)
	}
	unreachable(t, n1.pod, n3.podIP)
	if res := update(backend.Change{New: &p3}); res.Added != 5 || res.Updated+res.Removed != 0 {
		t.Errorf("add: %+v, want 5 added", res)
	}
	if diff := cmp.Diff(wantState(n1, n2, n3), c.state(n1)); diff != "" {
		t.Errorf("after adding node3 (-want +got):\n%s", diff)
	}
	reach(t, n1.pod, n3.podIP, n3.podIP6)

	// Node 2 moves to a new underlay address with a new VTEP MAC.
	old2 := c.peer(n2)
	h2 := n2.ns.Netlink(t)
	eth0, err := h2.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h2.AddrAdd(eth0, &netlink.Addr{IPNet: netnstest.IPNet(pfx("198.18.0.12/24"))}); err != nil {
		t.Fatal(err)
	}
	n2.pub = netip.MustParseAddr("198.18.0.12")
	if l, err := h2.LinkByName("weft.1"); err == nil {
		h2.LinkDel(l)
	}
	n2.stateDir = t.TempDir()
	c.setup(n2)
	c.reconcile(n2, c.desired(n2, true))
	// Two neighbours updated to the new MAC, its FDB entry added, the old
	// MAC's removed; routes unchanged.
	if res := update(backend.Change{Old: &old2, New: ptr(c.peer(n2))}); res.Updated != 2 || res.Added != 1 || res.Removed != 1 {
		t.Errorf("change: %+v, want 2 updated, 1 added, 1 removed", res)
	}
	if diff := cmp.Diff(wantState(n1, n2, n3), c.state(n1)); diff != "" {
		t.Errorf("after node2 moved (-want +got):\n%s", diff)
	}
	reach(t, n1.pod, n2.podIP, n2.podIP6)

	// Drift on node3's entries: an update of node2 leaves it alone, the
	// next Reconcile repairs it.
	h1 := n1.ns.Netlink(t)
	if err := h1.RouteDel(&netlink.Route{Dst: netnstest.IPNet(n3.subnet), Protocol: backend.RouteProtocol}); err != nil {
		t.Fatal(err)
	}
	same2 := c.peer(n2)
	bumped := same2
	bumped.Version++
	if res := update(backend.Change{Old: &same2, New: &bumped}); res.Changed() {
		t.Errorf("a version-only change changed the kernel: %+v", res)
	}
	if got := c.state(n1); len(got.Routes) != 3 {
		t.Errorf("update touched node3's entries: routes %v", got.Routes)
	}
	if res := c.reconcile(n1, c.desired(n1, true)); res.Added != 1 || res.Updated+res.Removed != 0 {
		t.Errorf("resync after drift: %+v, want 1 added", res)
	}
	if diff := cmp.Diff(wantState(n1, n2, n3), c.state(n1)); diff != "" {
		t.Errorf("after resync (-want +got):\n%s", diff)
	}

	// Update before any successful Reconcile is refused.
	fresh := newCluster(t, clusterOpts{nodes: 1})
	fresh.setup(fresh.nodes[0])
	if _, err := fresh.nodes[0].b.Update(context.Background(), []backend.Change{{New: &p3}}); err == nil {
		t.Error("Update before Reconcile succeeded")
	}
}
