// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package membership

import (
	"encoding/binary"
	"encoding/json"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftnet/weft/subnet"
)

// aliveMsg encodes memberlist's alive message (message type 4, then the
// alive struct in msgpack as memberlist's codec writes it: a map keyed by
// field name) announcing member name at addr with meta. An attacker on
// the underlay sends these to an unencrypted member, in any number.
func aliveMsg(name string, addr netip.AddrPort, meta []byte) []byte {
	str := func(b []byte, s string) []byte {
		if len(s) < 32 {
			return append(append(b, 0xa0|byte(len(s))), s...)
		}
		return append(append(b, 0xd9, byte(len(s))), s...)
	}
	bin := func(b, v []byte) []byte { return append(append(b, 0xc4, byte(len(v))), v...) }
	b := []byte{4, 0x86}
	b = str(b, "Incarnation")
	b = append(b, 0xce, 0, 0, 0, 1)
	b = str(b, "Node")
	b = str(b, name)
	b = str(b, "Addr")
	b = bin(b, addr.Addr().AsSlice())
	b = str(b, "Port")
	b = binary.BigEndian.AppendUint16(append(b, 0xcd), addr.Port())
	b = str(b, "Meta")
	b = bin(b, meta)
	b = str(b, "Vsn")
	b = bin(b, []byte{1, 5, 2, 0, 0, 0})
	return b
}

