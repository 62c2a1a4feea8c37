// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
	mnl "github.com/mdlayher/netlink"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/e2e/netnstest"
)

// Topology of the masquerade tests (all in namespaces made here):
//
//	pod ns                     node ns                          outside ns
//	eth0 10.244.1.2/24 ─veth─ p-xxxx 10.244.1.1/24
//	                           o-xxxx 198.18.0.1/24 ─veth─ eth0 198.18.0.2/24
//	                           r-xxxx 10.244.2.1/24 ─veth─ eth0 10.244.2.2/24   "remote pod" ns
//
// The node forwards and runs weft's table with Network 10.244.0.0/16 and
// Subnet 10.244.1.0/24.

var masqTestConfig = masqConfig{
	Network: pfx("10.244.0.0/16"), Subnet: pfx("10.244.1.0/24"),
	IPv6Network: pfx("fd10:244::/56"), IPv6Subnet: pfx("fd10:244:0:1::/64"),
}

func nftIn(t *testing.T, ns *netnstest.NS) *nftables.Conn {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.Handle)))
	if err != nil {
		t.Fatalf("nftables conn in %s: %v", ns.Name, err)
	}
	return c
}

// vethInto links a and b with a veth pair: aIf in a with aAddr, "eth0" in b
// with bAddr (and, if gw is valid, b's default route via gw).
func vethInto(t *testing.T, a *netnstest.NS, aIf string, aAddr netip.Prefix, b *netnstest.NS, bAddr netip.Prefix, gw netip.Addr) {
	t.Helper()
	vethNamed(t, a, aIf, aAddr, b, "eth0", bAddr, gw)
}

// vethNamed is vethInto with b's end named bIf.
func vethNamed(t *testing.T, a *netnstest.NS, aIf string, aAddr netip.Prefix, b *netnstest.NS, bIf string, bAddr netip.Prefix, gw netip.Addr) {
	t.Helper()
	ah, bh := a.Netlink(t), b.Netlink(t)
	tmp := "t" + netnstest.Suffix(8)
	if err := ah.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: aIf}, PeerName: tmp, PeerNamespace: netlink.NsFd(b.Handle)}); err != nil {
		t.Fatalf("add veth %s: %v", aIf, err)
	}
	up := func(h *netlink.Handle, name, newName string, p netip.Prefix) {
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if newName != "" {
			if err := h.LinkSetName(l, newName); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}); err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	up(ah, aIf, "", aAddr)
	up(bh, tmp, bIf, bAddr)
	if gw.IsValid() {
		if err := bh.RouteAdd(&netlink.Route{Gw: gw.AsSlice()}); err != nil {
			t.Fatalf("default route in %s: %v", b.Name, err)
		}
	}
}

