// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build bench && linux

package cni_test

import (
	"bufio"
	"context"
	"fmt"
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

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/cni"
	"github.com/weftnet/weft/e2e/netnstest"
)

// TestBenchCNI compares the weft plugin with the reference bridge +
// host-local plugins (Debian's containernetworking-plugins) on the same
// node namespace in the same run, interleaved, through libcni as a runtime
// calls them: ADD and DEL latency (median, p95) and pods per second,
// sequentially and with 2 workers. It also measures the floor of an ADD (a
// no-op skel plugin through libcni plus cni.KernelAdd), the kernel's own
// cost of creating and deleting a veth pair into a pod namespace, an empty
// Go program's run, and breaks weft's ADD down into its steps.
func TestBenchCNI(t *testing.T) {
	netnstest.SkipUnlessRoot(t)
	for _, p := range []string{"bridge", "host-local"} {
		if _, err := os.Stat(filepath.Join(debianCNIDir, p)); err != nil {
			t.Skipf("skipping: reference plugin %s/%s missing (apt-get install containernetworking-plugins)", debianCNIDir, p)
		}
	}
	for _, dual := range []bool{false, true} {
		name := "ipv4"
		if dual {
			name = "dual-stack"
		}
		t.Run(name, func(t *testing.T) { benchCNI(t, name, dual) })
	}
}

