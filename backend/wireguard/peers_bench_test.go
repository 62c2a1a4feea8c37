// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build bench && linux

package wireguard

// TestBenchWireGuardPeers programs 100, 500, 1000, 2000 and 5000 peers
// from empty into one node:
//
//   - weft: a fresh userspace device (a new key, as on a new node) given
//     the complete peer set in one Reconcile, which adds the peers through
//     wgctrl and one route per peer subnet through netlink, and starts the
//     handshakes a starting node initiates (see Backend.Reconcile);
//   - the reference, in the same run and the same namespace: Debian's
//     wireguard-go given the same peers with `wg setconf` from a file, and
//     the same routes with `ip -batch`.
//
// The peers are simulated: keys, endpoints in 198.19.0.0/16 (nothing
// answers there) and /29 pod subnets of 10.244.0.0/16. Each size is
// measured in turn on weft and on the reference; the figures go to
// $WEFT_BENCH_OUT (e2etest.WriteBenchPoint) as well.

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/e2e/e2etest"
	"github.com/weftnet/weft/subnet"
)

var peerBenchSizes = []int{100, 500, 1000, 2000, 5000}

func TestBenchWireGuardPeers(t *testing.T) {
	if msg := missingTools("wireguard-go", "wg", "ip"); msg != "" {
		t.Skipf("skipping: %s", msg)
	}
	tp := newTopology(t, 1)
	nd := tp.nodes[0]
	all := simulatedPeers(t, peerBenchSizes[len(peerBenchSizes)-1])
	for i, n := range peerBenchSizes {
		peers := all[:n]

		// weft, from empty: a new state dir makes a new key.
		nd.cfg.StateDir = filepath.Join(t.TempDir(), "state")
		nd.start(t)
		d := backend.Desired{Local: backend.Local{Subnet: nd.subnet}, Complete: true, Peers: peers}
		r, err := nd.h.call(helperRequest{Op: "reconcile", Desired: d})
		if err != nil {
			t.Fatalf("reconcile %d peers: %v", n, err)
		}
		if r.Result.Added != 2*n+1 { // peers, routes, the device address
			t.Fatalf("reconcile of %d peers added %d objects, want %d", n, r.Result.Added, 2*n+1)
		}
		checkWGPeers(t, nd, nd.cfg.Name, n)
		weftRSS := rss(nd.h.pid())
		if _, err := nd.h.call(helperRequest{Op: "freeosmemory"}); err != nil {
			t.Fatal(err)
		}
		hr, err := nd.h.call(helperRequest{Op: "heap"})
		if err != nil {
			t.Fatal(err)
		}
		live := int64(hr.Heap.HeapInuse)
		if _, err := nd.h.stop(); err != nil {
			t.Fatal(err)
		}

		// The reference: wireguard-go, wg setconf, ip -batch.
		g := startWireguardGoNamed(t, nd, fmt.Sprintf("wgs%sn%d", tp.prefix[3:], i), netip.AddrFrom4([4]byte{10, 99, 0, 1}), 51821)
		conf, routes := referenceFiles(t, g, peers)
		setconf := timeCmd(t, nd, "wg", "setconf", g.name, conf)
		ipBatch := timeCmd(t, nd, "ip", "-batch", routes)
		checkWGPeers(t, nd, g.name, n)
		refRSS := rss(g.pid)
		g.stop()

		ref := setconf + ipBatch
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		fmt.Printf("BENCH| WireGuard %d peers from empty: peers + routes | %.1f ms | wireguard-go %s: wg setconf %.1f ms + ip -batch %.1f ms = %.1f ms | %.2fx\n",
			n, ms(r.Elapsed), wireguardGoVersion(), ms(setconf), ms(ipBatch), ms(ref), r.Elapsed.Seconds()/ref.Seconds())
		fmt.Printf("BENCH| WireGuard %d peers: RSS of the process holding the device | %.1f MiB | wireguard-go %s: %.1f MiB | %.2fx (weft's is the test binary running the backend); weft's heap in use after a collection %.1f MiB\n",
			n, mib64(weftRSS), wireguardGoVersion(), mib64(refRSS), float64(weftRSS)/float64(refRSS), mib64(live))
		writePoints(t,
			e2etest.BenchPoint{Series: "WireGuard peers from empty: peers + routes", Size: float64(n), Value: ms(r.Elapsed), Unit: "ms",
				Ref: "wireguard-go: wg setconf + ip -batch", RefValue: ms(ref)},
			e2etest.BenchPoint{Series: "WireGuard userspace RSS with n peers", Size: float64(n), Value: mib64(weftRSS), Unit: "MiB",
				Ref: "wireguard-go", RefValue: mib64(refRSS)},
			e2etest.BenchPoint{Series: "WireGuard userspace heap after a collection", Size: float64(n), Value: mib64(live), Unit: "MiB"},
		)
	}
}