func TestMasqueradeRules(t *testing.T) {
	netnstest.SkipUnlessRoot(t)
	node := netnstest.NewNS(t, "weftmasq")
	c := nftIn(t, node)

	t.Run("apply installs the table", func(t *testing.T) {
		if err := applyMasq(c, masqTestConfig); err != nil {
			t.Fatal(err)
		}
		post, fwd := ruleCounts(t, c)
		// mark + (4 per family: pod↔pod, outside→subnet, multicast, masq x2 = 5) * 2 families
		if post != 1+5*2 || fwd != 2*2 {
			t.Errorf("rules: postrouting %d, forward %d; want 11 and 4", post, fwd)
		}
	})

	t.Run("re-apply is idempotent", func(t *testing.T) {
		for range 3 {
			if err := applyMasq(c, masqTestConfig); err != nil {
				t.Fatal(err)
			}
		}
		post, fwd := ruleCounts(t, c)
		if post != 11 || fwd != 4 {
			t.Errorf("after re-apply: postrouting %d, forward %d; want 11 and 4", post, fwd)
		}
		tables, err := c.ListTables()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, tb := range tables {
			if tb.Name == masqTable {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d weft tables after re-apply", n)
		}
	})

	t.Run("re-apply is atomic", func(t *testing.T) {
		// A reader in its own netlink connection never sees the table
		// missing or partly filled while another applies it 200 times.
		// A rule dump spans several netlink messages and the library does
		// not report an interrupted dump, so a read counts only when the
		// ruleset generation is the same before and after it.
		reader := nftIn(t, node)
		var stop atomic.Bool
		var wg sync.WaitGroup
		var consistent, straddled, bad atomic.Int32
		var firstBad atomic.Value
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				g1, err1 := nftGeneration(node)
				post, fwd, err := ruleCountsErr(reader)
				g2, err2 := nftGeneration(node)
				if err1 != nil || err2 != nil {
					firstBad.CompareAndSwap(nil, fmt.Sprintf("generation: %v %v", err1, err2))
					bad.Add(1)
					continue
				}
				if g1 != g2 {
					straddled.Add(1)
					continue
				}
				consistent.Add(1)
				if err != nil || post != 11 || fwd != 4 {
					bad.Add(1)
					firstBad.CompareAndSwap(nil, fmt.Sprintf("generation %d: postrouting %d forward %d err %v", g1, post, fwd, err))
				}
			}
		}()
		for range 200 {
			if err := applyMasq(c, masqTestConfig); err != nil {
				t.Fatal(err)
			}
		}
		stop.Store(true)
		wg.Wait()
		if bad.Load() > 0 {
			t.Errorf("%d reads during re-apply saw an incomplete table, first: %v", bad.Load(), firstBad.Load())
		}
		if consistent.Load() < 20 {
			t.Errorf("only %d consistent reads during the re-applies: the check proved nothing", consistent.Load())
		}
		t.Logf("during 200 re-applies: %d consistent reads, all complete; %d reads straddled a commit (ignored)", consistent.Load(), straddled.Load())
	})

	t.Run("remove", func(t *testing.T) {
		for range 2 { // the second remove finds nothing and still succeeds
			if err := removeMasq(c); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.ListTableOfFamily(masqTable, nftables.TableFamilyINet); err == nil {
			t.Error("table still present after remove")
		}
	})

	t.Run("forward drop policy detected", func(t *testing.T) {
		if got, err := forwardDropChains(c); err != nil || len(got) != 0 {
			t.Fatalf("clean namespace: %v, %v", got, err)
		}
		drop := nftables.ChainPolicyDrop
		tb := c.AddTable(&nftables.Table{Name: "filter", Family: nftables.TableFamilyIPv4})
		c.AddChain(&nftables.Chain{Name: "FORWARD", Table: tb, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop})
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := applyMasq(c, masqTestConfig); err != nil {
			t.Fatal(err)
		}
		got, err := forwardDropChains(c)
		if err != nil || len(got) != 1 || got[0] != "ip filter FORWARD" {
			t.Fatalf("forwardDropChains = %q, %v; want [ip filter FORWARD]", got, err)
		}
		advice := forwardDropAdvice(got, masqTestConfig)
		for _, want := range []string{"ip filter FORWARD", "iptables -I FORWARD -s 10.244.0.0/16 -j ACCEPT", "ip6tables -I FORWARD -d fd10:244::/56 -j ACCEPT", "DOCKER-USER"} {
			if !strings.Contains(advice, want) {
				t.Errorf("advice %q does not say %q", advice, want)
			}
		}
	})
}

func ruleCounts(t *testing.T, c *nftables.Conn) (post, fwd int) {
	t.Helper()
	post, fwd, err := ruleCountsErr(c)
	if err != nil {
		t.Fatal(err)
	}
	return post, fwd
}