func benchCNI(t *testing.T, variant string, dual bool) {
	e := newEnv(t)
	v4only := defaultSubnet
	v4only.IPv6Network, v4only.IPv6Subnet = netip.Prefix{}, netip.Prefix{}
	if !dual {
		e.writeSubnet(v4only)
	}
	// Equivalent configs: IPv4 pod subnet /24, gateway on the bridge,
	// default route, hairpin, MTU 1450, no masquerade (weftd does it with
	// one nftables table; ipMasq in bridge would add per-pod iptables
	// chains and double its cost). Debian's plugins accept at most 1.0.0.
	weft := e.confList("1.0.0", e.weftConf(nil))
	ref := e.confList("1.0.0", map[string]any{
		"type": "bridge", "bridge": "rb" + netnstest.Suffix(6), "isGateway": true, "isDefaultGateway": true,
		"ipMasq": false, "hairpinMode": true, "mtu": 1450,
		"ipam": map[string]any{
			"type": "host-local", "dataDir": filepath.Join(e.dir, "host-local"),
			"ranges": func() [][]map[string]string {
				r := [][]map[string]string{{{"subnet": "10.245.3.0/24", "gateway": "10.245.3.1"}}}
				if dual {
					r = append(r, []map[string]string{{"subnet": "fd10:245:0:3::/64", "gateway": "fd10:245:0:3::1"}})
				}
				return r
			}(),
		},
	})
	// The floor: the smallest plugin built on skel (no kernel or file
	// work), run the same way, plus the kernel requests of one pod sent
	// from this warm process (cni.KernelAdd). No Go plugin on skel can
	// beat their sum here.
	floorDir := filepath.Join(e.dir, "floor-bin")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(floorDir, "skelfloor"), "./testdata/skelfloor")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build testdata/skelfloor: %v\n%s", err, out)
	}
	floorCNI := libcni.NewCNIConfigWithCacheDir([]string{floorDir}, filepath.Join(e.dir, "floor-cache"),
		&invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}, PluginDecoder: version.PluginDecoder{}})
	floor := e.confList("1.0.0", map[string]any{"type": "skelfloor", "dualStack": dual})

	// The test build (cnitesthook) with and without anti-spoofing
	// (WEFT_CNI_TEST_NO_ANTISPOOF=1: the plugin as it was before it), to
	// show what anti-spoofing costs beside its absence in the same run.
	hookCNI := libcni.NewCNIConfigWithCacheDir([]string{hookDir, debianCNIDir}, filepath.Join(e.dir, "hook-cache"),
		&invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}, PluginDecoder: version.PluginDecoder{}})

	plugins := []struct {
		name    string
		cni     *libcni.CNIConfig
		l       *libcni.NetworkConfigList
		noSpoof bool
	}{
		{"weft", e.cni, weft, false}, {"bridge+host-local", e.cni, ref, false}, {"skel floor", floorCNI, floor, false},
		{spoofOn, hookCNI, weft, false}, {spoofOff, hookCNI, weft, true},
	}
	// withSpoof runs fn with the test build's anti-spoofing switch set for
	// p (the plugin inherits the environment through libcni).
	withSpoof := func(noSpoof bool, fn func()) {
		if noSpoof {
			os.Setenv(noAntispoofEnv, "1")
			defer os.Unsetenv(noAntispoofEnv)
		}
		fn()
	}

	// The kernel-only deletes use a veth set up as a pod's would be,
	// including its host end on a bridge (with the gateway addresses):
	// removing a bridge port is part of every plugin's DEL.
	kernBridge := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "kb" + netnstest.Suffix(6), TxQLen: -1}}
	if err := e.nl.LinkAdd(kernBridge); err != nil {
		t.Fatal(err)
	}
	for _, step := range []func() error{
		func() error { return e.nl.LinkSetUp(kernBridge) },
		func() error { return e.nl.AddrAdd(kernBridge, &netlink.Addr{IPNet: ptr(mustIPNet("10.246.0.1/24"))}) },
		func() error {
			return e.nl.AddrAdd(kernBridge, &netlink.Addr{IPNet: ptr(mustIPNet("fd10:246::1/64")), Flags: unix.IFA_F_NODAD})
		},
	} {
		if err := step(); err != nil {
			t.Fatalf("kernel bench bridge: %v", err)
		}
	}

	// Warm up: bridges exist, binaries are in the page cache.
	pods := []*netnstest.NS{netnstest.NewNS(t, "weftbench"), netnstest.NewNS(t, "weftbench")}
	for _, p := range plugins {
		withSpoof(p.noSpoof, func() {
			for i := range 3 {
				cycle(t, e, p.cni, p.l, fmt.Sprintf("warm-%d", i), pods[0])
			}
		})
	}
	podAddrs := []netip.Prefix{netip.MustParsePrefix("10.246.0.2/24")}
	podGWs := []netip.Addr{netip.MustParseAddr("10.246.0.1")}
	if dual {
		podAddrs = append(podAddrs, netip.MustParsePrefix("fd10:246::2/64"))
		podGWs = append(podGWs, netip.MustParseAddr("fd10:246::1"))
	}

	// Sequential, interleaved: each round runs one ADD/DEL cycle of each
	// plugin, one bare veth create/delete, and the kernel half of the
	// floor, in rotating order.
	const rounds = 120
	add := map[string][]time.Duration{}
	del := map[string][]time.Duration{}
	var vethAdd, vethDel, podVethDel, kernelAdd []time.Duration
	seqWall := map[string]time.Duration{}
	for r := range rounds {
		for k := range len(plugins) + 1 {
			if i := (r + k) % (len(plugins) + 1); i < len(plugins) {
				p := plugins[i]
				var a, d time.Duration
				withSpoof(p.noSpoof, func() { a, d = cycle(t, e, p.cni, p.l, fmt.Sprintf("seq-%d", r), pods[0]) })
				add[p.name] = append(add[p.name], a)
				del[p.name] = append(del[p.name], d)
				seqWall[p.name] += a + d
				continue
			}
			a, d := bareVeth(t, e.nl, pods[1], false, false, nil)
			vethAdd = append(vethAdd, a)
			vethDel = append(vethDel, d)
			_, d = bareVeth(t, e.nl, pods[1], true, dual, kernBridge)
			podVethDel = append(podVethDel, d)
			kernelAdd = append(kernelAdd, kernelFloorAdd(t, e, kernBridge.Name, pods[1], podAddrs, podGWs))
		}
	}

	// Two workers, each on its own pod namespace; short blocks of the
	// plugins alternate, in rotating order, so that a burst of another
	// tenant's load falls on every plugin's blocks alike.
	const perWorker, blocks = 5, 10
	add2 := map[string][]time.Duration{}
	del2 := map[string][]time.Duration{}
	wall2 := map[string]time.Duration{}
	// The kernel's delete with two workers too, in a block after each
	// round of plugin blocks: veth deletes contend for the same kernel
	// lock whoever issues them, so the 2-worker DELs are also compared
	// with pod-like veths deleted two at a time.
	var podVethDel2 []time.Duration
	kernelBlock := func() {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for w := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				nl := e.node.Netlink(t)
				defer nl.Close()
				for range perWorker {
					_, d := bareVeth(t, nl, pods[w], true, dual, kernBridge)
					mu.Lock()
					podVethDel2 = append(podVethDel2, d)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	parPlugins := []int{0, 1, 3, 4} // weft, the reference, the test build with and without anti-spoofing
	for b := range blocks {
		for i := range parPlugins {
			p := plugins[parPlugins[(b+i)%len(parPlugins)]]
			var mu sync.Mutex
			var wg sync.WaitGroup
			if p.noSpoof {
				os.Setenv(noAntispoofEnv, "1")
			}
			start := time.Now()
			for w := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := range perWorker {
						a, d := cycle(t, e, p.cni, p.l, fmt.Sprintf("par-%d-%d-%d", b, w, j), pods[w])
						mu.Lock()
						add2[p.name] = append(add2[p.name], a)
						del2[p.name] = append(del2[p.name], d)
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			wall2[p.name] += time.Since(start)
			os.Unsetenv(noAntispoofEnv)
		}
		kernelBlock()
	}

	refName := plugins[1].name
	row := func(fig string, w, r float64, unit, note string) {
		fmt.Printf("BENCH| %s, %s | %.1f %s | %s: %.1f %s | %s\n", fig, variant, w, unit, refName, r, unit, note)
	}
	ratio := func(r, w float64) string { return fmt.Sprintf("%.2fx", r/w) }
	for _, m := range []struct {
		what    string
		add     map[string][]time.Duration
		del     map[string][]time.Duration
		kernDel []time.Duration // deletes of pod-like veths, same concurrency
	}{{"sequential", add, del, podVethDel}, {"2 workers", add2, del2, podVethDel2}} {
		wa, ra := quantile(m.add["weft"], 0.5), quantile(m.add[refName], 0.5)
		row("CNI ADD median ("+m.what+")", ms(wa), ms(ra), "ms", "reference/weft "+ratio(ms(ra), ms(wa))+" (target >= 3x)")
		row("CNI ADD p95 ("+m.what+")", ms(quantile(m.add["weft"], 0.95)), ms(quantile(m.add[refName], 0.95)), "ms", "reference/weft "+ratio(ms(quantile(m.add[refName], 0.95)), ms(quantile(m.add["weft"], 0.95))))
		wd, rd := quantile(m.del["weft"], 0.5), quantile(m.del[refName], 0.5)
		row("CNI DEL median ("+m.what+")", ms(wd), ms(rd), "ms", fmt.Sprintf("weft/bare veth delete %.2fx (target <= 1.25x); weft/delete of a veth configured like a pod, %s %.2fx",
			ms(wd)/ms(quantile(vethDel, 0.5)), m.what, ms(wd)/ms(quantile(m.kernDel, 0.5))))
		row("CNI DEL p95 ("+m.what+")", ms(quantile(m.del["weft"], 0.95)), ms(quantile(m.del[refName], 0.95)), "ms", "")
	}
	// Anti-spoofing's cost: the same test build with and without it.
	for _, m := range []struct {
		what     string
		add, del map[string][]time.Duration
	}{{"sequential", add, del}, {"2 workers", add2, del2}} {
		for _, v := range []struct {
			verb string
			ds   map[string][]time.Duration
		}{{"ADD", m.add}, {"DEL", m.del}} {
			on, off := ms(quantile(v.ds[spoofOn], 0.5)), ms(quantile(v.ds[spoofOff], 0.5))
			fmt.Printf("BENCH| CNI %s median with anti-spoofing (%s), %s | %.1f ms | without anti-spoofing, same test build and run: %.1f ms | %.2fx (goal: unchanged within noise); p95 %.1f vs %.1f ms\n",
				v.verb, m.what, variant, on, off, on/off, ms(quantile(v.ds[spoofOn], 0.95)), ms(quantile(v.ds[spoofOff], 0.95)))
		}
	}
	// The floor of an ADD and what it allows.
	wa, ra := ms(quantile(add["weft"], 0.5)), ms(quantile(add[refName], 0.5))
	sk, kn := ms(quantile(add["skel floor"], 0.5)), ms(quantile(kernelAdd, 0.5))
	fl := sk + kn
	fmt.Printf("BENCH| CNI ADD floor: skel plugin doing nothing, via libcni (sequential), %s | %.1f ms | - | testdata/skelfloor: process start, Go runtime, skel, JSON in and out\n", variant, sk)
	fmt.Printf("BENCH| CNI ADD floor: kernel work of one pod from a warm process (sequential), %s | %.1f ms | - | bridge lookup, veth pair on the bridge into the pod, hairpin, pod socket, up+address+route\n", variant, kn)
	row("CNI ADD floor: the two above (sequential)", fl, ra, "ms", fmt.Sprintf("reference/floor %.2fx: the most any Go plugin on skel can reach here (target 3x); weft/floor %.2fx", ra/fl, wa/fl))
	podsPerSec := func(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }
	row("pods/s ADD+DEL (sequential)", podsPerSec(rounds, seqWall["weft"]), podsPerSec(rounds, seqWall[refName]), "pods/s",
		"weft/reference "+ratio(podsPerSec(rounds, seqWall["weft"]), podsPerSec(rounds, seqWall[refName])))
	row("pods/s ADD+DEL (2 workers)", podsPerSec(2*perWorker*blocks, wall2["weft"]), podsPerSec(2*perWorker*blocks, wall2[refName]), "pods/s",
		"weft/reference "+ratio(podsPerSec(2*perWorker*blocks, wall2["weft"]), podsPerSec(2*perWorker*blocks, wall2[refName])))
	fmt.Printf("BENCH| bare veth create into a pod netns, median (kernel), %s | %.1f ms | - | netlink, same run, no process start\n", variant, ms(quantile(vethAdd, 0.5)))
	fmt.Printf("BENCH| bare veth delete, median (kernel), %s | %.1f ms | - | p95 %.1f ms; a fresh pair, down, no addresses\n", variant, ms(quantile(vethDel, 0.5)), ms(quantile(vethDel, 0.95)))
	fmt.Printf("BENCH| delete of a veth configured like a pod, median (kernel), %s | %.1f ms | - | p95 %.1f ms; on a bridge, up, pod addresses and routes: the floor of any DEL\n", variant, ms(quantile(podVethDel, 0.5)), ms(quantile(podVethDel, 0.95)))
	fmt.Printf("BENCH| delete of a veth configured like a pod, 2 workers, median (kernel), %s | %.1f ms | - | p95 %.1f ms; two deletes at a time, as in the 2-worker DELs\n", variant, ms(quantile(podVethDel2, 0.5)), ms(quantile(podVethDel2, 0.95)))

	breakdown(t, e, pods[0], variant)
}

// cycle runs one ADD and one DEL of container id in pod through c and
// returns their latencies.
// Names of the test build's variants in the tables, and the switch that
// turns its anti-spoofing off (see hook_cnitesthook.go).
const (
	spoofOn        = "weft test build"
	spoofOff       = "weft test build without anti-spoofing"
	noAntispoofEnv = "WEFT_CNI_TEST_NO_ANTISPOOF"
)

func cycle(t *testing.T, e *testEnv, c *libcni.CNIConfig, l *libcni.NetworkConfigList, id string, pod *netnstest.NS) (add, del time.Duration) {
	t.Helper()
	rt := runtimeConf(id, pod)
	err := e.inNode(func() error {
		start := time.Now()
		if _, err := c.AddNetworkList(context.Background(), l, rt); err != nil {
			return fmt.Errorf("ADD %s: %w", l.Plugins[0].Network.Type, err)
		}
		add = time.Since(start)
		start = time.Now()
		if err := c.DelNetworkList(context.Background(), l, rt); err != nil {
			return fmt.Errorf("DEL %s: %w", l.Plugins[0].Network.Type, err)
		}
		del = time.Since(start)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return add, del
}

// bareVeth creates a veth pair with one end in pod and deletes it, the
// kernel work every plugin must do, and returns both durations. When
// configured, the host end first joins master, both ends are brought up
// and the pod end gets an IPv4 address and default route (and with ipv6 an
// IPv6 address and default route too), as a pod has; the create time
// covers only the pair.
func bareVeth(t *testing.T, nl *netlink.Handle, pod *netnstest.NS, configured, ipv6 bool, master netlink.Link) (add, del time.Duration) {
	t.Helper()
	v := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: "bv" + netnstest.Suffix(8), TxQLen: -1},
		PeerName:  "eth0", PeerTxQLen: -1, PeerNamespace: netlink.NsFd(int(pod.Handle)),
	}
	start := time.Now()
	if err := nl.LinkAdd(v); err != nil {
		t.Fatalf("bare veth: %v", err)
	}
	add = time.Since(start)
	if configured {
		ph := pod.Netlink(t)
		defer ph.Close()
		l, err := ph.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		steps := []func() error{
			func() error { return nl.LinkSetMaster(v, master) },
			func() error { return nl.LinkSetUp(v) },
			func() error { return ph.LinkSetUp(l) },
			func() error { return ph.AddrAdd(l, &netlink.Addr{IPNet: ptr(mustIPNet("10.246.0.2/24"))}) },
			func() error {
				return ph.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP("10.246.0.1")})
			},
		}
		if ipv6 {
			steps = append(steps,
				func() error {
					return ph.AddrAdd(l, &netlink.Addr{IPNet: ptr(mustIPNet("fd10:246::2/64")), Flags: unix.IFA_F_NODAD})
				},
				func() error {
					return ph.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP("fd10:246::1")})
				})
		}
		for _, step := range steps {
			if err := step(); err != nil {
				t.Fatalf("configure bare veth: %v", err)
			}
		}
	}
	start = time.Now()
	if err := nl.LinkDel(v); err != nil {
		t.Fatalf("bare veth delete: %v", err)
	}
	return add, time.Since(start)
}

