// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build bench && linux

package e2e_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/e2etest"
	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/subnet/etcd/leasesim"
)

// Topology of the scale benchmarks: one real weftd (VXLAN) in its node
// namespace and the cluster's etcd, as in every e2e cluster; the other
// nodes are simulated leases (subnet/etcd/leasesim) in that etcd, each a
// peer weftd programs (neighbour, FDB entry, route) but never sends to.
//
//	etcd (underlay ns) ◄── leases of sim-00000 … sim-0NNNN (written by the test)
//	        ▲
//	        └── weftd (node ns): weft VXLAN device, N neighbours, N FDB entries, N routes
const scaleNetwork = `{"Network":"10.128.0.0/9","SubnetLen":24,"Backend":{"Type":"vxlan"}}`

// scaleResync is weftd's resync interval in these benchmarks.
const scaleResync = 2 * time.Second

// scaleNode is the cluster's one weftd with its simulated peers.
type scaleNode struct {
	t   *testing.T
	c   *e2e.Cluster
	n   *e2e.Node
	sim *leasesim.Sim
	nc  *subnet.Config
	ns  netns.NsHandle
	h   *netlink.Handle
	// moves counts the address changes made, so that each goes to a new
	// address.
	moves int
}

func newScaleNode(t *testing.T) *scaleNode {
	c := e2etest.NewCluster(t, e2e.Options{Nodes: 1, NetworkConfig: scaleNetwork, ResyncInterval: scaleResync, Logf: func(string, ...any) {}})
	n := c.Nodes()[0]
	cli, err := c.Etcd.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	nc, err := subnet.ParseConfig([]byte(scaleNetwork))
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.GetFromPath(n.NS.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	h, err := n.NS.Handle()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return &scaleNode{t: t, c: c, n: n, sim: leasesim.New(cli, e2e.EtcdPrefix), nc: nc, ns: ns, h: h}
}

// grow stops weftd, empties its kernel state (the VXLAN device, and with
// it every neighbour, FDB entry and route through it) and its saved peer
// snapshot (daemon/state.go's peers.json: without it weftd programs from
// etcd's listing alone, as a new node does), and adds simulated peers up
// to peers.
func (s *scaleNode) grow(ctx context.Context, peers int) {
	t := s.t
	if err := s.n.Stop(); err != nil {
		t.Fatal(err)
	}
	if l, err := s.h.LinkByName(s.n.VXLANDeviceName()); err == nil {
		if err := s.h.LinkDel(l); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(s.n.StateDir, "peers.json")); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if more := peers - len(s.sim.Leases()); more > 0 {
		if _, err := s.sim.Add(ctx, s.nc, more, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
}

// programFromEmpty starts weftd with the kernel empty and returns how long
// it took from start to the last route, and from its first neighbour to
// its last route (the kernel writes alone), as the kernel's own
// notifications time them.
func (s *scaleNode) programFromEmpty(peers int) (total, writes time.Duration) {
	t := s.t
	done := make(chan struct{})
	defer close(done)
	neighs := make(chan netlink.NeighUpdate, 3*peers)
	routes := make(chan netlink.RouteUpdate, 2*peers)
	lost := make(chan error, 2)
	onErr := func(err error) {
		select {
		case lost <- err:
		default:
		}
	}
	// Buffers large enough that a burst of 15 000 notifications is not
	// dropped by the kernel before this process reads it.
	if err := netlink.NeighSubscribeWithOptions(neighs, done, netlink.NeighSubscribeOptions{
		Namespace: &s.ns, ReceiveBufferSize: 64 << 20, ReceiveBufferForceSize: true, ErrorCallback: onErr,
	}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{
		Namespace: &s.ns, ReceiveBufferSize: 64 << 20, ReceiveBufferForceSize: true, ErrorCallback: onErr,
	}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.n.Start(); err != nil {
		t.Fatal(err)
	}
	// The neighbours are read on a goroutine of their own, so that both
	// streams are taken as they come.
	firstc := make(chan time.Time, 1)
	go func() {
		for {
			select {
			case u := <-neighs:
				if u.Type == unix.RTM_NEWNEIGH && u.State&netlink.NUD_PERMANENT != 0 {
					firstc <- time.Now()
					for {
						select {
						case <-neighs:
						case <-done:
							return
						}
					}
				}
			case <-done:
				return
			}
		}
	}()
	got := 0
	deadline := time.After(2 * time.Minute)
	for got < peers {
		select {
		case u := <-routes:
			if u.Type == unix.RTM_NEWROUTE && u.Protocol == backend.RouteProtocol {
				got++
			}
		case err := <-lost:
			t.Fatalf("kernel notifications lost after %d of %d routes: %v", got, peers, err)
		case <-deadline:
			t.Fatalf("%d of %d routes after 2 min\n%s", got, peers, s.n.LogTail(30))
		}
	}
	var first time.Time
	select {
	case first = <-firstc:
	case <-time.After(5 * time.Second):
		t.Fatalf("all %d routes came, but no permanent neighbour", peers)
	}
	end := time.Now()
	return end.Sub(start), end.Sub(first)
}

// refProgram writes the same entries with ip -batch and bridge -batch into
// a device of its own in the node namespace (deleted afterwards, with
// everything through it) and returns how long iproute2 took.
func (s *scaleNode) refProgram(peers int) time.Duration {
	t := s.t
	const dev = "wref"
	run := func(args ...string) {
		if out, err := exec.Command("ip", append([]string{"-n", s.n.NS.Name}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	run("link", "add", dev, "type", "vxlan", "id", "99", "dstport", "8479", "local", s.n.IP.String(), "dev", "eth0", "nolearning")
	run("link", "set", dev, "up")
	defer run("link", "del", dev)
	var ipb, fdbb strings.Builder
	for _, l := range s.sim.Leases()[:peers] {
		vtep := l.Subnet.Masked().Addr()
		fmt.Fprintf(&ipb, "neigh replace %s lladdr %s dev %s nud permanent\n", vtep, l.Record.BackendData.VTEPMAC, dev)
		fmt.Fprintf(&fdbb, "fdb replace %s dev %s dst %s self permanent\n", l.Record.BackendData.VTEPMAC, dev, l.Record.PublicIP)
	}
	for _, l := range s.sim.Leases()[:peers] {
		fmt.Fprintf(&ipb, "route replace %s via %s dev %s onlink proto %d\n", l.Subnet, l.Subnet.Masked().Addr(), dev, backend.RouteProtocol)
	}
	// The same listeners as weftd's run has, taking the same notifications,
	// so that both pay for them.
	stop := s.drainNotifications()
	defer stop()
	dir := t.TempDir()
	var took time.Duration
	for _, b := range []struct{ tool, cmds string }{{"bridge", fdbb.String()}, {"ip", ipb.String()}} {
		f := filepath.Join(dir, b.tool+".batch")
		if err := os.WriteFile(f, []byte(b.cmds), 0o644); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if out, err := exec.Command(b.tool, "-netns", s.n.NS.Name, "-batch", f).CombinedOutput(); err != nil {
			t.Fatalf("%s -batch: %v: %s", b.tool, err, out)
		}
		took += time.Since(start)
	}
	return took
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// rssAnon is the anonymous part of process pid's resident set (its heap
// and stacks; the rest is the binary's file pages).
func rssAnon(t *testing.T, pid int) int64 {
	kb, err := statusKB(pid, "RssAnon")
	if err != nil {
		t.Fatal(err)
	}
	return kb << 10
}

// statusKB reads a field counted in kB from /proc/pid/status.
func statusKB(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s for pid %d", field, pid)
}

// sampleRSS reads process pid's RSS and its anonymous part every 50 ms
// until the returned function is called, which returns the highest of
// each seen (a single reading lands anywhere in the heap's cycle of
// growing to the collector's goal and being collected).
func sampleRSS(pid int) (stop func() (rss, anon int64)) {
	done := make(chan struct{})
	var peak, peakAnon int64
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if r, err := statusKB(pid, "VmRSS"); err == nil {
				peak = max(peak, r<<10)
			}
			if a, err := statusKB(pid, "RssAnon"); err == nil {
				peakAnon = max(peakAnon, a<<10)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() (int64, int64) {
		close(done)
		<-finished
		return peak, peakAnon
	}
}

// drainNotifications subscribes to the node's neighbour and route
// notifications, as programFromEmpty does, and reads them until stop.
func (s *scaleNode) drainNotifications() (stop func()) {
	done := make(chan struct{})
	neighs := make(chan netlink.NeighUpdate, 4096)
	routes := make(chan netlink.RouteUpdate, 4096)
	if err := netlink.NeighSubscribeWithOptions(neighs, done, netlink.NeighSubscribeOptions{
		Namespace: &s.ns, ReceiveBufferSize: 64 << 20, ReceiveBufferForceSize: true,
	}); err != nil {
		s.t.Fatal(err)
	}
	if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{
		Namespace: &s.ns, ReceiveBufferSize: 64 << 20, ReceiveBufferForceSize: true,
	}); err != nil {
		s.t.Fatal(err)
	}
	go func() {
		for {
			select {
			case <-neighs:
			case <-routes:
			case <-done:
				return
			}
		}
	}()
	return func() { close(done) }
}

// cpuTime is the CPU time (user + system) process pid used so far.
func cpuTime(t *testing.T, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) start at ')'.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// metric reads one unlabelled counter from weftd's /metrics.
func (s *scaleNode) metric(ctx context.Context, name string) float64 {
	_, body, err := s.n.Get(ctx, "/metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	s.t.Fatalf("no %s in /metrics", name)
	return 0
}

// idleResyncCPU returns weftd's CPU time per resync over a few idle resync
// periods, and what iproute2 spends reading the same three tables once.
func (s *scaleNode) idleResyncCPU(ctx context.Context) (perResync, ref time.Duration) {
	pid := s.n.Proc().PID
	r0, c0 := s.metric(ctx, "weft_reconcile_total"), cpuTime(s.t, pid)
	time.Sleep(5*scaleResync + scaleResync/2)
	r1, c1 := s.metric(ctx, "weft_reconcile_total"), cpuTime(s.t, pid)
	if r1-r0 < 4 {
		s.t.Fatalf("%v reconciles in %s idle, want at least 4 resyncs", r1-r0, 5*scaleResync)
	}
	perResync = (c1 - c0) / time.Duration(r1-r0)
	dev := s.n.VXLANDeviceName()
	for _, args := range [][]string{
		{"ip", "-n", s.n.NS.Name, "route", "show", "proto", strconv.Itoa(backend.RouteProtocol)},
		{"ip", "-n", s.n.NS.Name, "neigh", "show", "dev", dev, "nud", "permanent"},
		{"bridge", "-n", s.n.NS.Name, "fdb", "show", "dev", dev},
	} {
		cmd := exec.Command(args[0], args[1:]...)
		if err := cmd.Run(); err != nil {
			s.t.Fatalf("%v: %v", args, err)
		}
		ref += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	return perResync, ref
}

// oneChange moves simulated peer i to a public IP no peer had and returns
// how long after the write began the kernel held its new FDB entry, and
// how long the etcd write itself took.
func (s *scaleNode) oneChange(ctx context.Context, i int) (applied, write time.Duration) {
	t := s.t
	s.moves++
	to := leasesim.MaxPeers - s.moves
	done := make(chan struct{})
	defer close(done)
	neighs := make(chan netlink.NeighUpdate, 64)
	if err := netlink.NeighSubscribeWithOptions(neighs, done, netlink.NeighSubscribeOptions{Namespace: &s.ns}); err != nil {
		t.Fatal(err)
	}
	mac := s.sim.Leases()[i].Record.BackendData.VTEPMAC
	dst := leasesim.PublicIP(to)
	start := time.Now()
	if _, err := s.sim.Update(ctx, i, func(r *subnet.Record) { r.PublicIP = dst }); err != nil {
		t.Fatal(err)
	}
	write = time.Since(start)
	deadline := time.After(10 * time.Second)
	for {
		select {
		case u := <-neighs:
			if u.Family == unix.AF_BRIDGE && u.HardwareAddr.String() == mac && netip.MustParseAddr(u.IP.String()) == dst {
				return time.Since(start), write
			}
		case <-deadline:
			t.Fatalf("peer %d's FDB entry not moved to %s within 10 s\n%s", i, dst, s.n.LogTail(20))
		}
	}
}

// TestBenchScale: one real weftd with N simulated peers, at each of
// WEFT_BENCH_SIZES (default 100, 500, 1000, 2000, 5000): time to program
// every peer from an empty kernel (weftd's writes beside ip -batch +
// bridge -batch writing the same entries in the same run), weftd's RSS
// (beside its own with no peers), CPU per idle resync (beside iproute2
// reading the same tables), and one lease change in etcd → its FDB entry
// in the kernel (median of 9, beside the etcd write alone; goal < 20 ms).
// make bench-scale adds 10 000 peers. The points also go to
// $WEFT_BENCH_OUT (docs/scale.md's model).
func TestBenchScale(t *testing.T) {
	s := newScaleNode(t)
	ctx := t.Context()
	if err := s.n.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // settle (first resyncs, gossip) before reading RSS
	rss0, err := s.n.Proc().RSS()
	if err != nil {
		t.Fatal(err)
	}
	anon0 := rssAnon(t, s.n.Proc().PID)
	for _, peers := range scaleSizes(t) {
		s.grow(ctx, peers)
		total, writes := s.programFromEmpty(peers)
		ref := s.refProgram(peers)
		if err := s.n.WaitReady(ctx, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		rss, err := s.n.Proc().RSS()
		if err != nil {
			t.Fatal(err)
		}
		anon := rssAnon(t, s.n.Proc().PID)
		heap, goal := s.metric(ctx, "go_memstats_heap_inuse_bytes"), s.metric(ctx, "go_memstats_next_gc_bytes")
		stopRSS := sampleRSS(s.n.Proc().PID)
		cpu, cpuRef := s.idleResyncCPU(ctx)
		peak, peakAnon := stopRSS()
		var applied, writesOne []float64
		for k := range 9 {
			time.Sleep(300 * time.Millisecond) // a quiet spell: no debounce wait
			a, w := s.oneChange(ctx, (k*997)%peers)
			applied = append(applied, msOf(a))
			writesOne = append(writesOne, msOf(w))
		}
		row := func(figure, value, ref, note string) {
			benchRow(fmt.Sprintf("weftd, %d peers: %s", peers, figure), value, ref, note)
		}
		row("program from empty (kernel writes)", fmt.Sprintf("%.0f ms", msOf(writes)), fmt.Sprintf("ip+bridge -batch, same entries: %.0f ms", msOf(ref)),
			fmt.Sprintf("%.2fx; weftd start → last route %.0f ms", msOf(writes)/msOf(ref), msOf(total)))
		row("RSS", fmt.Sprintf("%.1f MiB (anon %.1f, file %.1f)", mib(rss), mib(anon), mib(rss-anon)),
			fmt.Sprintf("weftd with no peers: %.1f MiB (anon %.1f, file %.1f)", mib(rss0), mib(anon0), mib(rss0-anon0)),
			fmt.Sprintf("%.2fx (goal at 5000: < 64 MiB); file: the binary's pages; Go heap in use %.1f MiB, next GC at %.1f MiB",
				float64(rss)/float64(rss0), heap/(1<<20), goal/(1<<20)))
		row("RSS, highest over 5 idle resyncs", fmt.Sprintf("%.1f MiB (anon %.1f)", mib(peak), mib(peakAnon)),
			fmt.Sprintf("the reading above: %.1f MiB (anon %.1f)", mib(rss), mib(anon)), "goal at 5000: < 64 MiB; read every 50 ms")
		row("CPU per idle resync", fmt.Sprintf("%.1f ms", msOf(cpu)), fmt.Sprintf("ip/bridge reading the 3 tables: %.1f ms", msOf(cpuRef)),
			fmt.Sprintf("%.2fx", msOf(cpu)/msOf(cpuRef)))
		row("one lease change → kernel (median of 9)", fmt.Sprintf("%.1f ms (max %.1f)", median(applied), slices.Max(applied)),
			fmt.Sprintf("the etcd write alone: %.1f ms", median(writesOne)), "goal < 20 ms")
		for _, p := range []e2etest.BenchPoint{
			{Series: "weftd program from empty (kernel writes)", Size: float64(peers), Value: msOf(writes), Unit: "ms", Ref: "ip -batch + bridge -batch", RefValue: msOf(ref)},
			{Series: "weftd start to last route", Size: float64(peers), Value: msOf(total), Unit: "ms"},
			{Series: "weftd RSS (one node, VXLAN)", Size: float64(peers), Value: mib(rss), Unit: "MiB", Ref: "weftd with no peers", RefValue: mib(rss0)},
			{Series: "weftd highest RSS over 5 idle resyncs (one node, VXLAN)", Size: float64(peers), Value: mib(peak), Unit: "MiB", Ref: "weftd with no peers", RefValue: mib(rss0)},
			{Series: "weftd anonymous RSS (one node, VXLAN)", Size: float64(peers), Value: mib(anon), Unit: "MiB", Ref: "weftd with no peers", RefValue: mib(anon0)},
			{Series: "weftd CPU per idle resync", Size: float64(peers), Value: msOf(cpu), Unit: "ms", Ref: "iproute2 reading the 3 tables", RefValue: msOf(cpuRef)},
			{Series: "one lease change to kernel (median)", Size: float64(peers), Value: median(applied), Unit: "ms", Ref: "the etcd write alone", RefValue: median(writesOne)},
		} {
			if err := e2etest.WriteBenchPoint(p); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// scaleSizes returns the numbers of peers: $WEFT_BENCH_SIZES
// (comma-separated) or 100, 500, 1000, 2000, 5000, and 10 000 with
// make bench-scale.
func scaleSizes(t *testing.T) []int {
	v := os.Getenv("WEFT_BENCH_SIZES")
	if v == "" {
		if os.Getenv(e2etest.BenchScaleEnv) != "" {
			return []int{100, 500, 1000, 2000, 5000, 10000}
		}
		return []int{100, 500, 1000, 2000, 5000}
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 20000 || (len(out) > 0 && n < out[len(out)-1]) {
			t.Fatalf("WEFT_BENCH_SIZES: %q is not an ascending list of numbers of peers from 1 to 20000", v)
		}
		out = append(out, n)
	}
	return out
}

// TestBenchScaleLimits (make bench-scale only): what the
// kernel's limits do to weft's entries at 5000 and 10 000 peers. The
// neighbour table's thresholds (gc_thresh1/2/3, gc_interval) exist only
// in the initial network namespace and hold for every namespace; this
// reads them there and changes nothing. weft's neighbours are permanent,
// which the kernel neither garbage-collects nor counts against
// gc_thresh3: the test checks that every entry is programmed, that all
// are still there after two garbage-collection intervals, and that the
// node can still add a dynamic (ARP) entry beside them.
func TestBenchScaleLimits(t *testing.T) {
	e2etest.RequireBenchScale(t) // two garbage-collection intervals at each size: minutes
	s := newScaleNode(t)
	ctx := t.Context()
	sysctl := func(name string) int {
		b, err := os.ReadFile("/proc/sys/net/ipv4/neigh/default/" + name)
		if err != nil {
			t.Fatal(err)
		}
		v, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	th1, th2, th3, gcInterval := sysctl("gc_thresh1"), sysctl("gc_thresh2"), sysctl("gc_thresh3"), sysctl("gc_interval")
	t.Logf("host neighbour table: gc_thresh1 %d, gc_thresh2 %d, gc_thresh3 %d, gc_interval %d s", th1, th2, th3, gcInterval)
	count := func() (routes, neighs, fdb int) {
		k := readTables(t, s.h, s.n.VXLANDeviceName())
		return k[0], k[1], k[2]
	}
	for _, peers := range []int{5000, 10000} {
		s.grow(ctx, peers)
		total, _ := s.programFromEmpty(peers)
		r, n, f := count()
		if r != peers || n != peers || f != peers {
			t.Fatalf("%d peers: %d routes, %d neighbours, %d FDB entries programmed", peers, r, n, f)
		}
		wait := 2*time.Duration(gcInterval)*time.Second + 5*time.Second
		time.Sleep(wait)
		r2, n2, f2 := count()
		dyn := exec.Command("ip", "-n", s.n.NS.Name, "neigh", "replace", "198.18.0.250", "lladdr", "02:00:00:00:00:fa", "dev", "eth0", "nud", "reachable")
		out, err := dyn.CombinedOutput()
		dynamic := "a dynamic ARP entry can still be added"
		if err != nil {
			dynamic = fmt.Sprintf("adding a dynamic ARP entry failed: %v: %s", err, strings.TrimSpace(string(out)))
		}
		rss, _ := s.n.Proc().RSS()
		benchRow(fmt.Sprintf("kernel tables, %d peers (neighbours > gc_thresh3 %d)", peers, th3),
			fmt.Sprintf("%d/%d/%d routes/neighbours/FDB", r2, n2, f2),
			fmt.Sprintf("programmed: %d/%d/%d", r, n, f),
			fmt.Sprintf("after %s (2 GC intervals) none collected: %t; %s; weftd start → last route %.0f ms, RSS %.1f MiB",
				wait, r2 == peers && n2 == peers && f2 == peers, dynamic, msOf(total), mib(rss)))
		if err := e2etest.WriteBenchPoint(e2etest.BenchPoint{
			Series: "permanent neighbours kept after 2 GC intervals", Size: float64(peers), Value: float64(n2), Unit: "entries",
			Ref: "gc_thresh3 (host-wide)", RefValue: float64(th3),
		}); err != nil {
			t.Fatal(err)
		}
		if r2 != peers || n2 != peers || f2 != peers || err != nil {
			t.Errorf("%d peers: after %s: %d routes, %d neighbours, %d FDB entries; %s", peers, wait, r2, n2, f2, dynamic)
		}
	}
}

// readTables counts weft's routes, the permanent neighbours and the FDB
// entries with a destination on dev.
func readTables(t *testing.T, h *netlink.Handle, dev string) [3]int {
	l, err := h.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := backend.ListOwnRoutes(h)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := backend.NeighList(h, l.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	fdb, err := backend.NeighList(h, l.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		t.Fatal(err)
	}
	var out [3]int
	out[0] = len(rs)
	for _, n := range ns {
		if n.State&netlink.NUD_PERMANENT != 0 {
			out[1]++
		}
	}
	for _, n := range fdb {
		if n.IP != nil {
			out[2]++
		}
	}
	return out
}
