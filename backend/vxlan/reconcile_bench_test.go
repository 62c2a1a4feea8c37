// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build bench

package vxlan

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/e2e/e2etest"
	"github.com/weftnet/weft/e2e/netnstest"
	"github.com/weftnet/weft/subnet"
)

// TestBenchReconcile measures, at several numbers of peers (100, 500,
// 1000, 2000 and 5000, or $WEFT_BENCH_SIZES), how long the VXLAN backend
// takes to program every peer into an empty node (a neighbour, an FDB
// entry and a route each), to apply one peer's change as a change
// (Update, weftd's path between resyncs) and to find nothing to do (the
// periodic resync: a full comparison with the kernel). The reference is
// the same kernel operations done by iproute2 in batch mode (`bridge
// -batch` for the FDB, `ip -batch` for neighbours and routes) into an
// identical fresh namespace: the cost of just writing the entries, with
// no reading or comparing. Each figure is the median of 3 runs; the
// points also go to $WEFT_BENCH_OUT (docs/scale.md's model).
func TestBenchReconcile(t *testing.T) {
	netnstest.SkipUnlessRoot(t)
	// iproute2 is the reference.
	netnstest.RequireTool(t, "ip", "iproute2")
	netnstest.RequireTool(t, "bridge", "iproute2")
	for _, peers := range benchSizes(t) {
		benchReconcileAt(t, peers)
	}
}

func benchReconcileAt(t *testing.T, peers int) {
	const runs = 3
	var fromEmpty, oneChange, noChange, refEmpty, refOne []time.Duration
	var allocIdle, allocLists []float64 // MB
	for range runs {
		_, b := benchNode(t)
		d := benchDesired(peers)

		start := time.Now()
		res, err := b.Reconcile(context.Background(), d)
		fromEmpty = append(fromEmpty, time.Since(start))
		if err != nil || res.Added != 3*peers+1 {
			t.Fatalf("from empty: %+v, %v; want %d added", res, err, 3*peers+1)
		}

		start = time.Now()
		res, err = b.Reconcile(context.Background(), d)
		noChange = append(noChange, time.Since(start))
		if err != nil || res.Changed() {
			t.Fatalf("no change: %+v, %v", res, err)
		}
		// What a resync allocates, beside what listing its neighbour and
		// FDB tables with the netlink package's NeighList alone did.
		allocIdle = append(allocIdle, allocatedMB(t, func() error {
			res, err := b.Reconcile(context.Background(), d)
			if err == nil && res.Changed() {
				err = fmt.Errorf("changed %+v", res)
			}
			return err
		}))
		allocLists = append(allocLists, allocatedMB(t, func() error {
			for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6, unix.AF_BRIDGE} {
				if _, err := backend.NeighList(b.h, b.devIndex, fam); err != nil {
					return err
				}
			}
			return nil
		}))

		old := d.Peers[peers/2]
		moved := old
		moved.PublicIP = netip.MustParseAddr("198.19.255.254")
		start = time.Now()
		res, err = b.Update(context.Background(), []backend.Change{{Old: &old, New: &moved}})
		oneChange = append(oneChange, time.Since(start))
		if err != nil || res.Updated != 1 || res.Added+res.Removed != 0 {
			t.Fatalf("one change: %+v, %v; want 1 updated", res, err)
		}
		b.Close()

		// Reference: the same entries written by iproute2 into a fresh
		// node with the same device.
		refNS, rb := benchNode(t)
		rb.Close()
		ipBatch, fdbBatch := iprouteBatch(benchDesired(peers), "weft.1")
		refEmpty = append(refEmpty, runBatches(t, refNS, ipBatch, fdbBatch))
		one := fmt.Sprintf("fdb replace %s dev weft.1 dst 198.19.255.254 self permanent\n", old.Data.VTEPMAC)
		refOne = append(refOne, runBatches(t, refNS, "", one))
	}
	ms := func(ds []time.Duration) float64 {
		slices.Sort(ds)
		return float64(ds[len(ds)/2].Microseconds()) / 1000
	}
	fmt.Printf("BENCH| vxlan reconcile, %d peers from empty (%d objects) | %.1f ms | ip+bridge -batch, same ops: %.1f ms | %.2fx\n",
		peers, 3*peers+1, ms(fromEmpty), ms(refEmpty), ms(fromEmpty)/ms(refEmpty))
	fmt.Printf("BENCH| vxlan one change among %d peers, applied as a change | %.2f ms | bridge -batch, the one op: %.1f ms | %.2fx (no table is read)\n",
		peers, ms(oneChange), ms(refOne), ms(oneChange)/ms(refOne))
	fmt.Printf("BENCH| vxlan resync, nothing to do, %d peers | %.1f ms | reference: n/a | level-triggered check of %d objects (3 dumps)\n",
		peers, ms(noChange), 3*peers)
	slices.Sort(allocIdle)
	slices.Sort(allocLists)
	fmt.Printf("BENCH| vxlan resync, nothing to do, %d peers: memory allocated | %.2f MB | netlink NeighList of its neighbour and FDB tables alone: %.2f MB | %.2fx (neighbours and FDB read as a stream)\n",
		peers, allocIdle[len(allocIdle)/2], allocLists[len(allocLists)/2], allocIdle[len(allocIdle)/2]/allocLists[len(allocLists)/2])
	for _, p := range []e2etest.BenchPoint{
		{Series: "vxlan program from empty", Size: float64(peers), Value: ms(fromEmpty), Unit: "ms", Ref: "ip -batch + bridge -batch", RefValue: ms(refEmpty)},
		{Series: "vxlan one change applied as a change", Size: float64(peers), Value: ms(oneChange), Unit: "ms", Ref: "bridge -batch, one op", RefValue: ms(refOne)},
		{Series: "vxlan resync, nothing to do", Size: float64(peers), Value: ms(noChange), Unit: "ms"},
	} {
		if err := e2etest.WriteBenchPoint(p); err != nil {
			t.Fatal(err)
		}
	}
}

