// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build bench && linux

package wireguard

// TestBenchWireGuard compares TCP throughput between two node namespaces
// (the topology of harness_linux_test.go) over:
//
//   - the underlay veth/bridge path (no tunnel),
//   - weft's embedded userspace WireGuard (TUN offloads on, and off),
//   - Debian's wireguard-go binary, configured with wg(8) between the same
//     namespaces on port 51821, with the same MTU,
//
// and the RSS of the process running weft's userspace device during and
// after the load, with the soft memory limit weftd applies (128 MiB), and
// with a lower one (64 MiB) to show what memory under load costs in
// throughput.
// Throughput is measured with iperf3 when installed, else with a Go TCP
// sender and receiver; the same tool for every path. Packages: iperf3,
// wireguard-go, wireguard-tools.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/e2e/e2etest"
	"github.com/weftnet/weft/e2e/netnstest"
)

const (
	benchRuns     = 3
	benchDuration = 4 * time.Second
	benchMemLimit = 128 << 20
	// benchLowMemLimit is the lower limit measured beside it.
	benchLowMemLimit = 64 << 20
)

func TestBenchWireGuard(t *testing.T) {
	tp := newTopology(t, 2)
	n1, n2 := tp.nodes[0], tp.nodes[1]
	for _, nd := range tp.nodes {
		nd.cfg.MemoryLimit = benchMemLimit
		nd.start(t)
	}
	tp.reconcileAll(t)
	tool := newThroughputTool(t)
	t.Logf("throughput tool: %s; best of %d runs of %s", tool.name, benchRuns, benchDuration)

	warm := listenUDP(t, n2.ns, n2.subnet.Addr())
	if _, ok := reach(t, n1.ns, netip.Addr{}, warm, "warm", "x", 5*time.Second); !ok {
		t.Fatal("tunnel not working")
	}

	underlay := tool.best(t, n1, n2, n1.underlay, n2.underlay)

	// weft, node address to node address through the tunnel, sampling the
	// RSS of both device processes.
	startRSS := max(rss(n1.h.pid()), rss(n2.h.pid()))
	sampler := newRSSSampler(n1.h.pid(), n2.h.pid())
	weft := tool.best(t, n1, n2, n1.subnet.Addr(), n2.subnet.Addr())
	peak := sampler.stop()
	anonPeak := sampler.anon
	weftPod := tool.best(t, n1, n2, n1.podIP, n2.podIP, podNS)
	// The device returns a burst's memory a second after it goes quiet.
	quickRSS := waitIdleRSS(2*time.Second, n1.h.pid(), n2.h.pid())
	idleRSS := waitIdleRSS(3*time.Second, n1.h.pid(), n2.h.pid())
	// Twice: sync.Pool keeps a victim cache through one collection.
	for range 2 {
		for _, nd := range tp.nodes {
			if _, err := nd.h.call(helperRequest{Op: "freeosmemory"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	freedRSS := max(rss(n1.h.pid()), rss(n2.h.pid()))

	// Debian's wireguard-go between the same namespaces.
	var ref float64
	var refPeak, refAnonPeak, refIdle int64
	refName := "Debian wireguard-go"
	if msg := missingTools("wireguard-go", "wg"); msg != "" {
		t.Logf("skipping the wireguard-go reference: %s", msg)
	} else {
		refName += " " + wireguardGoVersion()
		a, b := startWireguardGo(t, tp, n1), startWireguardGo(t, tp, n2)
		connectWireguardGo(t, a, b)
		connectWireguardGo(t, b, a)
		rs := newRSSSampler(a.pid, b.pid)
		ref = tool.best(t, n1, n2, a.addr, b.addr)
		refPeak = rs.stop()
		refAnonPeak = rs.anon
		refIdle = waitIdleRSS(5*time.Second, a.pid, b.pid)
	}

	// weft without a memory limit (same keys: the devices restart).
	restart := func(change func(*helperConfig)) {
		for _, nd := range tp.nodes {
			if _, err := nd.h.stop(); err != nil {
				t.Fatal(err)
			}
			change(&nd.cfg)
			nd.start(t)
		}
		tp.reconcileAll(t)
	}
	restart(func(c *helperConfig) { c.MemoryLimit = 0 })
	rs := newRSSSampler(n1.h.pid(), n2.h.pid())
	weftNoLimit := tool.best(t, n1, n2, n1.subnet.Addr(), n2.subnet.Addr())
	noLimitPeak := rs.stop()

	// weft with a lower memory limit: what memory under load costs in
	// throughput.
	restart(func(c *helperConfig) { c.MemoryLimit = benchLowMemLimit })
	rs = newRSSSampler(n1.h.pid(), n2.h.pid())
	weftLowLimit := tool.best(t, n1, n2, n1.subnet.Addr(), n2.subnet.Addr())
	lowLimitPeak := rs.stop()

	// weft with TUN offloads off.
	restart(func(c *helperConfig) { c.MemoryLimit, c.DisableOffloads = benchMemLimit, true })
	weftNoOffload := tool.best(t, n1, n2, n1.subnet.Addr(), n2.subnet.Addr())

	gbit := func(v float64) string { return fmt.Sprintf("%.2f Gbit/s", v/1e9) }
	ratio := func(a, b float64) string {
		if b <= 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2fx", a/b)
	}
	mib := func(v int64) string { return fmt.Sprintf("%.0f MiB", float64(v)/(1<<20)) }
	refVal := "skipped (install wireguard-go, wireguard-tools)"
	if ref > 0 {
		refVal = gbit(ref)
	}
	fmt.Printf("BENCH| WireGuard TCP node-to-node throughput (%s) | %s | %s: %s | %s (target >= 4x)\n", tool.name, gbit(weft), refName, refVal, ratio(weft, ref))
	fmt.Printf("BENCH| WireGuard TCP throughput vs underlay (%s) | %s | underlay veth+bridge: %s | %s of underlay\n", tool.name, gbit(weft), gbit(underlay), ratio(weft, underlay))
	fmt.Printf("BENCH| WireGuard TCP pod-to-pod throughput (%s) | %s | node-to-node over weft: %s | %s\n", tool.name, gbit(weftPod), gbit(weft), ratio(weftPod, weft))
	fmt.Printf("BENCH| WireGuard TCP throughput, TUN offloads off (%s) | %s | %s: %s | %s\n", tool.name, gbit(weftNoOffload), refName, refVal, ratio(weftNoOffload, ref))
	refRSS := "skipped"
	if refPeak > 0 {
		refRSS = mib(refPeak)
	}
	refAnon, ratios := "", ""
	if refPeak > 0 {
		refAnon = fmt.Sprintf(" (anonymous %s)", mib(refAnonPeak))
		ratios = fmt.Sprintf("%s of the RSS, %s of the anonymous; ", ratio(float64(peak), float64(refPeak)), ratio(float64(anonPeak), float64(refAnonPeak)))
	}
	fmt.Printf("BENCH| WireGuard userspace RSS under load (max of both nodes) | %s (anonymous %s) | %s: %s%s | %ssoft memory limit %s\n",
		mib(peak), mib(anonPeak), refName, refRSS, refAnon, ratios, mib(benchMemLimit))
	if refIdle > 0 {
		refRSS = mib(refIdle)
	}
	fmt.Printf("BENCH| WireGuard userspace RSS 5 s after load (max of both nodes) | %s | %s: %s | soft memory limit %s; %s before the load, %s 2 s after it, %s after debug.FreeOSMemory twice\n",
		mib(idleRSS), refName, refRSS, mib(benchMemLimit), mib(startRSS), mib(quickRSS), mib(freedRSS))
	fmt.Printf("BENCH| WireGuard userspace RSS under load without a memory limit | %s | with the %s limit: %s | throughput %s without the limit\n",
		mib(noLimitPeak), mib(benchMemLimit), mib(peak), gbit(weftNoLimit))
	fmt.Printf("BENCH| WireGuard userspace under load with a %s memory limit: RSS, throughput | %s, %s | with the %s limit: %s, %s | %s of the RSS, %s of the throughput\n",
		mib(benchLowMemLimit), mib(lowLimitPeak), gbit(weftLowLimit), mib(benchMemLimit), mib(peak), gbit(weft),
		ratio(float64(lowLimitPeak), float64(peak)), ratio(weftLowLimit, weft))

}

func podNS(nd *testNode) *netnstest.NS { return nd.pod }

// throughputTool measures TCP throughput from one namespace to another.
type throughputTool struct {
	name  string
	iperf string
	// last holds the results of the last best call, in bit/s.
	last []float64
}

func newThroughputTool(t *testing.T) *throughputTool {
	if p, err := exec.LookPath("iperf3"); err == nil {
		return &throughputTool{name: "iperf3", iperf: p}
	}
	t.Log("iperf3 not installed (apt package iperf3): using a Go TCP sender and receiver for every path")
	return &throughputTool{name: "Go TCP"}
}

// best runs benchRuns measurements from src (in a's namespace, or the one
// nsOf picks) to dst and returns the best in bit/s.
func (tt *throughputTool) best(t *testing.T, a, b *testNode, src, dst netip.Addr, nsOf ...func(*testNode) *netnstest.NS) float64 {
	t.Helper()
	srcNS, dstNS := a.ns, b.ns
	if len(nsOf) > 0 {
		srcNS, dstNS = nsOf[0](a), nsOf[0](b)
	}
	var results []float64
	for i := range benchRuns {
		var bps float64
		var err error
		if tt.iperf != "" {
			bps, err = tt.iperf3(t, srcNS, dstNS, src, dst, 5201+i)
		} else {
			bps, err = goTCP(srcNS, dstNS, src, dst)
		}
		if err != nil {
			t.Fatalf("throughput %s -> %s: %v", src, dst, err)
		}
		results = append(results, bps)
	}
	t.Logf("%s -> %s: %v bit/s", src, dst, results)
	tt.last = results
	return slices.Max(results)
}

func (tt *throughputTool) iperf3(t *testing.T, srcNS, dstNS *netnstest.NS, src, dst netip.Addr, port int) (float64, error) {
	srv := exec.Command(tt.iperf, "-s", "-1", "--forceflush", "-B", dst.String(), "-p", strconv.Itoa(port))
	srvOut, _ := srv.StdoutPipe()
	if err := dstNS.Do(srv.Start); err != nil {
		return 0, err
	}
	defer func() {
		srv.Process.Kill()
		srv.Wait()
	}()
	// The server prints its banner once it listens.
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(srvOut)
		once := sync.Once{}
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Server listening") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
		return 0, fmt.Errorf("iperf3 server did not start")
	}
	cli := exec.Command(tt.iperf, "-c", dst.String(), "-B", src.String(), "-p", strconv.Itoa(port),
		"-t", strconv.Itoa(int(benchDuration/time.Second)), "-J")
	var out strings.Builder
	cli.Stdout = &out
	if err := srcNS.Do(cli.Start); err != nil {
		return 0, err
	}
	if err := cli.Wait(); err != nil {
		return 0, fmt.Errorf("iperf3 client: %w: %s", err, out.String())
	}
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil {
		return 0, fmt.Errorf("iperf3 output: %w", err)
	}
	return res.End.SumReceived.BitsPerSecond, nil
}

// goTCP sends for benchDuration over one TCP connection and returns the
// receiver's rate.
func goTCP(srcNS, dstNS *netnstest.NS, src, dst netip.Addr) (float64, error) {
	var ln net.Listener
	if err := dstNS.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(dst, 0).String())
		return err
	}); err != nil {
		return 0, err
	}
	defer ln.Close()
	type result struct {
		n   int64
		d   time.Duration
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		start := time.Now()
		n, err := io.Copy(io.Discard, c)
		done <- result{n, time.Since(start), err}
	}()
	var c net.Conn
	if err := srcNS.Do(func() error {
		var err error
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
		c, err = d.Dial("tcp", ln.Addr().String())
		return err
	}); err != nil {
		return 0, err
	}
	buf := make([]byte, 128<<10)
	deadline := time.Now().Add(benchDuration)
	for time.Now().Before(deadline) {
		if _, err := c.Write(buf); err != nil {
			c.Close()
			return 0, err
		}
	}
	c.Close()
	r := <-done
	if r.err != nil {
		return 0, r.err
	}
	return float64(r.n*8) / r.d.Seconds(), nil
}

