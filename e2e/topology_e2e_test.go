// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e && linux

package e2e_test

import (
	"context"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/e2etest"
)

// TestTopology checks the harness itself, without weftd: underlay,
// outside host, router, etcd, harness-attached pods, the traffic helpers
// and the capture, and that Close leaves nothing behind.
func TestTopology(t *testing.T) {
	c := e2etest.NewCluster(t, e2e.Options{Nodes: 3, PodsPerNode: 2, NoDaemons: true, DualStack: true, Segments: []int{0, 0, 1}})
	nodes := c.Nodes()

	t.Run("underlay", func(t *testing.T) {
		for _, a := range nodes {
			for _, b := range nodes {
				if a == b {
					continue
				}
				if _, err := e2e.Ping(a.NS, b.IP, 3*time.Second); err != nil {
					t.Errorf("%s → %s: %v", a.Name, b.Name, err)
				}
				if a.Segment == b.Segment {
					if _, err := e2e.Ping(a.NS, b.IPv6, 3*time.Second); err != nil {
						t.Errorf("%s → %s over IPv6: %v", a.Name, b.Name, err)
					}
				}
			}
			if _, err := e2e.Ping(a.NS, e2e.OutsideIP, 3*time.Second); err != nil {
				t.Errorf("%s → outside: %v", a.Name, err)
			}
		}
	})

	t.Run("etcd", func(t *testing.T) {
		cli, err := c.Etcd.Client()
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := cli.Get(ctx, e2e.EtcdPrefix+"/config")
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != c.NetworkConfig() {
			t.Fatalf("config in etcd = %v, want %s", resp.Kvs, c.NetworkConfig())
		}
		// A node on the second segment reaches etcd through the router.
		srv := netip.AddrPortFrom(e2e.EtcdIP, e2e.EtcdClientPort)
		conn, err := nodes[2].NS.DialContext(ctx, "tcp", srv.String())
		if err != nil {
			t.Fatalf("node3 → etcd: %v", err)
		}
		conn.Close()
	})

	t.Run("pods", func(t *testing.T) {
		for _, n := range nodes {
			sf, err := n.SubnetFile()
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range n.Pods() {
				if !sf.Subnet.Contains(p.IP) || !sf.IPv6Subnet.Contains(p.IPv6) {
					t.Errorf("pod %s addresses %s %s outside %s %s", p.Name, p.IP, p.IPv6, sf.Subnet, sf.IPv6Subnet)
				}
				if _, err := e2e.Ping(p.NS, sf.Subnet.Addr(), 3*time.Second); err != nil {
					t.Errorf("pod %s → gateway: %v", p.Name, err)
				}
				if _, err := e2e.Ping(p.NS, sf.IPv6Subnet.Addr(), 3*time.Second); err != nil {
					t.Errorf("pod %s → IPv6 gateway: %v", p.Name, err)
				}
			}
		}
	})

	t.Run("tcp-udp-capture", func(t *testing.T) {
		a, b := nodes[0], nodes[1]
		cap, err := e2e.StartCapture(c.Underlay)
		if err != nil {
			t.Fatal(err)
		}
		tcp, err := e2e.ServeTCP(b.NS, netip.AddrPortFrom(b.IP, 0))
		if err != nil {
			t.Fatal(err)
		}
		defer tcp.Close()
		udp, err := e2e.ServeUDP(b.NS, netip.AddrPortFrom(b.IP, 0))
		if err != nil {
			t.Fatal(err)
		}
		defer udp.Close()
		if err := e2e.TCPEcho(a.NS, tcp.Addr, []byte("hello tcp"), 3*time.Second); err != nil {
			t.Error(err)
		}
		if err := e2e.UDPEcho(a.NS, udp.Addr, []byte("hello udp"), 3*time.Second); err != nil {
			t.Error(err)
		}
		if got := udp.Peers(); len(got) == 0 || got[0] != a.IP {
			t.Errorf("udp server saw %v, want %s", got, a.IP)
		}
		// Underlay MTU is 1500: exactly 1500 passes with DF, 1501 does not.
		if err := e2e.UDPEchoDF(a.NS, udp.Addr, 1500, 3*time.Second); err != nil {
			t.Errorf("DF 1500: %v", err)
		}
		if err := e2e.UDPEchoDF(a.NS, udp.Addr, 1501, 3*time.Second); !e2e.IsMsgSize(err) {
			t.Errorf("DF 1501: got %v, want EMSGSIZE", err)
		}
		pkts := cap.Stop()
		seen := false
		for _, p := range pkts {
			if p.Proto == 17 && p.Src == a.IP && p.Dst == b.IP && string(p.Payload) == "hello udp" {
				seen = true
			}
		}
		if !seen {
			t.Errorf("capture of %d packets does not show the UDP datagram", len(pkts))
			for _, p := range pkts {
				t.Logf("  %s %q", p, p.Payload)
			}
		}
	})

	t.Run("stream", func(t *testing.T) {
		s, err := e2e.StartStream(nodes[0].NS, nodes[1].IP, 10*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond) // the stream's duration, not a wait for a condition
		r := s.Stop()
		if r.Sent < 10 || r.Lost() != 0 {
			t.Errorf("stream: %s", r)
		}
	})

	t.Run("change-ip", func(t *testing.T) {
		n := nodes[0]
		newIP := netip.MustParseAddr("198.18.0.61")
		if err := n.ChangeIP(newIP); err != nil {
			t.Fatal(err)
		}
		if n.IP != newIP || n.HTTPAddr != "198.18.0.61:9950" {
			t.Errorf("after ChangeIP: IP %s, HTTPAddr %s", n.IP, n.HTTPAddr)
		}
		// The state (what weft-lab status reads) follows.
		if s := c.State().Nodes[0]; s.IP != "198.18.0.61" || s.HTTPAddr != "198.18.0.61:9950" {
			t.Errorf("after ChangeIP: state has IP %s, HTTPAddr %s", s.IP, s.HTTPAddr)
		}
		if _, err := e2e.Ping(nodes[1].NS, newIP, 3*time.Second); err != nil {
			t.Errorf("%s → new address %s: %v", nodes[1].Name, newIP, err)
		}
		// The default route is back: the router's segment is reachable.
		if _, err := e2e.Ping(n.NS, nodes[2].IP, 3*time.Second); err != nil {
			t.Errorf("%s → %s behind the router: %v", n.Name, nodes[2].Name, err)
		}
		if err := n.SetUnderlayUp(false); err != nil {
			t.Fatal(err)
		}
		if _, err := e2e.Ping(nodes[1].NS, newIP, 500*time.Millisecond); err == nil {
			t.Errorf("%s answers with its underlay link down", n.Name)
		}
		if err := n.SetUnderlayUp(true); err != nil {
			t.Fatal(err)
		}
		if _, err := e2e.Ping(n.NS, nodes[2].IP, 3*time.Second); err != nil {
			t.Errorf("link up again: %s → %s behind the router: %v", n.Name, nodes[2].Name, err)
		}
	})

	t.Run("teardown", func(t *testing.T) {
		s := c.State()
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		for _, l := range s.Live() {
			t.Errorf("%s left behind", l)
		}
		if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
			t.Errorf("dir %s left behind", s.Dir)
		}
	})
}