// allocatedMB is what f allocates on the heap, in MB (the whole process's
// allocations while it runs; nothing else runs in this test).
func allocatedMB(t *testing.T, f func() error) float64 {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if err := f(); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	return float64(after.TotalAlloc-before.TotalAlloc) / 1e6
}

// benchSizes returns the numbers of peers to measure at:
// $WEFT_BENCH_SIZES (comma-separated) or 100, 500, 1000, 2000, 5000.
func benchSizes(t *testing.T) []int {
	s := os.Getenv("WEFT_BENCH_SIZES")
	if s == "" {
		return []int{100, 500, 1000, 2000, 5000}
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 20000 {
			t.Fatalf("WEFT_BENCH_SIZES: %q is not a number of peers from 1 to 20000", f)
		}
		out = append(out, n)
	}
	return out
}

// benchNode makes a node namespace with an underlay link and a set-up
// VXLAN backend.
func benchNode(t *testing.T) (*netnstest.NS, *Backend) {
	t.Helper()
	ns := netnstest.NewNS(t, "wvb")
	u := netnstest.NewNS(t, "wvbu")
	netnstest.AddBridge(t, u, "seg0")
	netnstest.Attach(t, u, "seg0", ns, "eth0", netip.MustParsePrefix("198.18.0.1/15"))
	b, _, err := setupIn(ns, Config{PublicIP: netip.MustParseAddr("198.18.0.1"), Iface: "eth0", StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return ns, b
}

// benchDesired is a node (10.99.0.0/24) with n IPv4 peers.
func benchDesired(n int) backend.Desired {
	d := backend.Desired{Local: backend.Local{Subnet: netip.MustParsePrefix("10.99.0.0/24")}, Complete: true}
	for i := range n {
		d.Peers = append(d.Peers, backend.Peer{
			Name:     fmt.Sprintf("peer%d", i),
			Subnet:   netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + i/256), byte(i % 256), 0}), 24),
			PublicIP: netip.AddrFrom4([4]byte{198, 18, byte(1 + i/250), byte(2 + i%250)}),
			Data:     subnet.BackendData{VTEPMAC: fmt.Sprintf("02:42:00:00:%02x:%02x", i/256, i%256)},
		})
	}
	return d
}

// iprouteBatch renders what weft programs for d as iproute2 batch files.
func iprouteBatch(d backend.Desired, dev string) (ip, fdb string) {
	var ipb, fdbb strings.Builder
	fmt.Fprintf(&ipb, "address add %s/32 dev %s\n", d.Local.Subnet.Addr(), dev)
	for _, p := range d.Peers {
		vtep := p.Subnet.Addr()
		fmt.Fprintf(&ipb, "neigh replace %s lladdr %s dev %s nud permanent\n", vtep, p.Data.VTEPMAC, dev)
		fmt.Fprintf(&fdbb, "fdb replace %s dev %s dst %s self permanent\n", p.Data.VTEPMAC, dev, p.PublicIP)
	}
	for _, p := range d.Peers {
		fmt.Fprintf(&ipb, "route replace %s via %s dev %s onlink proto %d\n", p.Subnet, p.Subnet.Addr(), dev, backend.RouteProtocol)
	}
	return ipb.String(), fdbb.String()
}

// runBatches runs bridge -batch and ip -batch in ns and returns the time
// both took, process starts included.
func runBatches(t *testing.T, ns *netnstest.NS, ip, fdb string) time.Duration {
	t.Helper()
	dir := t.TempDir()
	var total time.Duration
	for _, b := range []struct{ tool, cmds string }{{"bridge", fdb}, {"ip", ip}} {
		if b.cmds == "" {
			continue
		}
		f := filepath.Join(dir, b.tool+".batch")
		if err := os.WriteFile(f, []byte(b.cmds), 0o644); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		out, err := exec.Command(b.tool, "-netns", ns.Name, "-batch", f).CombinedOutput()
		total += time.Since(start)
		if err != nil {
			t.Fatalf("%s -batch: %v: %s", b.tool, err, out)
		}
	}
	return total
}
