// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package wireguard

// The privileged tests run each node's backend in a child process that lives
// wholly inside the node's network namespace: the userspace device opens
// its UDP sockets and TUN from goroutines on any thread, so a test process
// that merely switches one thread would leak them into the root namespace.
// The child is this test binary re-executed (see TestMain) and forked from a
// thread switched into the node namespace, which the child inherits. It
// takes JSON requests on stdin and answers on stdout.
//
// Topology (N nodes; addresses from the benchmarking range):
//
//	            underlay ns: bridge br0
//	        ┌───────────┼─────────────┐
//	   vn1 ─┘      vn2 ─┘        vn3 ─┘
//	  eth0 198.18.0.1  eth0 198.18.0.2  eth0 198.18.0.3     (node ns i)
//	  <wg> 10.244.1.0/32 fd10:244:0:1::/128  ...            (helper process)
//	  pod0 10.244.1.1/24 ── eth0 10.244.1.2/24 (pod ns i)

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/e2e/netnstest"
)

const helperEnv = "WEFT_WG_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(runHelper(os.Stdin, os.Stdout))
	}
	goleak.VerifyTestMain(m)
}

// helperRequest is one request to the child.
type helperRequest struct {
	Op      string          `json:"op"` // setup, reconcile, freeosmemory, heap, flow, close
	Config  *helperConfig   `json:"config,omitempty"`
	Desired backend.Desired `json:"desired"`
	// Path, for heap, is where to write the heap profile ("": none).
	Path string `json:"path,omitempty"`
}

// helperConfig is the JSON form of Config (without the logger).
type helperConfig struct {
	Name                string     `json:"name"`
	ListenPort          int        `json:"listenPort"`
	MTU                 int        `json:"mtu"`
	PersistentKeepalive int        `json:"keepalive"`
	PublicIP            netip.Addr `json:"publicIP"`
	Iface               string     `json:"iface"`
	StateDir            string     `json:"stateDir"`
	PSKFile             string     `json:"pskFile"`
	Mode                string     `json:"mode"`
	DisableOffloads     bool       `json:"disableOffloads"`
	// MemoryLimit, when set, is applied with debug.SetMemoryLimit as
	// weftd does.
	MemoryLimit int64 `json:"memoryLimit"`
	// FlowBound, when set, replaces flowBound (negative: no bound).
	FlowBound int64 `json:"flowBound,omitempty"`
	// GCPercent, when set, is applied with debug.SetGCPercent.
	GCPercent int `json:"gcPercent,omitempty"`
	// BusyGCPercent, when set, replaces busyGCPercent (negative: 0, the
	// collector left alone).
	BusyGCPercent int `json:"busyGCPercent,omitempty"`
}

type helperResponse struct {
	Err     string         `json:"err,omitempty"`
	Attrs   backend.Attrs  `json:"attrs"`
	Result  backend.Result `json:"result"`
	Kernel  bool           `json:"kernel"`
	VnetHdr bool           `json:"vnetHdr"`
	// Elapsed is how long the backend took (setup, reconcile), timed in
	// the child.
	Elapsed time.Duration `json:"elapsed"`
	// Leaked lists goroutines left after close that were not there
	// before setup (close only).
	Leaked string `json:"leaked,omitempty"`
	// Forgiven is how often the userspace device's outbound and inbound
	// readers gave up waiting for progress (flow only).
	Forgiven [2]uint64 `json:"forgiven"`
	// Heap is the child's heap statistics (heap only).
	Heap *heapStats `json:"heap,omitempty"`
}

// heapStats is a few of the child's runtime.MemStats, in bytes.
type heapStats struct {
	HeapInuse, HeapIdle, HeapReleased, NextGC, Sys uint64
	NumGC                                          uint32
}

