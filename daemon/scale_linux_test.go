// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/e2e/netnstest"
	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/subnet/etcd/leasesim"
)

// scaleNetwork holds the 5000 simulated peers (a /9 has 32768 /24s); it
// exists only inside the test's node namespace.
const scaleNetwork = `{"Network":"10.128.0.0/9","Backend":{"Type":"vxlan","VNI":7}}`

// vxlanTables is the VXLAN part of a node's kernel state, keyed as weft
// programs it: route destination → gateway, neighbour address → MAC, FDB
// MAC → destination.
type vxlanTables struct {
	routes, neighs, fdb map[string]string
}

func readVXLANTables(t *testing.T, h *netlink.Handle, dev string) vxlanTables {
	t.Helper()
	l, err := h.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	idx := l.Attrs().Index
	k := vxlanTables{routes: map[string]string{}, neighs: map[string]string{}, fdb: map[string]string{}}
	rs, err := backend.ListOwnRoutes(h)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		k.routes[r.Dst.String()] = r.Gw.String()
	}
	ns, err := backend.NeighList(h, idx, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		if n.State&netlink.NUD_PERMANENT != 0 {
			k.neighs[n.IP.String()] = n.HardwareAddr.String()
		}
	}
	fdb, err := backend.NeighList(h, idx, unix.AF_BRIDGE)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range fdb {
		if n.IP != nil {
			k.fdb[n.HardwareAddr.String()] = n.IP.String()
		}
	}
	return k
}

// wantVXLANTables is what weft programs for leases.
func wantVXLANTables(leases []subnet.Lease) vxlanTables {
	k := vxlanTables{routes: map[string]string{}, neighs: map[string]string{}, fdb: map[string]string{}}
	for _, l := range leases {
		vtep := l.Subnet.Masked().Addr().String()
		k.routes[l.Subnet.String()] = vtep
		k.neighs[vtep] = l.Record.BackendData.VTEPMAC
		k.fdb[l.Record.BackendData.VTEPMAC] = l.Record.PublicIP.String()
	}
	return k
}

// diff describes how got differs from want, briefly ("" when equal).
func (want vxlanTables) diff(got vxlanTables) string {
	var out []string
	for _, tb := range []struct {
		what      string
		want, got map[string]string
	}{{"routes", want.routes, got.routes}, {"neighbours", want.neighs, got.neighs}, {"FDB entries", want.fdb, got.fdb}} {
		missing, wrong, extra := 0, 0, 0
		example := ""
		for k, v := range tb.want {
			g, ok := tb.got[k]
			switch {
			case !ok:
				missing++
				example = k
			case g != v:
				wrong++
				example = fmt.Sprintf("%s: %s, want %s", k, g, v)
			}
		}
		for k := range tb.got {
			if _, ok := tb.want[k]; !ok {
				extra++
			}
		}
		if missing+wrong+extra > 0 {
			out = append(out, fmt.Sprintf("%s: %d missing, %d wrong, %d extra (e.g. %s)", tb.what, missing, wrong, extra, example))
		}
	}
	return strings.Join(out, "; ")
}

// TestRunDriftAt5000: one real weftd with 5000 simulated peers in etcd
// (VXLAN device in a test namespace): routes, neighbours and FDB entries
// deleted by hand are restored by the next resync, and changes applied as
// changes meanwhile (a peer's new address, one for a peer whose entries
// were just deleted) neither undo the repair nor hide the drift from it.
func TestRunDriftAt5000(t *testing.T) {
	skipUnlessEtcd(t)
	if testing.Short() {
		t.Skip("5000 peers: not in -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tn := newTestNode(t, scaleNetwork)
	tn.env["WEFTD_RESYNC_INTERVAL"] = "3s"
	tn.env["WEFTD_LOG_LEVEL"] = "info"
	sim := leasesim.New(tn.cli, tn.env["WEFTD_ETCD_PREFIX"])
	const peers = 5000
	nc := mustConfig(t, scaleNetwork)
	start := time.Now()
	if _, err := sim.Add(ctx, nc, peers, time.Hour); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d leases written in %s", peers, time.Since(start).Round(time.Millisecond))
	w := startWeftd(t, tn.ns, tn.env)
	w.waitReady(t, 60*time.Second)
	const dev = "weft.7"
	want := wantVXLANTables(sim.Leases())
	took := poll(t, 60*time.Second, "all peers programmed", func() string { return want.diff(readVXLANTables(t, tn.nl, dev)) })
	t.Logf("%d peers programmed %s after ready", peers, took.Round(time.Millisecond))

	// Drift: 100 routes, 100 neighbours and 100 FDB entries of different
	// peers deleted by hand, as an operator's ip route del / ip neigh del
	// / bridge fdb del would.
	l, err := tn.nl.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	leases := sim.Leases()
	for i := 0; i < 300; i++ {
		le := leases[i*16]
		vtep := le.Subnet.Masked().Addr()
		mac, _ := net.ParseMAC(le.Record.BackendData.VTEPMAC)
		var err error
		switch i % 3 {
		case 0:
			err = tn.nl.RouteDel(&netlink.Route{Dst: netnstest.IPNet(le.Subnet), Protocol: backend.RouteProtocol})
		case 1:
			err = tn.nl.NeighDel(&netlink.Neigh{LinkIndex: l.Attrs().Index, Family: netlink.FAMILY_V4, IP: vtep.AsSlice(), HardwareAddr: mac})
		case 2:
			err = tn.nl.NeighDel(&netlink.Neigh{LinkIndex: l.Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
				IP: le.Record.PublicIP.AsSlice(), HardwareAddr: mac})
		}
		if err != nil {
			t.Fatalf("delete entry %d by hand: %v", i, err)
		}
	}
	if d := want.diff(readVXLANTables(t, tn.nl, dev)); !strings.Contains(d, "100 missing") {
		t.Fatalf("after deleting by hand: %s", d)
	}
	// Changes meanwhile: a peer with all its entries in place moves, and
	// so does one whose neighbour was deleted (index 16: i = 1).
	for _, i := range []int{4001, 16} {
		if _, err := sim.Update(ctx, i, func(r *subnet.Record) { r.PublicIP = leasesim.PublicIP(peers + i) }); err != nil {
			t.Fatal(err)
		}
	}
	want = wantVXLANTables(sim.Leases())
	moved := sim.Leases()[4001].Record
	poll(t, 2*time.Second, "the change applied", func() string {
		if got := readVXLANTables(t, tn.nl, dev).fdb[moved.BackendData.VTEPMAC]; got != moved.PublicIP.String() {
			return "fdb entry of the moved peer points to " + got
		}
		return ""
	})
	// The next resync restores everything, and says so.
	took = poll(t, 10*time.Second, "drift repaired", func() string { return want.diff(readVXLANTables(t, tn.nl, dev)) })
	t.Logf("drift repaired %s after the changes", took.Round(time.Millisecond))
	poll(t, 5*time.Second, "drift logged", func() string {
		if !strings.Contains(w.logBuf.String(), "drift repaired") {
			return "no drift warning in weftd's log"
		}
		return ""
	})
	// And stays so: nothing changes over the next resyncs.
	time.Sleep(4 * time.Second)
	if d := want.diff(readVXLANTables(t, tn.nl, dev)); d != "" {
		t.Errorf("after two more resyncs: %s", d)
	}
}