// rssSampler records the highest RSS, and the highest anonymous RSS, of
// some processes until stopped.
type rssSampler struct {
	stopc chan struct{}
	done  chan memSample
	// anon is the highest anonymous RSS (valid after stop).
	anon int64
}

func newRSSSampler(pids ...int) *rssSampler {
	s := &rssSampler{stopc: make(chan struct{}), done: make(chan memSample, 1)}
	go func() {
		var peak memSample
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, p := range pids {
				m := e2etest.MaxProcMemory(p)
				peak.RSS, peak.Anon = max(peak.RSS, m.RSS), max(peak.Anon, m.Anon)
			}
			select {
			case <-s.stopc:
				s.done <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// stop returns the highest RSS.
func (s *rssSampler) stop() int64 {
	close(s.stopc)
	m := <-s.done
	s.anon = m.Anon
	return m.RSS
}

// waitIdleRSS waits d and returns the highest RSS of pids.
func waitIdleRSS(d time.Duration, pids ...int) int64 {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	var m int64
	for _, p := range pids {
		m = max(m, rss(p))
	}
	return m
}

// rss returns a process's resident set size in bytes (0 if unknown).
func rss(pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func missingTools(names ...string) string {
	var missing []string
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return ""
	}
	return fmt.Sprintf("%s not installed (apt packages wireguard-go, wireguard-tools)", strings.Join(missing, ", "))
}

func wireguardGoVersion() string {
	out, err := exec.Command("wireguard-go", "--version").Output()
	if err != nil {
		return ""
	}
	f := strings.Fields(string(out))
	if len(f) >= 2 {
		return f[1]
	}
	return ""
}

// wgGo is a wireguard-go process serving one node.
type wgGo struct {
	nd   *testNode
	name string
	pid  int
	key  wgtypes.Key
	addr netip.Addr
	port int
	// stop kills the process and removes its socket; idempotent.
	stop func()
}

func startWireguardGo(t *testing.T, tp *topology, nd *testNode) *wgGo {
	t.Helper()
	return startWireguardGoNamed(t, nd, fmt.Sprintf("wgr%sn%d", tp.prefix[3:], nd.idx), netip.AddrFrom4([4]byte{10, 99, 0, byte(nd.idx)}), 51821)
}

// startWireguardGoNamed starts wireguard-go in nd's namespace with a new
// key, listening on port, the link up with address ip and weft's MTU.
func startWireguardGoNamed(t *testing.T, nd *testNode, name string, ip netip.Addr, port int) *wgGo {
	t.Helper()
	g := &wgGo{nd: nd, name: name, addr: ip, port: port}
	var err error
	if g.key, err = wgtypes.GeneratePrivateKey(); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join("/var/run/wireguard", g.name+".sock")
	cmd := exec.Command("wireguard-go", "-f", g.name)
	cmd.Env = append(os.Environ(), "LOG_LEVEL=error")
	must(t, nd.ns.Do(cmd.Start), "start wireguard-go")
	g.pid = cmd.Process.Pid
	g.stop = sync.OnceFunc(func() {
		cmd.Process.Kill()
		cmd.Wait()
		os.Remove(sock) // only this process's socket
	})
	t.Cleanup(g.stop)
	waitFor(t, 5*time.Second, "wireguard-go socket", func() bool { _, err := os.Stat(sock); return err == nil })
	keyFile := filepath.Join(t.TempDir(), "key")
	must(t, os.WriteFile(keyFile, []byte(g.key.String()), 0o600), "write key")
	runWG(t, nd, "set", g.name, "private-key", keyFile, "listen-port", strconv.Itoa(g.port))
	l := mustLink(t, nd.nl, g.name)
	must(t, nd.nl.LinkSetMTU(l, 1440), "mtu") // as weft's device
	must(t, nd.nl.AddrAdd(l, addr(netip.PrefixFrom(g.addr, 32))), "address")
	must(t, nd.nl.LinkSetUp(l), "up")
	return g
}

// connectWireguardGo makes b a peer of a, with a route to b's address.
func connectWireguardGo(t *testing.T, a, b *wgGo) {
	t.Helper()
	runWG(t, a.nd, "set", a.name, "peer", b.key.PublicKey().String(),
		"endpoint", netip.AddrPortFrom(b.nd.underlay, uint16(b.port)).String(), "allowed-ips", b.addr.String()+"/32")
	l := mustLink(t, a.nd.nl, a.name)
	must(t, a.nd.nl.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: &net.IPNet{IP: b.addr.AsSlice(), Mask: net.CIDRMask(32, 32)}}), "route")
}

func runWG(t *testing.T, nd *testNode, args ...string) {
	t.Helper()
	cmd := exec.Command("wg", args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	must(t, nd.ns.Do(cmd.Start), "start wg")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("wg %v: %v: %s", args, err, out.String())
	}
}

// TestBenchWireGuardFlowBound measures the userspace device's RSS and
// throughput under a saturating TCP stream at several flow bounds (packets
// read from the TUN and not yet sent, see flow_linux.go), in interleaved
// rounds, beside Debian's wireguard-go in the same run.
func TestBenchWireGuardFlowBound(t *testing.T) {
	if msg := missingTools("wireguard-go", "wg"); msg != "" {
		t.Skipf("needs the wireguard-go reference: %s", msg)
	}
	tp := newTopology(t, 2)
	n1, n2 := tp.nodes[0], tp.nodes[1]
	for _, nd := range tp.nodes {
		nd.cfg.MemoryLimit = benchMemLimit
		nd.start(t)
	}
	tp.reconcileAll(t)
	tool := newThroughputTool(t)
	a, b := startWireguardGo(t, tp, n1), startWireguardGo(t, tp, n2)
	connectWireguardGo(t, a, b)
	connectWireguardGo(t, b, a)

	bounds := []int64{-1, 16, 32, 64, 128}
	type point struct {
		bps  []float64
		peak []int64
	}
	res := map[int64]*point{}
	var ref point
	for round := range 2 {
		rs := newRSSSampler(a.pid, b.pid)
		ref.bps = append(ref.bps, tool.best(t, n1, n2, a.addr, b.addr))
		ref.peak = append(ref.peak, rs.stop())
		for i := range bounds {
			bound := bounds[(i+round)%len(bounds)]
			for _, nd := range tp.nodes {
				if _, err := nd.h.stop(); err != nil {
					t.Fatal(err)
				}
				nd.cfg.FlowBound = bound
				nd.start(t)
			}
			tp.reconcileAll(t)
			rs := newRSSSampler(n1.h.pid(), n2.h.pid())
			bps := tool.best(t, n1, n2, n1.subnet.Addr(), n2.subnet.Addr())
			peak := rs.stop()
			p := res[bound]
			if p == nil {
				p = &point{}
				res[bound] = p
			}
			p.bps, p.peak = append(p.bps, bps), append(p.peak, peak)
			t.Logf("round %d bound %d: %.2f Gbit/s, %d MiB", round, bound, bps/1e9, peak>>20)
		}
	}
	span := func(p *point) string {
		return fmt.Sprintf("%.2f-%.2f Gbit/s, %d-%d MiB", slices.Min(p.bps)/1e9, slices.Max(p.bps)/1e9, slices.Min(p.peak)>>20, slices.Max(p.peak)>>20)
	}
	for _, bound := range bounds {
		p := res[bound]
		name := fmt.Sprintf("%d packets", bound)
		if bound < 0 {
			name = "none"
		}
		fmt.Printf("BENCH| WireGuard userspace under load, flow bound %s: throughput, RSS | %s | Debian wireguard-go: %s | %.2fx the RSS, %.2fx the throughput\n",
			name, span(p), span(&ref), float64(slices.Max(p.peak))/float64(slices.Max(ref.peak)), slices.Min(p.bps)/slices.Max(ref.bps))
	}
}