// runHelper is the child's main loop.
func runHelper(in io.Reader, out io.Writer) int {
	log := logrus.New()
	log.Out = os.Stderr
	log.Formatter = &logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "15:04:05.000000"}
	log.Level = logrus.InfoLevel
	if os.Getenv("WEFT_WG_TEST_DEBUG") == "1" {
		log.Level = logrus.DebugLevel
	}
	enc := json.NewEncoder(out)
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20) // thousands of peers in a reconcile
	var b *Backend
	// Goroutines that exist before the backend does (this loop, the test
	// binary's own) are not the backend's to end.
	before := goleak.IgnoreCurrent()
	defer func() {
		if b != nil {
			b.Close()
		}
	}()
	for sc.Scan() {
		var req helperRequest
		var resp helperResponse
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			resp.Err = err.Error()
			enc.Encode(resp)
			continue
		}
		var err error
		switch req.Op {
		case "setup":
			c := req.Config
			if c.MemoryLimit > 0 {
				debug.SetMemoryLimit(c.MemoryLimit)
			}
			if c.FlowBound != 0 {
				flowBound = max(c.FlowBound, 0)
			}
			if c.GCPercent != 0 {
				debug.SetGCPercent(c.GCPercent)
			}
			if c.BusyGCPercent != 0 {
				busyGCPercent = max(c.BusyGCPercent, 0)
			}
			b, err = New(Config{
				Name: c.Name, ListenPort: c.ListenPort, MTU: c.MTU, PersistentKeepalive: c.PersistentKeepalive,
				PublicIP: c.PublicIP, Iface: c.Iface, StateDir: c.StateDir, PSKFile: c.PSKFile, Mode: c.Mode,
				DisableOffloads: c.DisableOffloads, Log: log.WithField("node", c.Name),
			})
			if err == nil {
				resp.Attrs, err = b.Setup(context.Background())
			}
			if err == nil {
				resp.Kernel = b.Kernel()
				if b.user != nil {
					resp.VnetHdr, err = b.user.vnetHdr()
				}
			}
		case "reconcile":
			if b == nil {
				err = errors.New("not set up")
				break
			}
			start := time.Now()
			resp.Result, err = b.Reconcile(context.Background(), req.Desired)
			resp.Elapsed = time.Since(start)
		case "flow":
			if b == nil || b.user == nil {
				err = errors.New("no userspace device")
				break
			}
			resp.Forgiven = [2]uint64{b.user.flowOut.forgivenCount(), b.user.flowIn.forgivenCount()}
		case "freeosmemory":
			debug.FreeOSMemory()
		case "heap":
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			resp.Heap = &heapStats{ms.HeapInuse, ms.HeapIdle, ms.HeapReleased, ms.NextGC, ms.Sys, ms.NumGC}
			if req.Path != "" {
				err = writeHeapProfile(req.Path)
			}
		case "close":
			if b != nil {
				err = b.Close()
				b = nil
			}
			if err != nil {
				resp.Err = err.Error()
			}
			// goleak retries for about a second while goroutines wind down.
			if err := goleak.Find(before); err != nil {
				resp.Leaked = err.Error()
			}
			enc.Encode(resp)
			return 0
		default:
			err = fmt.Errorf("unknown op %q", req.Op)
		}
		if err != nil {
			resp.Err = err.Error()
		}
		enc.Encode(resp)
	}
	return 0
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// helper is a running child process serving one node's backend.
type helper struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	dec    *json.Decoder
	stderr *lockedBuffer
	exited chan struct{}
	mu     sync.Mutex // serialises requests
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startHelper starts a child in ns. It is killed (by PID) at cleanup if
// still running; its log is printed if the test failed.
func startHelper(t testing.TB, ns *netnstest.NS, label string) *helper {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	h := &helper{cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = h.stderr
	if h.in, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	h.dec = json.NewDecoder(stdout)
	// Forked from a thread inside ns, the child starts in ns.
	if err := ns.Do(cmd.Start); err != nil {
		t.Fatalf("start helper in %s: %v", ns.Name, err)
	}
	go func() {
		cmd.Wait()
		close(h.exited)
	}()
	t.Cleanup(func() {
		h.kill()
		if t.Failed() || os.Getenv("WEFT_WG_TEST_LOGS") == "1" {
			t.Logf("helper %s log:\n%s", label, h.stderr.String())
		}
	})
	return h
}

// call sends one request and waits (at most 20 s) for the answer.
func (h *helper) call(req helperRequest) (helperResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	raw, err := json.Marshal(req)
	if err != nil {
		return helperResponse{}, err
	}
	if _, err := h.in.Write(append(raw, '\n')); err != nil {
		return helperResponse{}, fmt.Errorf("write to helper: %w", err)
	}
	type answer struct {
		r   helperResponse
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		var r helperResponse
		err := h.dec.Decode(&r)
		ch <- answer{r, err}
	}()
	select {
	case a := <-ch:
		if a.err != nil {
			return helperResponse{}, fmt.Errorf("read from helper: %w", a.err)
		}
		if a.r.Err != "" {
			return a.r, errors.New(a.r.Err)
		}
		return a.r, nil
	case <-time.After(20 * time.Second):
		return helperResponse{}, fmt.Errorf("helper did not answer %s within 20s", req.Op)
	}
}

// stop asks the child to close its backend and exit, and waits. leaked
// describes goroutines the backend left behind.
func (h *helper) stop() (leaked string, err error) {
	r, err := h.call(helperRequest{Op: "close"})
	select {
	case <-h.exited:
	case <-time.After(10 * time.Second):
		return r.Leaked, errors.New("helper did not exit")
	}
	return r.Leaked, err
}

// kill ends the child with SIGKILL (a crash) and waits for it.
func (h *helper) kill() {
	select {
	case <-h.exited:
		return
	default:
	}
	h.cmd.Process.Kill()
	<-h.exited
}

func (h *helper) pid() int { return h.cmd.Process.Pid }

// testNode is one node of the test topology.
type testNode struct {
	idx       int
	ns        *netnstest.NS
	nl        *netlink.Handle
	pod       *netnstest.NS
	underlay  netip.Addr
	subnet    netip.Prefix
	subnet6   netip.Prefix
	podIP     netip.Addr
	podIP6    netip.Addr
	cfg       helperConfig
	h         *helper
	attrs     backend.Attrs
	epoch     int64
	setupResp helperResponse
	// life is the test that owns the node's helpers (the topology's
	// test, so a helper restarted in a subtest outlives the subtest).
	life testing.TB
}

type topology struct {
	t        testing.TB
	underlay *netnstest.NS
	nodes    []*testNode
	prefix   string
}

// newTopology builds the underlay bridge and n nodes, each with one pod.
// Nothing runs yet: call start on each node.
func newTopology(t testing.TB, n int) *topology {
	t.Helper()
	netnstest.SkipUnlessRoot(t)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("skipping: no /dev/net/tun (%v)", err)
	}
	tp := &topology{t: t, prefix: "wgt" + netnstest.Suffix(6)}
	tp.underlay = netnstest.NewNS(t, "wgu")
	netnstest.AddBridge(t, tp.underlay, "br0")
	for i := 1; i <= n; i++ {
		tp.nodes = append(tp.nodes, tp.addNode(i))
	}
	return tp
}