func ruleCountsErr(c *nftables.Conn) (post, fwd int, err error) {
	t := masqTableRef()
	p, err := c.GetRules(t, &nftables.Chain{Name: postroutingChn, Table: t})
	if err != nil {
		return 0, 0, err
	}
	f, err := c.GetRules(t, &nftables.Chain{Name: forwardChn, Table: t})
	if err != nil {
		return len(p), 0, err
	}
	return len(p), len(f), nil
}

func TestMasqueradePackets(t *testing.T) {
	netnstest.SkipUnlessRoot(t)
	sfx := netnstest.Suffix(6)
	node := netnstest.NewNS(t, "weftmq-node")
	pod := netnstest.NewNS(t, "weftmq-pod")
	outside := netnstest.NewNS(t, "weftmq-out")
	remote := netnstest.NewNS(t, "weftmq-rem")
	vethInto(t, node, "p-"+sfx, pfx("10.244.1.1/24"), pod, pfx("10.244.1.2/24"), addr("10.244.1.1"))
	vethInto(t, node, "o-"+sfx, pfx("198.18.0.1/24"), outside, pfx("198.18.0.2/24"), netip.Addr{})
	vethInto(t, node, "r-"+sfx, pfx("10.244.2.1/24"), remote, pfx("10.244.2.2/24"), addr("10.244.2.1"))
	if err := node.Do(func() error { return enableForwarding(true, false) }); err != nil {
		t.Fatal(err)
	}
	if err := applyMasq(nftIn(t, node), masqConfig{Network: pfx("10.244.0.0/16"), Subnet: pfx("10.244.1.0/24")}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		server     *netnstest.NS
		serverAddr string
		wantSource string
	}{
		{name: "pod to outside is masqueraded to the node's address", server: outside, serverAddr: "198.18.0.2", wantSource: "198.18.0.1"},
		{name: "pod to another cluster address keeps its source", server: remote, serverAddr: "10.244.2.2", wantSource: "10.244.1.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := sourceSeen(t, tt.server, tt.serverAddr, pod)
			if src != tt.wantSource {
				t.Errorf("server saw source %s, want %s", src, tt.wantSource)
			}
		})
	}

	t.Run("without weft's table the pod's source reaches the outside", func(t *testing.T) {
		// Proves the rules, not the topology, do the NAT above.
		if err := removeMasq(nftIn(t, node)); err != nil {
			t.Fatal(err)
		}
		if err := outside.Do(func() error {
			return netlink.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: net.IPv4(10, 244, 0, 0).To4(), Mask: net.CIDRMask(16, 32)}, Gw: net.IPv4(198, 18, 0, 1).To4()})
		}); err != nil {
			t.Fatal(err)
		}
		if src := sourceSeen(t, outside, "198.18.0.2", pod); src != "10.244.1.2" {
			t.Errorf("without masquerade the outside saw %s, want the pod's 10.244.1.2", src)
		}
	})
}

// sourceSeen opens a TCP listener in server on addr, connects from client
// and returns the source address the server saw.
func sourceSeen(t *testing.T, server *netnstest.NS, ip string, client *netnstest.NS) string {
	t.Helper()
	var ln net.Listener
	if err := server.Do(func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(ip, "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- "accept: " + err.Error()
			return
		}
		defer c.Close()
		got <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap().String()
	}()
	if err := client.Do(func() error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}); err != nil {
		t.Fatalf("connect to %s: %v", ln.Addr(), err)
	}
	select {
	case s := <-got:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("server saw no connection")
	}
	return ""
}

// nftGeneration returns the nftables ruleset generation of ns (it grows
// with every committed transaction).
func nftGeneration(ns *netnstest.NS) (uint32, error) {
	c, err := mnl.Dial(unix.NETLINK_NETFILTER, &mnl.Config{NetNS: int(ns.Handle)})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	msgs, err := c.Execute(mnl.Message{
		Header: mnl.Header{Type: mnl.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN), Flags: mnl.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		return 0, err
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := mnl.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, err
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), nil
			}
		}
	}
	return 0, fmt.Errorf("no generation in the reply")
}