func mib64(v int64) float64 { return float64(v) / (1 << 20) }

func writePoints(t *testing.T, points ...e2etest.BenchPoint) {
	t.Helper()
	for _, p := range points {
		if err := e2etest.WriteBenchPoint(p); err != nil {
			t.Error(err)
		}
	}
}

// simulatedPeers returns n peers with distinct keys, endpoints and /29
// subnets above 10.244.16.0 (clear of the test nodes' 10.244.i.0/24).
func simulatedPeers(t *testing.T, n int) []backend.Peer {
	t.Helper()
	if n > (65536-16*256)/8 {
		t.Fatalf("%d peers do not fit in 10.244.16.0-10.244.255.255 as /29s", n)
	}
	peers := make([]backend.Peer, n)
	for i := range peers {
		k, err := wgtypes.GeneratePrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		off := 16*256 + 8*i
		peers[i] = backend.Peer{
			Name:     fmt.Sprintf("sim%05d", i),
			Subnet:   netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(off >> 8), byte(off)}), 29),
			PublicIP: netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}),
			Data:     subnet.BackendData{WireGuardKey: k.PublicKey().String(), WireGuardPort: subnet.DefaultListenPort},
			Epoch:    int64(100 + i),
		}
	}
	return peers
}

// referenceFiles writes the wg(8) configuration of g with peers, and the
// ip(8) batch of their routes through g's link, as weft programs them.
func referenceFiles(t *testing.T, g *wgGo, peers []backend.Peer) (conf, routes string) {
	t.Helper()
	var c, r strings.Builder
	fmt.Fprintf(&c, "[Interface]\nPrivateKey = %s\nListenPort = %d\n", g.key, g.port)
	for _, p := range peers {
		fmt.Fprintf(&c, "\n[Peer]\nPublicKey = %s\nEndpoint = %s\nAllowedIPs = %s\n",
			p.Data.WireGuardKey, netip.AddrPortFrom(p.PublicIP, uint16(p.Data.WireGuardPort)), p.Subnet)
		fmt.Fprintf(&r, "route add %s dev %s scope link proto %d\n", p.Subnet, g.name, backend.RouteProtocol)
	}
	dir := t.TempDir()
	conf, routes = filepath.Join(dir, "wg.conf"), filepath.Join(dir, "routes")
	must(t, os.WriteFile(conf, []byte(c.String()), 0o600), "write wg config")
	must(t, os.WriteFile(routes, []byte(r.String()), 0o600), "write route batch")
	return conf, routes
}

// timeCmd runs a program in nd's namespace and returns its wall time.
func timeCmd(t *testing.T, nd *testNode, name string, args ...string) time.Duration {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	must(t, nd.ns.Do(cmd.Start), "start "+name)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out.String())
	}
	return time.Since(start)
}

// checkWGPeers fails unless the device has n peers.
func checkWGPeers(t *testing.T, nd *testNode, dev string, n int) {
	t.Helper()
	cmd := exec.Command("wg", "show", dev, "peers")
	var out strings.Builder
	cmd.Stdout = &out
	must(t, nd.ns.Do(cmd.Start), "start wg show")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("wg show %s peers: %v", dev, err)
	}
	if got := len(strings.Fields(out.String())); got != n {
		t.Fatalf("%s has %d peers, want %d", dev, got, n)
	}
}