func (tp *topology) addNode(i int) *testNode {
	t := tp.t
	t.Helper()
	nd := &testNode{
		idx:      i,
		ns:       netnstest.NewNS(t, fmt.Sprintf("wgn%d", i)),
		pod:      netnstest.NewNS(t, fmt.Sprintf("wgp%d", i)),
		underlay: netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}),
		subnet:   netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", i)),
		subnet6:  netip.MustParsePrefix(fmt.Sprintf("fd10:244:0:%x::/64", i)),
		podIP:    netip.AddrFrom4([4]byte{10, 244, byte(i), 2}),
		podIP6:   netip.MustParseAddr(fmt.Sprintf("fd10:244:0:%x::2", i)),
		epoch:    int64(i),
		life:     t,
	}
	nd.nl = nd.ns.Netlink(t)
	// No duplicate address detection on the test links: a tentative
	// link-local address delays neighbour discovery by seconds.
	for _, ns := range []*netnstest.NS{nd.ns, nd.pod} {
		must(t, ns.Do(func() error {
			for _, k := range []string{"all", "default"} {
				if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+k+"/accept_dad", []byte("0"), 0o644); err != nil {
					return err
				}
			}
			return nil
		}), "disable dad")
	}

	// Underlay: veth eth0 (node) ── underlay ns, on br0.
	netnstest.Attach(t, tp.underlay, "br0", nd.ns, "eth0", netip.PrefixFrom(nd.underlay, 24))

	// Pod: veth pod0 (node) ── peth (pod ns). Not netnstest.AddPod: the
	// pod namespace must exist, with DAD off, before its link does.
	pveth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "pod0"}, PeerName: "peth", PeerNamespace: netlink.NsFd(nd.pod.Handle)}
	must(t, nd.nl.LinkAdd(pveth), "add pod veth")
	gw4 := nd.subnet.Addr().Next()
	gw6 := nd.subnet6.Addr().Next()
	netnstest.SetupLink(t, nd.ns, "pod0", netip.PrefixFrom(gw4, 24), netip.PrefixFrom(gw6, 64))
	netnstest.SetupLink(t, nd.pod, "peth", netip.PrefixFrom(nd.podIP, 24), netip.PrefixFrom(nd.podIP6, 64))
	netnstest.AddRoute(t, nd.pod, netip.Prefix{}, gw4, "peth")
	netnstest.AddRoute(t, nd.pod, netip.Prefix{}, gw6, "peth")
	netnstest.EnableForwarding(t, nd.ns)

	nd.cfg = helperConfig{
		Name:     fmt.Sprintf("%sn%d", tp.prefix, i),
		PublicIP: nd.underlay,
		Iface:    "eth0",
		StateDir: filepath.Join(t.TempDir(), "state"),
		Mode:     ModeUserspace,
	}
	sock := filepath.Join("/var/run/wireguard", nd.cfg.Name+".sock")
	t.Cleanup(func() {
		// Only our own socket, left behind by a killed helper.
		os.Remove(sock)
	})
	return nd
}

