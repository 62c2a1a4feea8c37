// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e && linux

package e2e_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/e2etest"
)

// TestDirectRouting: VXLAN with DirectRouting, node1 and node2 on one
// segment, node3 behind a router.
//
//	underlay br0 198.18.0.0/24 ── node1 .0.11 ── node2 .0.12 ── router .0.4
//	                                                                │ br1 198.18.1.0/24
//	                                                              node3 .1.13
//
// node1 ↔ node2 get plain routes via each other's public IP (pod packets
// in the clear on the underlay); traffic to and from node3 is VXLAN.
func TestDirectRouting(t *testing.T) {
	c := e2etest.NewCluster(t, e2e.Options{Nodes: 3, PodsPerNode: 1, DirectRouting: true, Segments: []int{0, 0, 1}})
	n := c.Nodes()
	n1, n2, n3 := n[0], n[1], n[2]
	sub := map[*e2e.Node]netip.Prefix{}
	for _, x := range n {
		s, err := x.Subnet()
		if err != nil {
			t.Fatal(err)
		}
		sub[x] = s
	}

	t.Run("routes", func(t *testing.T) {
		cases := []struct {
			on, to *e2e.Node
			direct bool
		}{
			{n1, n2, true}, {n2, n1, true},
			{n1, n3, false}, {n3, n1, false}, {n2, n3, false}, {n3, n2, false},
		}
		for _, tc := range cases {
			t.Run(tc.on.Name+"-to-"+tc.to.Name, func(t *testing.T) {
				err := e2e.Eventually(5*time.Second, 50*time.Millisecond, func() error {
					k, err := tc.on.Kernel()
					if err != nil {
						return err
					}
					r, ok := k.RouteTo(sub[tc.to])
					if !ok {
						return fmt.Errorf("no route to %s", sub[tc.to])
					}
					if tc.direct && (r.Gw != tc.to.IP || r.Dev != "eth0") {
						return fmt.Errorf("route %s, want a direct route via %s dev eth0", r, tc.to.IP)
					}
					if !tc.direct && (r.Gw != sub[tc.to].Addr() || r.Dev != tc.on.VXLANDeviceName()) {
						return fmt.Errorf("route %s, want via %s dev %s", r, sub[tc.to].Addr(), tc.on.VXLANDeviceName())
					}
					return nil
				})
				if err != nil {
					t.Error(err)
				}
			})
		}
	})

	t.Run("pods-all-to-all", func(t *testing.T) {
		allToAll(t, c.Pods(), false)
	})

	t.Run("on-the-wire", func(t *testing.T) {
		p1, p2, p3 := n1.Pods()[0], n2.Pods()[0], n3.Pods()[0]
		capture, err := e2e.StartCapture(c.Underlay)
		if err != nil {
			t.Fatal(err)
		}
		srv2, err := e2e.ServeUDP(p2.NS, netip.AddrPortFrom(p2.IP, 0))
		if err != nil {
			t.Fatal(err)
		}
		defer srv2.Close()
		srv3, err := e2e.ServeUDP(p3.NS, netip.AddrPortFrom(p3.IP, 0))
		if err != nil {
			t.Fatal(err)
		}
		defer srv3.Close()
		m2, m3 := "direct-"+c.ID, "tunnel-"+c.ID
		if err := e2e.UDPEcho(p1.NS, srv2.Addr, []byte(m2), 5*time.Second); err != nil {
			t.Error(err)
		}
		if err := e2e.UDPEcho(p1.NS, srv3.Addr, []byte(m3), 5*time.Second); err != nil {
			t.Error(err)
		}
		var bare2, tunneled2, bare3, tunneled3 int
		for _, p := range capture.Stop() {
			if string(p.Payload) == m2 {
				bare2++
			}
			if string(p.Payload) == m3 {
				bare3++
			}
			if p.DecodeVXLAN(8472) {
				switch string(p.Inner.Payload) {
				case m2:
					tunneled2++
				case m3:
					tunneled3++
				}
			}
		}
		if bare2 == 0 || tunneled2 != 0 {
			t.Errorf("same segment: %d plain and %d VXLAN packets, want plain only", bare2, tunneled2)
		}
		if tunneled3 == 0 || bare3 != 0 {
			t.Errorf("across the router: %d plain and %d VXLAN packets, want VXLAN only", bare3, tunneled3)
		}
	})
}

// TestHostGW: host-gw with node1 and node2 on one segment and node3
// behind a router. node1 and node2 route to each other directly; node3 is
// not directly reachable, which both must report (log and /status), never
// a silent black hole.
func TestHostGW(t *testing.T) {
	c := e2etest.NewCluster(t, e2e.Options{Nodes: 3, PodsPerNode: 1, Backend: "host-gw", Segments: []int{0, 0, 1}})
	n := c.Nodes()
	n1, n2, n3 := n[0], n[1], n[2]

	t.Run("routes", func(t *testing.T) {
		for _, tc := range []struct{ on, to *e2e.Node }{{n1, n2}, {n2, n1}} {
			s, err := tc.to.Subnet()
			if err != nil {
				t.Fatal(err)
			}
			err = e2e.Eventually(5*time.Second, 50*time.Millisecond, func() error {
				k, err := tc.on.Kernel()
				if err != nil {
					return err
				}
				r, ok := k.RouteTo(s)
				if !ok || r.Gw != tc.to.IP || r.Dev != "eth0" {
					return fmt.Errorf("%s: route to %s is %v (present %t), want via %s dev eth0", tc.on.Name, s, r, ok, tc.to.IP)
				}
				if k.VTEPMAC != "" {
					return fmt.Errorf("%s has a VXLAN device under host-gw", tc.on.Name)
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("pods-on-one-segment", func(t *testing.T) {
		allToAll(t, append(n1.Pods(), n2.Pods()...), false)
	})

	t.Run("unreachable-peer-reported", func(t *testing.T) {
		for _, x := range []*e2e.Node{n1, n2, n3} {
			err := e2e.Eventually(5*time.Second, 50*time.Millisecond, func() error {
				st, err := x.Status(t.Context())
				if err != nil {
					return err
				}
				for _, p := range st.Peers {
					cross := (x == n3) != (p.Name == n3.Name)
					if cross && p.Problem == "" {
						return fmt.Errorf("%s: peer %s on another segment has no problem reported", x.Name, p.Name)
					}
					if !cross && p.Problem != "" {
						return fmt.Errorf("%s: peer %s on the same segment reported: %s", x.Name, p.Name, p.Problem)
					}
				}
				if len(st.Peers) != 2 {
					return fmt.Errorf("%s lists %d peers, want 2", x.Name, len(st.Peers))
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}
		st, err := n1.Status(t.Context())
		if err == nil {
			for _, p := range st.Peers {
				if p.Problem != "" {
					t.Logf("%s reports for %s: %s", n1.Name, p.Name, p.Problem)
				}
			}
		}
		if !strings.Contains(n1.LogTail(200), n3.Name) {
			t.Errorf("%s's log does not mention %s", n1.Name, n3.Name)
		}
	})
}
