// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/subnet"
)

// TestRunRogueLeases: lease records written straight into etcd, as a
// holder of the store's credentials could (half the internet, a host
// route to the underlay gateway, a /25 inside a peer's /24, a malformed
// record), never reach the kernel of a running weftd: no route, no
// neighbour, no FDB entry, also after resyncs. /status lists each with its
// reason, the log names each once, and the honest peer is served.
func TestRunRogueLeases(t *testing.T) {
	skipUnlessEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tn := newTestNode(t, testNetwork)
	w := startWeftd(t, tn.ns, tn.env)
	w.waitReady(t, 60*time.Second)
	mine := w.status(t).Node.Subnet
	peer := claimPeer(ctx, t, tn, testNetwork, 2, time.Hour)

	// A /24 of the network that is neither ours nor the peer's.
	var free netip.Prefix
	for i := 250; i > 0; i-- {
		if p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 24); p != mine && p != peer.Subnet {
			free = p
			break
		}
	}
	upper := peer.Subnet.Addr().As4()
	upper[3] = 128
	inPeer := netip.PrefixFrom(netip.AddrFrom4(upper), 25) // the upper half of the peer's /24
	type rec struct {
		subnet.Record
		Subnet netip.Prefix `json:"subnet"`
	}
	rogueMAC := func(i byte) string { return fmt.Sprintf("02:42:00:00:01:%02x", i) }
	rogues := []struct {
		p   netip.Prefix
		mac string
		why string
		bad bool // a malformed record
	}{
		{p: pfx("0.0.0.0/1"), mac: rogueMAC(1), why: "subnet 0.0.0.0/1 is not a /24 of network 10.244.0.0/16"},
		{p: pfx("198.18.0.254/32"), mac: rogueMAC(2), why: "subnet 198.18.0.254/32 is not a /24 of network 10.244.0.0/16"},
		{p: inPeer, mac: rogueMAC(3), why: fmt.Sprintf("subnet %s is not a /24 of network 10.244.0.0/16", inPeer)},
		{p: free, mac: rogueMAC(4) + ":00:00", why: fmt.Sprintf("record: backendData.vtepMAC %q is not a 6-byte MAC address", rogueMAC(4)+":00:00"), bad: true},
	}
	for i, r := range rogues {
		data, err := json.Marshal(rec{subnet.Record{NodeName: fmt.Sprintf("rogue-%d", i), NodeID: uuid.NewString(),
			PublicIP: netip.AddrFrom4([4]byte{198, 18, 0, byte(100 + i)}), BackendType: "vxlan",
			BackendData: subnet.BackendData{VTEPMAC: r.mac}, Version: 1}, r.p})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tn.cli.Put(ctx, tn.store.LeaseKey(r.p), string(data)); err != nil {
			t.Fatal(err)
		}
	}

	poll(t, 20*time.Second, "the peer's route and every rogue lease rejected in /status", func() string {
		if routeTo(t, tn.nl, peer.Subnet) == nil {
			return "no route to the peer " + peer.Subnet.String()
		}
		st := w.status(t)
		if len(st.RejectedLeases) != len(rogues) {
			return fmt.Sprintf("rejectedLeases %+v", st.RejectedLeases)
		}
		return ""
	})
	got := map[string]string{}
	for _, r := range w.status(t).RejectedLeases {
		got[r.Key] = r.Reason
	}
	for _, r := range rogues {
		if why := got[subnet.KeyName(r.p)]; why != r.why {
			t.Errorf("/status reason for %s: %q, want %q", r.p, why, r.why)
		}
	}
	if peers := w.status(t).Peers; len(peers) != 1 || peers[0].Name != "node-b" {
		t.Errorf("/status peers: %+v, want node-b only", peers)
	}

	// Through at least two resyncs (every 1 s), nothing of theirs is in
	// the kernel.
	time.Sleep(2500 * time.Millisecond)
	for _, r := range rogues {
		if rt := routeTo(t, tn.nl, r.p); rt != nil {
			t.Errorf("weft route to rogue %s: %+v", r.p, rt)
		}
	}
	vx, err := tn.nl.LinkByName("weft.7")
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_BRIDGE} {
		ns, err := backend.NeighList(tn.nl, vx.Attrs().Index, fam)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ns {
			if strings.HasPrefix(n.HardwareAddr.String(), "02:42:00:00:01:") {
				t.Errorf("rogue neighbour/FDB entry on %s: %s", vx.Attrs().Name, neighString(n))
			}
		}
	}
	log := w.logBuf.String()
	for _, r := range rogues {
		if n := strings.Count(log, `key=`+subnet.KeyName(r.p)+` `) + strings.Count(log, `key="`+subnet.KeyName(r.p)+`"`); n != 1 {
			t.Errorf("rejection of %s logged %d times, want once", r.p, n)
		}
	}
}

func neighString(n netlink.Neigh) string {
	return fmt.Sprintf("%s lladdr %s", n.IP, n.HardwareAddr)
}
