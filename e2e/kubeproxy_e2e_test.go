// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e && linux

package e2e_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/e2etest"
	"github.com/weftnet/weft/e2e/netnstest"
)

// TestKubeProxyDNAT proves that kube-proxy's Services work with weft's pods:
// each node's namespace gets the nat rules kube-proxy's iptables mode
// writes (KUBE-SERVICES → KUBE-SVC-… → KUBE-SEP-… DNAT, KUBE-MARK-MASQ and
// the masquerade of marked packets in KUBE-POSTROUTING), loaded with
// iptables-restore (iptables-nft, as kube-proxy runs it on current
// distributions), for two Services of both families. Real weftd processes
// (etcd mode: the DNAT path does not depend on the store), pods attached by
// the weft CNI plugin, TCP connections to the ClusterIPs.
//
// Hairpin: pod a through "local" reaches itself; kube-proxy's KUBE-SEP rule
// marks it, and it arrives masqueraded to node1's bridge address (the reply
// must come back through the node to be un-NATed). Same bridge: pod b
// through "local" reaches pod a with its own address; a's reply to b is
// bridged, not routed, and only br_netfilter (bridge-nf-call-iptables=1,
// which the CNI plugin sets) passes it through conntrack to undo the DNAT:
// with the sysctl set to 0 the connection fails, and the next pod's ADD
// turns it on again. Other node: pod a through "remote" reaches pod c on
// node2, and pod c through "local" reaches pod a (the VXLAN path).
//
//	underlay br0 198.18.0.0/24 ── node1 .11 ──────────── node2 .12
//	                               bridge: pod a, pod b    bridge: pod c
//
//	Service local  10.96.0.10:80, [fd10:96::a]:80 → pod a :8080
//	Service remote 10.96.0.11:80, [fd10:96::b]:80 → pod c :8080
func TestKubeProxyDNAT(t *testing.T) {
	restore := map[bool]string{
		false: netnstest.RequireTool(t, "iptables-restore", "iptables"),
		true:  netnstest.RequireTool(t, "ip6tables-restore", "iptables"),
	}
	c := e2etest.NewCluster(t, e2e.Options{Nodes: 2, PodsPerNode: 2, DualStack: true})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	n1, n2 := c.Nodes()[0], c.Nodes()[1]
	for _, n := range c.Nodes() {
		if err := n.WaitReady(ctx, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	a, b, pc := n1.Pods()[0], n1.Pods()[1], n2.Pods()[0]

	const port = 8080
	serve := func(p *e2e.Pod) *e2e.Server {
		srv, err := e2e.ServeTCP(p.NS, netip.AddrPortFrom(netip.IPv6Unspecified(), port))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		return srv
	}
	local := service{name: "local", chain: "7JCQXEZGVUNUTCOU", ip: netip.MustParseAddr("10.96.0.10"), ip6: netip.MustParseAddr("fd10:96::a"), backend: a, srv: serve(a)}
	remote := service{name: "remote", chain: "5ZCR3DQZ7E5JYK3Q", ip: netip.MustParseAddr("10.96.0.11"), ip6: netip.MustParseAddr("fd10:96::b"), backend: pc, srv: serve(pc)}
	for _, n := range c.Nodes() {
		for _, v6 := range []bool{false, true} {
			network := netip.MustParsePrefix(e2e.DefaultNetwork)
			if v6 {
				network = netip.MustParsePrefix(e2e.DefaultIPv6Network)
			}
			cmd := n.NS.Command(ctx, restore[v6], "--noflush")
			cmd.Stdin = strings.NewReader(kubeProxyRules(network, v6, port, local, remote))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %s: %v\n%s", n.Name, restore[v6], err, out)
			}
		}
	}

	sf, err := n1.SubnetFile()
	if err != nil {
		t.Fatal(err)
	}
	gateway := map[bool]netip.Addr{false: sf.Subnet.Addr(), true: sf.IPv6Subnet.Addr()}
	cases := []struct {
		name    string
		from    *e2e.Pod
		svc     service
		wantSrc func(v6 bool) netip.Addr
	}{
		{"hairpin", a, local, func(v6 bool) netip.Addr { return gateway[v6] }},
		{"same-bridge", b, local, b.Addr},
		{"to-other-node", a, remote, a.Addr},
		{"from-other-node", pc, local, pc.Addr},
	}
	for _, v6 := range []bool{false, true} {
		t.Run(family(v6), func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					src, err := viaService(tc.from, tc.svc, v6)
					if err != nil {
						t.Fatal(err)
					}
					if want := tc.wantSrc(v6); src != want {
						t.Errorf("%s reached %s through %s with source %s, want %s", tc.from.Name, tc.svc.backend.Name, tc.svc.name, src, want)
					}
				})
			}
		})
	}

	// The same-bridge case rests on br_netfilter: with
	// bridge-nf-call-iptables=0 in node1's namespace the bridged reply
	// skips conntrack and b's connection fails; weftd reports the value;
	// the next pod's ADD sets it to 1 and the Service works again.
	t.Run("same-bridge-needs-bridge-nf-call-iptables", func(t *testing.T) {
		if err := n1.NS.Sysctl("net/bridge/bridge-nf-call-iptables", "0"); err != nil {
			t.Fatal(err)
		}
		if _, err := viaService(b, local, false); err == nil {
			t.Fatalf("%s reached %s through %s with bridge-nf-call-iptables=0: the sysctl would not matter", b.Name, a.Name, local.name)
		} else {
			t.Logf("with bridge-nf-call-iptables=0: %v", err)
		}
		st, err := n1.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if bn := st.Node.BridgeNetfilter; bn == nil || !bn.Loaded || bn.CallIPTables || !strings.Contains(bn.Problem, "bridge-nf-call-iptables is 0") {
			t.Errorf("%s /status bridgeNetfilter %+v, want call-iptables off and the problem", n1.Name, bn)
		}
		if _, err := n1.AddPod(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := viaService(b, local, false); err != nil {
			t.Errorf("after the next pod's ADD: %v", err)
		}
		if st, err := n1.Status(ctx); err != nil {
			t.Error(err)
		} else if bn := st.Node.BridgeNetfilter; bn == nil || !bn.CallIPTables || bn.Problem != "" {
			t.Errorf("%s /status bridgeNetfilter after ADD %+v, want call-iptables on and no problem", n1.Name, bn)
		}
	})
}

