// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package netnstest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A small topology kit for backend tests:
//
//	underlay netns: bridge(s) ── veth ── node netns (eth0, 198.18.x.y)
//	                                       └─ veth ── pod netns (eth0, 10.244.n.2)
//
// Every piece lives in namespaces made by NewNS, so it all goes away at
// cleanup.

// IPNet converts p to the net.IPNet netlink wants, keeping the host bits
// (10.244.1.1/24 stays 10.244.1.1 with a /24 mask).
func IPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// AddBridge creates an up bridge named name in ns.
func AddBridge(t testing.TB, ns *NS, name string) {
	t.Helper()
	h := ns.Netlink(t)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := h.LinkAdd(br); err != nil {
		t.Fatalf("add bridge %s in %s: %v", name, ns.Name, err)
	}
	if err := h.LinkSetUp(br); err != nil {
		t.Fatalf("set bridge %s up: %v", name, err)
	}
}

// Attach joins ns to bridge in underlay with a veth pair: the end in ns is
// named ifname, carries addrs (IPv6 without DAD) and is up. It returns that
// end.
func Attach(t testing.TB, underlay *NS, bridge string, ns *NS, ifname string, addrs ...netip.Prefix) netlink.Link {
	t.Helper()
	uh := underlay.Netlink(t)
	br, err := uh.LinkByName(bridge)
	if err != nil {
		t.Fatalf("find bridge %s: %v", bridge, err)
	}
	outer := "v" + Suffix(8)
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: outer, MasterIndex: br.Attrs().Index},
		PeerName:      ifname,
		PeerNamespace: netlink.NsFd(ns.Handle),
	}
	if err := uh.LinkAdd(veth); err != nil {
		t.Fatalf("add veth %s/%s: %v", outer, ifname, err)
	}
	if err := uh.LinkSetUp(veth); err != nil {
		t.Fatalf("set %s up: %v", outer, err)
	}
	return SetupLink(t, ns, ifname, addrs...)
}

// SetupLink puts addrs on the link ifname in ns and sets it up.
func SetupLink(t testing.TB, ns *NS, ifname string, addrs ...netip.Prefix) netlink.Link {
	t.Helper()
	h := ns.Netlink(t)
	l, err := h.LinkByName(ifname)
	if err != nil {
		t.Fatalf("find %s in %s: %v", ifname, ns.Name, err)
	}
	for _, a := range addrs {
		if err := h.AddrAdd(l, &netlink.Addr{IPNet: IPNet(a), Flags: unix.IFA_F_NODAD}); err != nil {
			t.Fatalf("add %s to %s in %s: %v", a, ifname, ns.Name, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatalf("set %s up in %s: %v", ifname, ns.Name, err)
	}
	return l
}

// AddPod creates a pod namespace joined to node by a veth pair: the node
// end, named hostIf, carries the gateway addresses gws (10.244.1.1/24);
// the pod end, eth0, carries addrs and default routes via the gateways.
func AddPod(t testing.TB, node *NS, prefix, hostIf string, gws, addrs []netip.Prefix) *NS {
	t.Helper()
	pod := NewNS(t, prefix)
	nh := node.Netlink(t)
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: hostIf},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(pod.Handle),
	}
	if err := nh.LinkAdd(veth); err != nil {
		t.Fatalf("add pod veth %s: %v", hostIf, err)
	}
	SetupLink(t, node, hostIf, gws...)
	SetupLink(t, pod, "eth0", addrs...)
	for _, gw := range gws {
		AddRoute(t, pod, netip.Prefix{}, gw.Addr(), "eth0")
	}
	return pod
}

// AddRoute adds a route to dst (zero: the default route of gw's family)
// via gw (zero: none) out of dev (empty: the kernel picks) in ns, with the
// static protocol.
func AddRoute(t testing.TB, ns *NS, dst netip.Prefix, gw netip.Addr, dev string) {
	t.Helper()
	h := ns.Netlink(t)
	if !dst.IsValid() {
		dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if gw.Is6() {
			dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
	}
	r := &netlink.Route{Dst: IPNet(dst.Masked()), Protocol: unix.RTPROT_STATIC}
	if gw.IsValid() {
		r.Gw = gw.AsSlice()
	}
	if dev != "" {
		l, err := h.LinkByName(dev)
		if err != nil {
			t.Fatalf("find %s: %v", dev, err)
		}
		r.LinkIndex = l.Attrs().Index
	}
	if err := h.RouteAdd(r); err != nil {
		t.Fatalf("add route %s via %s dev %q in %s: %v", dst, gw, dev, ns.Name, err)
	}
}

// EnableForwarding turns on IPv4 and IPv6 forwarding in ns (and only
// there: the sysctls are written from a thread inside ns).
func EnableForwarding(t testing.TB, ns *NS) {
	t.Helper()
	err := ns.Do(func() error {
		for _, p := range []string{"ipv4/ip_forward", "ipv6/conf/all/forwarding"} {
			if err := os.WriteFile(filepath.Join("/proc/sys/net", p), []byte("1\n"), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("enable forwarding in %s: %v", ns.Name, err)
	}
}

// UDPEcho serves UDP echo on addr inside ns until the test ends.
func UDPEcho(t testing.TB, ns *NS, addr netip.AddrPort) {
	t.Helper()
	var c *net.UDPConn
	err := ns.Do(func() (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		t.Fatalf("listen udp %s in %s: %v", addr, ns.Name, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			c.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
}

// UDPRoundTrip sends datagrams from ns to dst until one echo comes back or
// timeout passes (one try every 100 ms). It reports the last error.
func UDPRoundTrip(ns *NS, dst netip.AddrPort, timeout time.Duration) error {
	var c *net.UDPConn
	err := ns.Do(func() (err error) {
		c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
		return err
	})
	if err != nil {
		return fmt.Errorf("dial %s from %s: %w", dst, ns.Name, err)
	}
	defer c.Close()
	deadline := time.Now().Add(timeout)
	msg := []byte("weft " + Suffix(8))
	buf := make([]byte, 2048)
	var last error = errors.New("no reply")
	for {
		slot := time.Now()
		if _, err := c.Write(msg); err != nil {
			last = err
		}
		c.SetReadDeadline(slot.Add(100 * time.Millisecond))
		n, err := c.Read(buf)
		if err == nil && string(buf[:n]) == string(msg) {
			return nil
		}
		if err != nil {
			last = err
		}
		if !time.Now().Before(deadline) {
			break
		}
		// A failed write or read (ECONNREFUSED, unreachable) returns at
		// once: pace the tries at one per 100 ms.
		time.Sleep(time.Until(slot.Add(100 * time.Millisecond)))
	}
	return fmt.Errorf("udp %s from %s: no echo within %s: %w", dst, ns.Name, timeout, last)
}