// kernelFloorAdd times cni.KernelAdd from the node's namespace for a pod
// end "eth0" in pod on bridge, then deletes the pair (not timed).
func kernelFloorAdd(t *testing.T, e *testEnv, bridge string, pod *netnstest.NS, addrs []netip.Prefix, gws []netip.Addr) time.Duration {
	t.Helper()
	host := "kf" + netnstest.Suffix(8)
	var d time.Duration
	err := e.inNode(func() error {
		var err error
		d, err = cni.KernelAdd(bridge, host, "eth0", int(pod.Handle), 1450, addrs, gws)
		return err
	})
	if err != nil {
		t.Fatalf("kernel floor ADD: %v", err)
	}
	if err := e.nl.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host}}); err != nil {
		t.Fatalf("delete the kernel floor's veth: %v", err)
	}
	return d
}

// breakdown runs ADDs of the test-hook build directly (no libcni), which
// append the time of each step to a trace file, and prints where the time
// goes: "exec" (fork, exec, Go runtime and package init) is timed from the
// parent's start (WEFT_CNI_TEST_T0), "exit" is the wall time no step
// accounts for (skel's checks after ADD, process exit, the parent's wait).
// ADDs with and without anti-spoofing alternate, so that each step shows
// beside its figure without it.
func breakdown(t *testing.T, e *testEnv, pod *netnstest.NS, variant string) {
	const n = 40
	trace := filepath.Join(e.dir, "trace")
	type run struct {
		steps map[string][]time.Duration
		walls []time.Duration
	}
	runs := [2]*run{{steps: map[string][]time.Duration{}}, {steps: map[string][]time.Duration{}}} // with, without
	var order []string
	for i := range 2 * n {
		noSpoof := (i+i/2)%2 == 1 // with, without, without, with, ...
		rn := runs[0]
		if noSpoof {
			rn = runs[1]
		}
		if err := os.Remove(trace); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		id := fmt.Sprintf("bd-%d", i)
		env := append(cniEnv("ADD", id, "/run/netns/"+pod.Name, "eth0", hookDir), "WEFT_CNI_TEST_TRACE="+trace)
		delEnv := cniEnv("DEL", id, "/run/netns/"+pod.Name, "eth0", hookDir)
		if noSpoof {
			env, delEnv = append(env, noAntispoofEnv+"=1"), append(delEnv, noAntispoofEnv+"=1")
		}
		var wall time.Duration
		if err := e.inNode(func() error {
			cmd := exec.Command(filepath.Join(hookDir, "weft"))
			cmd.Stdin = strings.NewReader(string(e.weftJSON("1.0.0", nil)))
			start := time.Now()
			cmd.Env = append(env, fmt.Sprintf("WEFT_CNI_TEST_T0=%d", start.UnixNano()))
			out, err := cmd.Output()
			wall = time.Since(start)
			if err != nil {
				return fmt.Errorf("ADD: %v %s", err, out)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		rn.walls = append(rn.walls, wall)
		f, err := os.Open(trace)
		if err != nil {
			t.Fatal(err)
		}
		var sum time.Duration
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := sc.Text()
			i := strings.LastIndexByte(line, ' ')
			if i < 0 {
				continue
			}
			name, secs := line[:i], line[i+1:]
			s, _ := strconv.ParseFloat(secs, 64)
			d := time.Duration(s * float64(time.Second))
			if !slices.Contains(order, name) {
				order = append(order, name)
			}
			rn.steps[name] = append(rn.steps[name], d)
			if !strings.HasSuffix(name, "(parallel)") {
				sum += d
			}
		}
		f.Close()
		rn.steps["exit"] = append(rn.steps["exit"], wall-sum)
		out, err := e.execPlugin(hookDir, delEnv, e.weftJSON("1.0.0", nil))
		if err != nil {
			t.Fatalf("DEL: %v %s", err, out)
		}
	}
	desc := map[string]string{
		"exec":                  "fork, exec, Go runtime start and package init, until the plugin's package initialises",
		"exit":                  "the rest of the wall time: skel's netns check after ADD, process exit, the parent's wait",
		"skel":                  "main and skel: read the environment and stdin, check the config's version",
		"parse":                 "decode and check the network config",
		"subnet-file":           "open the netns, read the subnet file",
		"bridge":                "open two netlink sockets, read the forwarding and bridge-nf-call sysctls (written only when off), ensure the bridge (1 get, 1 address dump)",
		"ipam (parallel)":       "flock, read the store, write and rename the record, unlock; runs beside bridge and pod socket, not in the total",
		"veth":                  "one request creates the pair up, on the bridge, its peer in the pod; one sets alias and hairpin (made once the record is stored)",
		"ipam wait":             "wait for the allocation's record, which the veth waits for",
		"anti-spoofing record":  "write the pod record (temporary file, rename) (not run without anti-spoofing)",
		"anti-spoofing entries": "open a netfilter socket, add the pod's entries in one batch, close it (not run without anti-spoofing)",
		"pod socket":            "open a netlink socket in the pod's namespace (setns there and back)",
		"container":             "one batch in the pod: link up, addresses, default routes",
		"result":                "build, encode and print the result",
		"cleanup":               "close the sockets and the pod's namespace",
	}
	with, without := runs[0], runs[1]
	fmt.Printf("BENCH| weft ADD direct exec, median, %s | %.2f ms | without anti-spoofing, alternating: %.2f ms | %.2fx; %d runs each of the test build without libcni; steps below are medians\n",
		variant, ms(quantile(with.walls, 0.5)), ms(quantile(without.walls, 0.5)), ms(quantile(with.walls, 0.5))/ms(quantile(without.walls, 0.5)), n)
	fmt.Printf("BENCH| empty static Go program, run to exit, median, %s | %.2f ms | - | the per-process floor of any Go plugin (weft: 1 process per ADD, bridge+host-local: 2)\n", variant, ms(emptyGoFloor(t, e)))
	for _, s := range append(order, "exit") {
		fmt.Printf("BENCH| weft ADD step: %s, %s | %.2f ms | without anti-spoofing: %.2f ms | %s\n", s, variant,
			ms(quantile(with.steps[s], 0.5)), ms(quantile(without.steps[s], 0.5)), desc[s])
	}
}

// emptyGoFloor builds a static Go program that does nothing and returns
// the median wall time of running it from the node namespace: what any Go
// plugin pays per process before its own work (weft runs one process per
// ADD, bridge + host-local two).
func emptyGoFloor(t *testing.T, e *testEnv) time.Duration {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"go.mod":  "module empty\n\ngo 1.26\n",
		"main.go": "package main\n\nfunc main() {}\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "empty")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the empty program: %v\n%s", err, out)
	}
	var walls []time.Duration
	if err := e.inNode(func() error {
		for range 60 {
			cmd := exec.Command(bin)
			start := time.Now()
			if err := cmd.Run(); err != nil {
				return err
			}
			walls = append(walls, time.Since(start))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return quantile(walls, 0.5)
}

func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q * float64(len(s)-1))
	return s[i]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