// service is one ClusterIP Service of TestKubeProxyDNAT with one endpoint,
// the backend pod, where srv listens.
type service struct {
	name, chain string // chain: the hash part of kube-proxy's chain names
	ip, ip6     netip.Addr
	backend     *e2e.Pod
	srv         *e2e.Server
}

// viaService connects from a pod to the Service's ClusterIP, port 80, and
// returns the source address the backend saw.
func viaService(from *e2e.Pod, svc service, v6 bool) (netip.Addr, error) {
	ip := svc.ip
	if v6 {
		ip = svc.ip6
	}
	srv := svc.srv
	before := len(srv.Peers())
	if err := e2e.TCPEcho(from.NS, netip.AddrPortFrom(ip, 80), []byte("through a Service"), 3*time.Second); err != nil {
		return netip.Addr{}, fmt.Errorf("%s → %s (%s): %w", from.Name, svc.name, ip, err)
	}
	peers := srv.Peers()
	if len(peers) == before {
		return netip.Addr{}, fmt.Errorf("%s → %s (%s): echoed, but %s's server saw no connection", from.Name, svc.name, ip, svc.backend.Name)
	}
	return peers[len(peers)-1], nil
}

// kubeProxyRules returns iptables-restore input with the rules kube-proxy's
// iptables mode writes for the Services (one endpoint each) on a node of a
// cluster whose pod network is network (kube-proxy's --cluster-cidr).
func kubeProxyRules(network netip.Prefix, v6 bool, targetPort int, svcs ...service) string {
	host := 32
	if v6 {
		host = 128
	}
	var b strings.Builder
	b.WriteString(`*nat
:KUBE-SERVICES - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
`)
	for _, s := range svcs {
		fmt.Fprintf(&b, ":KUBE-SVC-%s - [0:0]\n:KUBE-SEP-%s - [0:0]\n", s.chain, s.chain)
	}
	b.WriteString(`-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
`)
	for _, s := range svcs {
		ip, ep := s.ip, s.backend.IP
		if v6 {
			ip, ep = s.ip6, s.backend.IPv6
		}
		name := "default/" + s.name + ":http"
		fmt.Fprintf(&b, "-A KUBE-SERVICES -d %s/%d -p tcp -m comment --comment \"%s cluster IP\" -m tcp --dport 80 -j KUBE-SVC-%s\n", ip, host, name, s.chain)
		fmt.Fprintf(&b, "-A KUBE-SVC-%s ! -s %s -d %s/%d -p tcp -m comment --comment \"%s cluster IP\" -m tcp --dport 80 -j KUBE-MARK-MASQ\n", s.chain, network, ip, host, name)
		fmt.Fprintf(&b, "-A KUBE-SVC-%s -m comment --comment \"%s -> %s\" -j KUBE-SEP-%s\n", s.chain, name, netip.AddrPortFrom(ep, uint16(targetPort)), s.chain)
		// The hairpin rule: a connection from the endpoint itself is
		// masqueraded, so that the reply returns through this node.
		fmt.Fprintf(&b, "-A KUBE-SEP-%s -s %s/%d -m comment --comment \"%s\" -j KUBE-MARK-MASQ\n", s.chain, ep, host, name)
		fmt.Fprintf(&b, "-A KUBE-SEP-%s -p tcp -m comment --comment \"%s\" -m tcp -j DNAT --to-destination %s\n", s.chain, name, netip.AddrPortFrom(ep, uint16(targetPort)))
	}
	b.WriteString("COMMIT\n")
	return b.String()
}