// sendAlive sends alive messages for names prefix0..prefixN-1, all at
// addr, to the member at to, paced so memberlist's handoff queue (1024
// messages) does not overflow.
func sendAlive(t *testing.T, to string, prefix string, n int, addr netip.AddrPort, meta []byte) {
	t.Helper()
	c, err := net.Dial("udp", to)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range n {
		if _, err := c.Write(aliveMsg(prefix+strconv.Itoa(i), addr, meta)); err != nil {
			t.Fatal(err)
		}
		// Paced so that a slow receiver (a loaded machine, -race) drops
		// none: a lost message would be neither admitted nor refused.
		if i%25 == 24 {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestMemberTableCapped floods an unencrypted member with 1000 member
// names (each with realistic metadata) from one socket: the table stays
// at its cap, memory stays bounded, a member the store names is still
// admitted, and once the rogues are dead they are forgotten.
func TestMemberTableCapped(t *testing.T) {
	const maxMembers = 100
	cfg := testConfig("capped")
	cfg.MaxMembers = maxMembers
	cfg.ProbeInterval, cfg.ProbeTimeout = 20*time.Millisecond, 10*time.Millisecond
	cfg.GossipToTheDeadTime = 500 * time.Millisecond
	// Longer than the flood takes to send, even on a loaded machine: a
	// rogue forgotten before the last name arrives would free a place
	// for a later one, which would then not be refused.
	cfg.ForgetAfter = 3 * time.Second
	victim := start(t, cfg)
	victim.m.Prune([]string{"legit"})

	meta, err := json.Marshal(Meta{
		NodeID: "9f0c6a3e-8a1b-4c55-9d2e-1234567890ab", Subnet: netip.MustParsePrefix("10.244.7.0/24"),
		PublicIP: netip.MustParseAddr("198.18.0.7"), Data: subnet.BackendData{VTEPMAC: "02:aa:bb:cc:dd:ee"},
		Epoch: 42, Version: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Nobody answers at this address: the rogues go dead in time.
	nowhere := netip.MustParseAddrPort("127.0.0.1:9")
	before := heapInUse()
	sendAlive(t, victim.m.LocalAddr(), "rogue-", 1000, nowhere, meta)
	waitFor(t, 10*time.Second, "the table to fill and the rest to be refused", func() bool {
		return len(victim.m.Members()) == maxMembers && victim.m.Refused() >= 1000-maxMembers
	})
	grew := int64(heapInUse()) - int64(before)
	t.Logf("1000 rogue names: table %d (cap %d), %d refused, heap grew %d KiB",
		len(victim.m.Members()), maxMembers, victim.m.Refused(), grew/1024)
	if grew > 4<<20 {
		t.Errorf("heap grew %d KiB for a capped table of %d members; want under 4 MiB", grew/1024, maxMembers)
	}
	victim.m.mu.Lock()
	nAddrs := len(victim.m.addrs)
	victim.m.mu.Unlock()
	if nAddrs != 0 {
		t.Errorf("rejoin set holds %d addresses; rogues' addresses must not be added", nAddrs)
	}

	// A member the store names is admitted although the table is full.
	lcfg := testConfig("legit")
	lcfg.Join = []string{victim.m.LocalAddr()}
	start(t, lcfg)
	allSee(t, 5*time.Second, []*node{victim}, []string{"legit"}, StateAlive)

	// The rogues do not answer: once dead for ForgetAfter, they are
	// forgotten; the member the store names stays.
	took := waitFor(t, 60*time.Second, "the dead rogues forgotten", func() bool {
		ms := victim.m.Members()
		return len(ms) == 1 && ms[0].Name == "legit"
	})
	t.Logf("rogues forgotten %s after the table was full", took)

	// New names are admitted again (up to the cap).
	sendAlive(t, victim.m.LocalAddr(), "later-", 5, nowhere, meta)
	waitFor(t, 5*time.Second, "new names admitted after the rogues were forgotten", func() bool {
		return len(victim.m.Members()) == 6
	})
}

// TestRejoinOnlyTrustedAddresses: a member advertising a third party's
// address is never added to the rejoin set, so once it is dead nothing
// dials that address again; addresses given to Join are dialled.
func TestRejoinOnlyTrustedAddresses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			c.Close()
		}
	}()
	third := netip.MustParseAddrPort(ln.Addr().String())

	cfg := testConfig("target")
	cfg.RejoinInterval = 100 * time.Millisecond
	cfg.ProbeInterval, cfg.ProbeTimeout = 50*time.Millisecond, 20*time.Millisecond
	cfg.GossipToTheDeadTime = 200 * time.Millisecond
	victim := start(t, cfg)
	sendAlive(t, victim.m.LocalAddr(), "ghost", 1, third, nil)
	waitFor(t, 5*time.Second, "the ghost seen dead", func() bool { return victim.state("ghost0") == StateDead })
	time.Sleep(cfg.GossipToTheDeadTime) // memberlist's own gossip to the dead ends
	n0 := conns.Load()
	time.Sleep(10 * cfg.RejoinInterval)
	if n := conns.Load() - n0; n != 0 {
		t.Errorf("%d connections to the address a dead rogue advertised in %s; want none", n, 10*cfg.RejoinInterval)
	}
	victim.m.mu.Lock()
	_, listed := victim.m.addrs[third.String()]
	victim.m.mu.Unlock()
	if listed {
		t.Error("the rogue's advertised address is in the rejoin set")
	}

	// An address given to Join (from the store's records) is dialled.
	n0 = conns.Load()
	victim.m.Join([]string{third.String()})
	waitFor(t, 5*time.Second, "the joined address dialled", func() bool { return conns.Load() > n0 })
}

// TestAllowedCIDRs: a member accepts gossip only from its allowed source
// ranges (the outsider is on 127.0.0.2), and refuses to start when its own
// address is outside them.
func TestAllowedCIDRs(t *testing.T) {
	for _, tc := range []struct {
		allowed string
		admit   bool
	}{
		{"127.0.0.1/32", false},
		{"127.0.0.0/8", true},
	} {
		t.Run(tc.allowed, func(t *testing.T) {
			cfg := testConfig("guarded")
			cfg.AllowedCIDRs = []netip.Prefix{netip.MustParsePrefix(tc.allowed)}
			g := start(t, cfg)
			ocfg := testConfig("outsider")
			ocfg.BindAddr = "127.0.0.2:0"
			ocfg.Join = []string{g.m.LocalAddr()}
			o := start(t, ocfg)
			if tc.admit {
				allSee(t, 5*time.Second, []*node{g, o}, []string{"guarded", "outsider"}, StateAlive)
				return
			}
			deadline := time.Now().Add(2 * time.Second)
			for time.Now().Before(deadline) {
				if st := g.state("outsider"); st != "" {
					t.Fatalf("member outside %s admitted (%s)", tc.allowed, st)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	cfg := testConfig("selfless")
	cfg.AllowedCIDRs = []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "outside the allowed source ranges") {
		t.Errorf("Run with its own address outside AllowedCIDRs: %v, want a clear error", err)
	}
}