// start runs the node's helper and sets its backend up.
func (nd *testNode) start(t testing.TB) helperResponse {
	t.Helper()
	nd.h = startHelper(nd.life, nd.ns, nd.cfg.Name)
	cfg := nd.cfg
	r, err := nd.h.call(helperRequest{Op: "setup", Config: &cfg})
	if err != nil {
		t.Fatalf("node %d setup: %v", nd.idx, err)
	}
	nd.attrs = r.Attrs
	nd.setupResp = r
	return r
}

func (nd *testNode) peer() backend.Peer {
	return backend.Peer{
		Name:       fmt.Sprintf("node%d", nd.idx),
		Subnet:     nd.subnet,
		IPv6Subnet: nd.subnet6,
		PublicIP:   nd.underlay,
		Data:       nd.attrs.Data,
		Epoch:      nd.epoch,
	}
}

// desired is node nd's desired state with the given peers.
func (nd *testNode) desired(complete bool, peers ...*testNode) backend.Desired {
	d := backend.Desired{Local: backend.Local{Subnet: nd.subnet, IPv6Subnet: nd.subnet6}, Complete: complete}
	for _, p := range peers {
		if p != nd {
			d.Peers = append(d.Peers, p.peer())
		}
	}
	return d
}

func (nd *testNode) reconcile(t testing.TB, d backend.Desired) backend.Result {
	t.Helper()
	r, err := nd.h.call(helperRequest{Op: "reconcile", Desired: d})
	if err != nil {
		t.Fatalf("node %d reconcile: %v", nd.idx, err)
	}
	return r.Result
}

// reconcileAll gives every node the full, complete peer set.
func (tp *topology) reconcileAll(t testing.TB) {
	t.Helper()
	for _, nd := range tp.nodes {
		nd.reconcile(t, nd.desired(true, tp.nodes...))
	}
}

func must(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func mustLink(t testing.TB, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	l, err := backend.LinkByName(h, name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return l
}

func addr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// udpListener is a UDP socket in a namespace that counts what it receives.
type udpListener struct {
	conn *net.UDPConn
	wg   sync.WaitGroup

	// mu guards the following.
	mu   sync.Mutex
	seen map[string]time.Time // payload prefix (up to '|') -> first arrival
	all  []arrival
}

type arrival struct {
	tag string
	seq int
	at  time.Time
}

func listenUDP(t testing.TB, ns *netnstest.NS, ip netip.Addr) *udpListener {
	t.Helper()
	var c *net.UDPConn
	must(t, ns.Do(func() error {
		var err error
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		return err
	}), "listen udp")
	l := &udpListener{conn: c, seen: map[string]time.Time{}}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		buf := make([]byte, 2048)
		for {
			n, _, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			now := time.Now()
			msg := string(buf[:n])
			tag, rest, _ := strings.Cut(msg, "|")
			seq, _ := strconv.Atoi(strings.SplitN(rest, "|", 2)[0])
			l.mu.Lock()
			if _, ok := l.seen[tag]; !ok {
				l.seen[tag] = now
			}
			l.all = append(l.all, arrival{tag, seq, now})
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() { c.Close(); l.wg.Wait() })
	return l
}

func (l *udpListener) addr() netip.AddrPort { return l.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (l *udpListener) got(tag string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.seen[tag]
	return ok
}

// arrivals returns the arrival times of packets with tag, in order.
func (l *udpListener) arrivals(tag string) []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []time.Time
	for _, a := range l.all {
		if a.tag == tag {
			out = append(out, a.at)
		}
	}
	return out
}

// udpSender is a UDP socket in a namespace.
func dialUDP(t testing.TB, ns *netnstest.NS, src netip.Addr, dst netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	must(t, ns.Do(func() error {
		var err error
		c, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), net.UDPAddrFromAddrPort(dst))
		return err
	}), "dial udp")
	t.Cleanup(func() { c.Close() })
	return c
}

// reach sends tagged datagrams from (ns, src) to l every 20 ms until one
// arrives or timeout passes; it returns how long that took.
func reach(t testing.TB, ns *netnstest.NS, src netip.Addr, l *udpListener, tag, payload string, timeout time.Duration) (time.Duration, bool) {
	t.Helper()
	c := dialUDP(t, ns, src, l.addr())
	defer c.Close()
	start := time.Now()
	for seq := 0; time.Since(start) < timeout; seq++ {
		c.Write([]byte(tag + "|" + strconv.Itoa(seq) + "|" + payload))
		deadline := time.Now().Add(20 * time.Millisecond)
		for time.Now().Before(deadline) {
			if l.got(tag) {
				return time.Since(start), true
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	return time.Since(start), l.got(tag)
}
