// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package membership

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/netip"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/weftnet/weft/subnet"
)

// rogue is a plain memberlist node (not a weft Membership) that gossips
// whatever metadata it is given: an attacker on the underlay when gossip
// is not encrypted.
type rogue struct {
	ml   *memberlist.Memberlist
	meta []byte
}

func (r *rogue) NodeMeta(limit int) []byte {
	if len(r.meta) > limit {
		return nil
	}
	return r.meta
}
func (r *rogue) NotifyMsg([]byte)                {}
func (r *rogue) GetBroadcasts(int, int) [][]byte { return nil }
func (r *rogue) LocalState(bool) []byte          { return nil }
func (r *rogue) MergeRemoteState([]byte, bool)   {}

// startRogue runs a plain memberlist member named name on 127.0.0.1 that
// advertises meta and joins join. It is shut down (without leaving) when
// the test ends, if not before.
func startRogue(t *testing.T, name string, meta any, join string) *rogue {
	t.Helper()
	b, err := json.Marshal(meta)
	if err != nil {
		t.Fatal(err)
	}
	r := &rogue{meta: b}
	c := memberlist.DefaultLANConfig() // slow probes: 20 of them must not load the machine
	c.Name = name
	c.BindAddr, c.BindPort = "127.0.0.1", 0
	c.AdvertiseAddr = "127.0.0.1"
	c.Delegate = r
	c.GossipInterval = DefaultGossipInterval
	c.Logger = log.New(io.Discard, "", 0)
	if r.ml, err = memberlist.Create(c); err != nil {
		t.Fatalf("rogue %s: %v", name, err)
	}
	t.Cleanup(func() { _ = r.ml.Shutdown() })
	if _, err := r.ml.Join([]string{join}); err != nil {
		t.Fatalf("rogue %s join: %v", name, err)
	}
	return r
}

// TestGossipCannotStealSubnets rebuilds the attack of issue 12, finding 1:
// 20 plain memberlist nodes join an unencrypted weft member and claim
// another node's subnet at an epoch above its lease's (under that node's
// name without its node ID, under its name with another ID, and under
// their own names), 101.0.0.0/8…119.0.0.0/8, 0.0.0.0/1, 128.0.0.0/1 and a
// /25 inside the victim's /24. Merge must
// hand none of them out, with etcd reachable or not, and nothing once the
// attackers are dead.
func TestGossipCannotStealSubnets(t *testing.T) {
	cfg := testConfig("self")
	// Quicker probes, so that 20 dead rogues are declared dead sooner,
	// with a timeout that a loaded machine meets.
	cfg.ProbeInterval, cfg.ProbeTimeout = 200*time.Millisecond, 150*time.Millisecond
	victim := start(t, cfg)
	addr := victim.m.LocalAddr()

	n1 := subnet.Lease{
		Subnet: netip.MustParsePrefix("10.244.1.0/24"), Epoch: 11,
		Record: subnet.Record{NodeName: "n1", NodeID: "id-n1", PublicIP: netip.MustParseAddr("198.18.0.11"),
			BackendType: subnet.BackendVXLAN, BackendData: subnet.BackendData{VTEPMAC: "02:00:00:00:00:11"}, Version: 3},
	}
	self := subnet.Lease{
		Subnet: netip.MustParsePrefix("10.244.0.0/24"), Epoch: 10,
		Record: subnet.Record{NodeName: "self", NodeID: "id-self", PublicIP: netip.MustParseAddr("198.18.0.10"), Version: 1},
	}
	view := subnet.View{Leases: []subnet.Lease{self, n1}, Complete: true, Revision: 20}
	nc := &subnet.Config{Network: netip.MustParsePrefix("10.244.0.0/16"), SubnetLen: 24}

	claim := func(id, sn string, epoch int64) Meta {
		return Meta{NodeID: id, Subnet: netip.MustParsePrefix(sn), PublicIP: netip.MustParseAddr("198.18.0.66"),
			Data: subnet.BackendData{VTEPMAC: "02:66:66:66:66:66"}, Epoch: epoch, Version: 99}
	}
	var rogues []*rogue
	rogues = append(rogues, startRogue(t, "n1", claim("", "10.244.1.0/24", 50), addr)) // the victim's name, no node ID
	for i := 101; i <= 119; i++ {
		rogues = append(rogues, startRogue(t, fmt.Sprintf("rogue-%d", i), claim(fmt.Sprintf("id-%d", i), fmt.Sprintf("%d.0.0.0/8", i), int64(100+i)), addr))
	}
	waitFor(t, 20*time.Second, "the weft member to see all 20 rogues alive with their claims", func() bool {
		n := 0
		for _, mb := range victim.m.Members() {
			if mb.State == StateAlive && mb.Meta.Epoch >= 50 {
				n++
			}
		}
		return n == 20
	})
	check := func(when string) {
		t.Helper()
		members := victim.m.Members()
		for _, auth := range []bool{true, false} {
			got := Merge(MergeInput{Self: "self", View: view, Members: members, Network: nc, Authoritative: auth})
			if len(got) != 1 {
				t.Errorf("%s, etcd reachable %t: %d peers, want only n1's lease: %+v", when, auth, len(got), got)
				continue
			}
			p := got[0]
			if p.Name != "n1" || p.Subnet != n1.Subnet || p.Epoch != n1.Epoch || p.PublicIP != n1.Record.PublicIP ||
				p.Data != n1.Record.BackendData || p.Provisional || p.Source != SourceEtcd {
				t.Errorf("%s, etcd reachable %t: n1's peer is %+v, want its lease's data", when, auth, p)
			}
		}
	}
	check("attackers alive")

	// Second round: the same members change their claims to the victim's
	// subnet under its node ID (another name), halves of the address
	// space, and a same-epoch "update" of the victim's lease by members
	// that are not the victim.
	update := func(r *rogue, m Meta) {
		t.Helper()
		r.meta, _ = json.Marshal(m)
		if err := r.ml.UpdateNode(time.Second); err != nil {
			t.Logf("rogue update not yet broadcast: %v", err) // gossip spreads it anyway
		}
	}
	update(rogues[0], claim("", "10.244.1.0/24", 11))      // n1 without ID, same epoch, higher version
	update(rogues[1], claim("id-n1", "10.244.1.0/24", 60)) // the victim's ID under another name
	update(rogues[2], claim("id-n1", "10.244.1.0/24", 11)) // the same, same epoch
	update(rogues[3], claim("id-x", "0.0.0.0/1", 300))
	update(rogues[4], claim("id-y", "128.0.0.0/1", 301))
	update(rogues[5], claim("id-z", "10.244.1.0/25", 302))
	waitFor(t, 10*time.Second, "the second round's claims", func() bool {
		want := map[string]int64{"n1": 11, "rogue-101": 60, "rogue-102": 11, "rogue-103": 300, "rogue-104": 301, "rogue-105": 302}
		for name, epoch := range want {
			if mb, _ := victim.member(name); mb.Meta.Epoch != epoch {
				return false
			}
		}
		return true
	})
	check("second round")

	for _, r := range rogues {
		if err := r.ml.Shutdown(); err != nil {
			t.Fatal(err)
		}
	}
	took := waitFor(t, 60*time.Second, "the rogues seen dead", func() bool {
		dead := 0
		for _, mb := range victim.m.Members() {
			if mb.State == StateDead {
				dead++
			}
		}
		return dead == len(rogues)
	})
	t.Logf("20 killed rogues seen dead after %s", took)
	check("attackers dead")
}
