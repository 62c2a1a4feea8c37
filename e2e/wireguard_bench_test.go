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
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/e2etest"
)

// TestBenchWireGuardWeftd: the memory of a real weftd running the
// userspace WireGuard device under a saturating TCP stream (iperf3, 3 s),
// beside Debian's wireguard-go between the same two node namespaces, in
// interleaved rounds. backend/wireguard's TestBenchWireGuardMemory
// measures the device alone in a test binary; this is the whole daemon,
// whose binary (etcd and Kubernetes clients, gossip, nftables) maps many
// more file pages than wireguard-go's: RSS is reported split into
// anonymous and file pages so that the device's share and the binary's
// are told apart. weftd is measured as it runs and with GOGC=100 in its
// environment, which the device leaves alone: the collector as it ran
// before the device lowered it while busy (release_linux.go).
//
//	node1 ns                                 node2 ns
//	weftd (wg<n>, 10.244.x.0)  ◄── UDP ──►  weftd (wg<n>, 10.244.y.0)
//	wireguard-go (10.99.0.1)   ◄── UDP ──►  wireguard-go (10.99.0.2), port 51821
func TestBenchWireGuardWeftd(t *testing.T) {
	for _, tool := range []string{"iperf3", "wireguard-go", "wg"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt packages iperf3, wireguard-go, wireguard-tools; make bench installs them)", tool)
		}
	}
	c := e2etest.NewCluster(t, e2e.Options{Nodes: 2, Backend: "wireguard"})
	n1, n2 := c.Nodes()[0], c.Nodes()[1]
	sf, err := n2.SubnetFile()
	if err != nil {
		t.Fatal(err)
	}
	weftDst := sf.Subnet.Masked().Addr() // node2's address on its WireGuard device

	suffix := strconv.Itoa(os.Getpid() % 100000)
	g1 := startWGGo(t, n1, "wgr1-"+suffix, netip.MustParseAddr("10.99.0.1"), sf.MTU)
	g2 := startWGGo(t, n2, "wgr2-"+suffix, netip.MustParseAddr("10.99.0.2"), sf.MTU)
	g1.connect(t, g2)
	g2.connect(t, g1)

	type run struct {
		bps        float64
		rss, anon  int64
		after, idl int64 // RSS 2 s after the load; before it
	}
	measure := func(dst netip.Addr, pids ...int) run {
		var r run
		r.idl = e2etest.MaxProcMemory(pids...).RSS
		var mu sync.Mutex
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				m := e2etest.MaxProcMemory(pids...)
				mu.Lock()
				r.rss, r.anon = max(r.rss, m.RSS), max(r.anon, m.Anon)
				mu.Unlock()
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}()
		// Right after a restart the first connection may race the
		// handshakes: try again a few times.
		var bps float64
		var err error
		for try := 0; try < 3; try++ {
			if bps, err = iperf(t, n1.NS, n2.NS, dst); err == nil {
				break
			}
			time.Sleep(time.Second)
		}
		close(stop)
		<-done
		if err != nil {
			t.Fatalf("iperf3 to %s: %v", dst, err)
		}
		r.bps = bps
		time.Sleep(2 * time.Second)
		r.after = e2etest.MaxProcMemory(pids...).RSS
		return r
	}
	// setEnv restarts both weftd with env unless they already run with it.
	var cur []string
	setEnv := func(env []string) {
		if slices.Equal(env, cur) {
			return
		}
		for _, n := range c.Nodes() {
			n.Env = env
			if err := n.Restart(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		cur = env
	}
	// weft as it runs; weft with GOGC=100 in its environment, which the
	// device leaves alone: the collector as before busy devices lowered
	// it; the reference.
	const (
		kWeft = iota
		kBefore
		kRef
		kinds
	)
	const rounds = 3
	var runs [kinds][]run
	for round := range rounds {
		for i := range kinds {
			switch k := (i + round) % kinds; k {
			case kWeft, kBefore:
				env := []string(nil)
				if k == kBefore {
					env = []string{"GOGC=100"}
				}
				setEnv(env)
				runs[k] = append(runs[k], measure(weftDst, n1.Proc().PID, n2.Proc().PID))
			case kRef:
				runs[k] = append(runs[k], measure(g2.addr, g1.pid, g2.pid))
			}
		}
		w, b, r := runs[kWeft][round], runs[kBefore][round], runs[kRef][round]
		t.Logf("round %d: weftd %.2f Gbit/s, RSS %d MiB (anonymous %d), before %d, after %d; with GOGC=100 %.2f Gbit/s, RSS %d MiB (anonymous %d); wireguard-go %.2f Gbit/s, RSS %d MiB (anonymous %d), before %d, after %d",
			round, w.bps/1e9, w.rss>>20, w.anon>>20, w.idl>>20, w.after>>20, b.bps/1e9, b.rss>>20, b.anon>>20, r.bps/1e9, r.rss>>20, r.anon>>20, r.idl>>20, r.after>>20)
	}
	weft, before, ref := runs[kWeft], runs[kBefore], runs[kRef]
	span := func(rs []run, f func(run) float64, format string) string {
		var vs []float64
		for _, r := range rs {
			vs = append(vs, f(r))
		}
		return fmt.Sprintf(format+"–"+format, slices.Min(vs), slices.Max(vs))
	}
	ratios := func(rs []run, f func(run) float64) string {
		var vs []float64
		for i := range rs {
			vs = append(vs, f(rs[i])/f(ref[i]))
		}
		return fmt.Sprintf("%.2f–%.2f×", slices.Min(vs), slices.Max(vs))
	}
	mib := func(f func(run) int64) func(run) float64 {
		return func(r run) float64 { return float64(f(r)) / (1 << 20) }
	}
	rss := mib(func(r run) int64 { return r.rss })
	anon := mib(func(r run) int64 { return r.anon })
	file := mib(func(r run) int64 { return r.rss - r.anon })
	after := mib(func(r run) int64 { return r.after })
	idle := mib(func(r run) int64 { return r.idl })
	gbit := func(r run) float64 { return r.bps / 1e9 }
	for _, v := range []struct {
		name string
		rs   []run
	}{{"", weft}, {", GOGC=100 (before)", before}} {
		benchRow("weftd with userspace WireGuard under load"+v.name+": RSS (anonymous + file pages), max of 2 nodes",
			fmt.Sprintf("%s MiB (%s + %s)", span(v.rs, rss, "%.0f"), span(v.rs, anon, "%.0f"), span(v.rs, file, "%.0f")),
			fmt.Sprintf("Debian wireguard-go, same run: %s MiB (%s + %s)", span(ref, rss, "%.0f"), span(ref, anon, "%.0f"), span(ref, file, "%.0f")),
			fmt.Sprintf("%s the RSS, %s the anonymous (per round, %d rounds)", ratios(v.rs, rss), ratios(v.rs, anon), rounds))
		benchRow("weftd with userspace WireGuard"+v.name+": throughput; RSS before and 2 s after the load",
			fmt.Sprintf("%s Gbit/s; %s, %s MiB", span(v.rs, gbit, "%.2f"), span(v.rs, idle, "%.0f"), span(v.rs, after, "%.0f")),
			fmt.Sprintf("Debian wireguard-go: %s Gbit/s; %s, %s MiB", span(ref, gbit, "%.2f"), span(ref, idle, "%.0f"), span(ref, after, "%.0f")),
			ratios(v.rs, gbit)+" the throughput")
	}
}

// wgGo is a Debian wireguard-go process in a node's namespace.
type wgGo struct {
	n    *e2e.Node
	name string
	pid  int
	key  wgtypes.Key
	addr netip.Addr
}

const wgGoPort = 51821

// startWGGo starts wireguard-go in n's namespace as device name, with a
// new key, listening on wgGoPort, up with address addr/32 and mtu.
func startWGGo(t *testing.T, n *e2e.Node, name string, addr netip.Addr, mtu int) *wgGo {
	t.Helper()
	g := &wgGo{n: n, name: name, addr: addr}
	var err error
	if g.key, err = wgtypes.GeneratePrivateKey(); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join("/var/run/wireguard", name+".sock")
	cmd := n.NS.Command(context.Background(), "wireguard-go", "-f", name)
	cmd.Env = append(os.Environ(), "LOG_LEVEL=error")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start wireguard-go: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		os.Remove(sock) // this process's socket only
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("wireguard-go socket %s did not appear", sock)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// ip netns exec normally execs wireguard-go; childPID also copes
	// with it running as a child.
	g.pid = childPID(t, cmd.Process.Pid)
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(g.key.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	nsRun(t, n, "wg", "set", name, "private-key", keyFile, "listen-port", strconv.Itoa(wgGoPort))
	nsRun(t, n, "ip", "link", "set", name, "mtu", strconv.Itoa(mtu), "up")
	nsRun(t, n, "ip", "addr", "add", addr.String()+"/32", "dev", name)
	return g
}

// connect makes o a peer of g, with a route to o's address.
func (g *wgGo) connect(t *testing.T, o *wgGo) {
	t.Helper()
	nsRun(t, g.n, "wg", "set", g.name, "peer", o.key.PublicKey().String(),
		"endpoint", netip.AddrPortFrom(o.n.IP, wgGoPort).String(), "allowed-ips", o.addr.String()+"/32")
	nsRun(t, g.n, "ip", "route", "add", o.addr.String()+"/32", "dev", g.name)
}

func nsRun(t *testing.T, n *e2e.Node, argv ...string) {
	t.Helper()
	if _, err := n.NS.Run(context.Background(), argv...); err != nil {
		t.Fatal(err)
	}
}

// childPID returns the PID of the program pid runs: pid itself when it
// has exec'd it, else its only child.
func childPID(t *testing.T, pid int) int {
	t.Helper()
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if strings.TrimSpace(string(comm)) == "wireguard-go" {
		return pid
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		t.Fatalf("children of %d: %v", pid, err)
	}
	f := strings.Fields(string(raw))
	if len(f) != 1 {
		t.Fatalf("process %d has children %v, want one", pid, f)
	}
	c, _ := strconv.Atoi(f[0])
	return c
}
