// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/vishvananda/netlink"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/daemon/status"
	"github.com/weftnet/weft/e2e/netnstest"
	"github.com/weftnet/weft/subnet"
	subnetetcd "github.com/weftnet/weft/subnet/etcd"
)

// Topology of the integration test:
//
//	underlay ns                         node ns (weftd runs here)
//	eth0 198.18.0.254/24 ──── veth ──── eth0 198.18.0.1/24, default via .254
//	                                    weft.<VNI> (VXLAN), routes to peers
//
//	embedded etcd (this process) ◄── unix socket ── weftd
//
// weftd is this test binary re-executed in the node namespace (see
// TestMain), so the daemon and every socket it opens live there.

const testHTTPAddr = "127.0.0.1:9950"

// weftdProc is one weftd child process.
type weftdProc struct {
	t      *testing.T
	ns     *netnstest.NS
	cmd    *exec.Cmd
	logBuf *syncBuffer
	done   chan error
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startWeftd starts weftd in ns with env (WEFTD_* settings).
func startWeftd(t *testing.T, ns *netnstest.NS, env map[string]string) *weftdProc {
	t.Helper()
	p := &weftdProc{t: t, ns: ns, logBuf: &syncBuffer{}, done: make(chan error, 1)}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = []string{childEnv + "=1", "PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = p.logBuf, p.logBuf
	if err := ns.Do(cmd.Start); err != nil {
		t.Fatalf("start weftd: %v", err)
	}
	p.cmd = cmd
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		p.stop()
		if strings.Contains(p.logBuf.String(), "WARNING: DATA RACE") {
			t.Error("the race detector reported a data race in weftd (see its log)")
		}
		if p.exitedCleanly() && strings.Contains(p.logBuf.String(), "GOROUTINE LEAK") {
			t.Error("goroutines of weftd outlived Run (see its log)")
		}
		if t.Failed() || os.Getenv("WEFT_TEST_WEFTD_LOG") == "1" {
			t.Logf("weftd log:\n%s", p.logBuf.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits for the exit; it returns how long that took.
func (p *weftdProc) stop() time.Duration {
	if p.cmd == nil || p.cmd.ProcessState != nil {
		return 0
	}
	start := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(20 * time.Second):
		p.t.Errorf("weftd did not exit within 20 s of SIGTERM")
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return time.Since(start)
}

// exitedCleanly reports whether weftd ended by returning from Run (not
// killed by a signal), so that its goroutine-leak check ran.
func (p *weftdProc) exitedCleanly() bool {
	st := p.cmd.ProcessState
	if st == nil {
		return false
	}
	ws, ok := st.Sys().(syscall.WaitStatus)
	return ok && ws.Exited()
}

func (p *weftdProc) exited() (bool, error) {
	select {
	case err := <-p.done:
		p.done <- err
		return true, err
	default:
		return false, nil
	}
}

// httpClient talks to addresses inside ns (the dial happens there).
func httpClient(ns *netnstest.NS) *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var c net.Conn
				err := ns.Do(func() (err error) {
					c, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, addr)
					return err
				})
				return c, err
			},
		},
	}
}

func (p *weftdProc) get(path string) (int, string, error) {
	resp, err := httpClient(p.ns).Get("http://" + testHTTPAddr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func (p *weftdProc) status(t *testing.T) status.Report {
	t.Helper()
	code, body, err := p.get("/status")
	if err != nil || code != 200 {
		t.Fatalf("GET /status: %d %v %s", code, err, body)
	}
	var st status.Report
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("decode /status: %v\n%s", err, body)
	}
	return st
}

// waitReady polls /readyz until 200.
func (p *weftdProc) waitReady(t *testing.T, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	for time.Since(start) < within {
		if gone, err := p.exited(); gone {
			t.Fatalf("weftd exited before ready: %v\n%s", err, p.logBuf.String())
		}
		code, body, err := p.get("/readyz")
		if err == nil && code == 200 {
			return time.Since(start)
		}
		last = fmt.Sprintf("%d %v %s", code, err, strings.TrimSpace(body))
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("weftd not ready within %s; last /readyz: %s", within, last)
	return 0
}

// poll waits until cond returns "" (else its text is the failure reason).
func poll(t *testing.T, within time.Duration, what string, cond func() string) time.Duration {
	t.Helper()
	start := time.Now()
	var why string
	for time.Since(start) < within {
		if why = cond(); why == "" {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %s", what, within, why)
	return 0
}

func skipUnlessEtcd(t *testing.T) {
	t.Helper()
	netnstest.SkipUnlessRoot(t)
	if testEtcd == nil {
		t.Skip("no embedded etcd (TestMain starts it only for privileged runs)")
	}
}

func testStore(t *testing.T, prefix string) (*subnetetcd.Store, *clientv3.Client) {
	t.Helper()
	cli, err := subnetetcd.NewClient(subnetetcd.ClientConfig{Endpoints: []string{testEtcd.Endpoint()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return subnetetcd.New(subnetetcd.Config{Client: cli, Prefix: prefix}), cli
}

// routeTo returns weft's route to dst in ns, if any.
func routeTo(t *testing.T, h *netlink.Handle, dst netip.Prefix) *netlink.Route {
	t.Helper()
	rs, err := backend.ListOwnRoutes(h)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Dst != nil {
			if p, ok := netip.AddrFromSlice(r.Dst.IP); ok {
				ones, _ := r.Dst.Mask.Size()
				if netip.PrefixFrom(p.Unmap(), ones) == dst {
					return &r
				}
			}
		}
	}
	return nil
}

// testNode is one node namespace behind an underlay namespace, with a
// network config in etcd under a prefix of its own, and weftd's settings.
type testNode struct {
	ns    *netnstest.NS
	nl    *netlink.Handle
	store *subnetetcd.Store
	cli   *clientv3.Client
	env   map[string]string
}

func newTestNode(t *testing.T, network string) *testNode {
	t.Helper()
	sfx := netnstest.Suffix(6)
	prefix := "/weft-daemon-" + sfx
	store, cli := testStore(t, prefix)
	underlay := netnstest.NewNS(t, "weftd-ul")
	node := netnstest.NewNS(t, "weftd-node")
	vethInto(t, underlay, "u-"+sfx, pfx("198.18.0.254/24"), node, pfx("198.18.0.1/24"), addr("198.18.0.254"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := store.PutConfig(ctx, []byte(network)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	return &testNode{ns: node, nl: node.Netlink(t), store: store, cli: cli, env: map[string]string{
		"WEFTD_ETCD_ENDPOINTS":  testEtcd.Endpoint(),
		"WEFTD_ETCD_PREFIX":     prefix,
		"WEFTD_NODE_NAME":       "node-a",
		"WEFTD_STATE_DIR":       filepath.Join(dir, "state"),
		"WEFTD_SUBNET_FILE":     filepath.Join(dir, "run", "subnet.env"),
		"WEFTD_HTTP_ADDR":       testHTTPAddr,
		"WEFTD_RESYNC_INTERVAL": "1s",
		"WEFTD_LOG_LEVEL":       "debug",
		"WEFTD_GOSSIP_BIND":     "198.18.0.1:7950",
		"WEFTD_LEASE_TTL":       "1m",
	}}
}

const testNetwork = `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":7}}`

func TestRunVXLANWithEtcd(t *testing.T) {
	skipUnlessEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tn := newTestNode(t, testNetwork)
	node, nh, store, env, network := tn.ns, tn.nl, tn.store, tn.env, testNetwork

	// systemd readiness: a notify socket of our own; READY=1 must come
	// once the subnet file is written.
	notifyPath := filepath.Join(t.TempDir(), "notify.sock")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	firstEnv := map[string]string{"NOTIFY_SOCKET": notifyPath}
	for k, v := range env {
		firstEnv[k] = v
	}
	w := startWeftd(t, node, firstEnv)
	took := w.waitReady(t, 60*time.Second)
	t.Logf("weftd ready %s after start", took.Round(time.Millisecond))
	_ = notify.SetReadDeadline(time.Now().Add(5 * time.Second))
	msg := make([]byte, 256)
	n, _, err := notify.ReadFromUnix(msg)
	if err != nil || string(msg[:n]) != "READY=1" {
		t.Errorf("systemd notification = %q, %v; want READY=1", msg[:n], err)
	}

	// Subnet file, /status and the lease in etcd agree.
	sf, err := subnet.ReadSubnetFile(env["WEFTD_SUBNET_FILE"])
	if err != nil {
		t.Fatal(err)
	}
	if sf.Network != pfx("10.244.0.0/16") || sf.Subnet.Bits() != 24 || sf.MTU != 1450 || !sf.IPMasq {
		t.Errorf("subnet file = %+v; want network 10.244.0.0/16, a /24, MTU 1450 (1500 - 50), IPMASQ true", sf)
	}
	mine := sf.Subnet.Masked()
	st := w.status(t)
	if st.Node.Name != "node-a" || st.Node.Subnet != mine || st.Node.BackendType != "vxlan" || st.Node.BackendData.VTEPMAC == "" ||
		!st.Node.Ready || st.Node.MTU != 1450 || st.Node.PublicIP != addr("198.18.0.1") || st.Node.Iface != "eth0" || !st.Node.EtcdReachable {
		t.Errorf("/status node = %+v", st.Node)
	}
	if code, body, _ := w.get("/healthz"); code != 200 {
		t.Errorf("/healthz = %d %s", code, body)
	}
	view, err := store.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(view.Leases) != 1 || view.Leases[0].Subnet != mine || view.Leases[0].Record.NodeName != "node-a" ||
		view.Leases[0].Record.BackendData.VTEPMAC != st.Node.BackendData.VTEPMAC || view.Leases[0].Record.GossipAddr != "198.18.0.1:7950" {
		t.Fatalf("leases in etcd = %+v", view.Leases)
	}
	if view.Leases[0].Epoch != st.Node.Epoch {
		t.Errorf("epoch in /status %d, in etcd %d", st.Node.Epoch, view.Leases[0].Epoch)
	}
	_, metrics, _ := w.get("/metrics")
	for _, m := range []string{"weft_reconcile_total", "weft_peers 0", "weft_etcd_reachable 1", "weft_ready 1", `weft_members{state="alive"}`,
		"go_gc_gomemlimit_bytes 1.34217728e+08", // --memory-limit's default, 128MiB
	} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %q", m)
		}
	}
	// Forwarding is on in the node's namespace, and the masquerade table is there.
	var fwd []byte
	if err := node.Do(func() (err error) { fwd, err = os.ReadFile("/proc/sys/net/ipv4/ip_forward"); return err }); err != nil || strings.TrimSpace(string(fwd)) != "1" {
		t.Errorf("ip_forward in the node namespace = %q, %v", fwd, err)
	}
	if post, _, err := ruleCountsErr(nftIn(t, node)); err != nil || post == 0 {
		t.Errorf("masquerade table: %d rules, %v", post, err)
	}

	// A peer's lease written into etcd → its route appears; deleted → gone.
	peer := claimPeer(ctx, t, tn, network, 2, time.Minute)
	took = poll(t, 5*time.Second, "route to the new peer", func() string {
		r := routeTo(t, nh, peer.Subnet)
		if r == nil {
			return "no route to " + peer.Subnet.String()
		}
		return ""
	})
	t.Logf("peer route installed %s after the lease was written", took.Round(time.Millisecond))
	st = w.status(t)
	if len(st.Peers) != 1 || st.Peers[0].Name != "node-b" || st.Peers[0].Subnet != peer.Subnet || st.Peers[0].Source != "etcd" || st.Peers[0].Epoch != peer.Epoch {
		t.Errorf("/status peers = %+v", st.Peers)
	}

	// Drift: delete the route by hand → repaired within the resync interval.
	if r := routeTo(t, nh, peer.Subnet); r != nil {
		if err := nh.RouteDel(r); err != nil {
			t.Fatal(err)
		}
	}
	took = poll(t, 3*time.Second, "drift repair", func() string {
		if routeTo(t, nh, peer.Subnet) == nil {
			return "route still missing"
		}
		return ""
	})
	t.Logf("deleted route repaired after %s", took.Round(time.Millisecond))
	poll(t, 2*time.Second, "drift counted", func() string {
		_, m, _ := w.get("/metrics")
		if strings.Contains(m, "weft_drift_repairs_total 0") {
			return "weft_drift_repairs_total is 0"
		}
		return ""
	})

	// Masquerade table removed by hand → re-installed at the next resync.
	if err := removeMasq(nftIn(t, node)); err != nil {
		t.Fatal(err)
	}
	took = poll(t, 3*time.Second, "masquerade repair", func() string {
		if !masqIntact(nftIn(t, node), masqConfig{Network: pfx("10.244.0.0/16"), Subnet: mine}) {
			return "weft's table not back"
		}
		return ""
	})
	t.Logf("deleted masquerade table re-installed after %s", took.Round(time.Millisecond))

	if err := store.Release(ctx, peer); err != nil {
		t.Fatal(err)
	}
	poll(t, 5*time.Second, "route removal", func() string {
		if routeTo(t, nh, peer.Subnet) != nil {
			return "route to " + peer.Subnet.String() + " still there"
		}
		return ""
	})

	// SIGTERM: quick exit, data plane left in place.
	peer2 := claimPeer(ctx, t, tn, network, 3, 10*time.Minute)
	poll(t, 5*time.Second, "route to node-c", func() string {
		if routeTo(t, nh, peer2.Subnet) == nil {
			return "missing"
		}
		return ""
	})
	stopTook := w.stop()
	t.Logf("weftd exited %s after SIGTERM", stopTook.Round(time.Millisecond))
	if stopTook > 5*time.Second {
		t.Errorf("weftd took %s to exit after SIGTERM", stopTook)
	}
	if routeTo(t, nh, peer2.Subnet) == nil {
		t.Error("weftd's exit removed the route to node-c; the data plane must stay")
	}
	if v, _ := store.List(ctx); !hasLease(v, "node-a", mine) {
		t.Error("weftd's exit released its lease")
	}

	// Restart with etcd up: same subnet, same VTEP MAC.
	w2 := startWeftd(t, node, env)
	w2.waitReady(t, 60*time.Second)
	st2 := w2.status(t)
	if st2.Node.Subnet != mine || st2.Node.BackendData.VTEPMAC != st.Node.BackendData.VTEPMAC || st2.Node.ID != st.Node.ID {
		t.Errorf("after restart: subnet %s MAC %s ID %s; want %s %s %s", st2.Node.Subnet, st2.Node.BackendData.VTEPMAC, st2.Node.ID, mine, st.Node.BackendData.VTEPMAC, st.Node.ID)
	}
	w2.stop()

	// etcd down: a running weftd keeps running; a restarted one comes up
	// from its saved state with the same subnet and keeps its peers.
	w3 := startWeftd(t, node, env)
	w3.waitReady(t, 60*time.Second)
	testEtcd.Stop()
	etcdBack := false
	t.Cleanup(func() {
		if !etcdBack {
			if err := testEtcd.Start(context.Background()); err != nil {
				t.Errorf("restart etcd: %v", err)
			}
		}
	})
	poll(t, 15*time.Second, "etcd reported unreachable", func() string {
		if w3.status(t).Node.EtcdReachable {
			return "still reachable"
		}
		return ""
	})
	if gone, err := w3.exited(); gone {
		t.Fatalf("weftd exited when etcd stopped: %v", err)
	}
	if code, _, _ := w3.get("/healthz"); code != 200 {
		t.Errorf("/healthz with etcd down = %d", code)
	}
	w3.stop()
	w4 := startWeftd(t, node, env)
	took = w4.waitReady(t, 60*time.Second)
	t.Logf("weftd ready %s after a start with etcd down", took.Round(time.Millisecond))
	st4 := w4.status(t)
	if st4.Node.Subnet != mine || st4.Node.EtcdReachable || !st4.Node.Complete {
		t.Errorf("start with etcd down: subnet %s (want %s), etcdReachable %t, complete %t", st4.Node.Subnet, mine, st4.Node.EtcdReachable, st4.Node.Complete)
	}
	if len(st4.Peers) != 1 || st4.Peers[0].Name != "node-c" {
		t.Errorf("start with etcd down: peers from the snapshot = %+v, want node-c", st4.Peers)
	}
	if routeTo(t, nh, peer2.Subnet) == nil {
		t.Error("route to node-c gone after a start with etcd down")
	}
	// etcd back: the lease is ours, the same subnet, and etcd is seen again.
	if err := testEtcd.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	etcdBack = true
	poll(t, 30*time.Second, "etcd seen again", func() string {
		st := w4.status(t)
		if !st.Node.EtcdReachable {
			return "etcd unreachable"
		}
		if st.Node.Subnet != mine {
			return "subnet changed to " + st.Node.Subnet.String()
		}
		return ""
	})
	poll(t, 30*time.Second, "lease held in etcd", func() string {
		v, err := store.List(ctx)
		if err != nil {
			return err.Error()
		}
		if !hasLease(v, "node-a", mine) {
			return fmt.Sprintf("no lease of node-a on %s in %+v", mine, v.Leases)
		}
		return ""
	})
}

func hasLease(v subnet.View, node string, p netip.Prefix) bool {
	for _, l := range v.Leases {
		if l.Record.NodeName == node && l.Subnet == p {
			return true
		}
	}
	return false
}

func mustConfig(t *testing.T, raw string) *subnet.Config {
	t.Helper()
	c, err := subnet.ParseConfig([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// claimPeer writes the lease of a VXLAN peer into tn's etcd prefix, as
// another node's weftd would (with an etcd lease of ttl): node-b for i 2,
// node-c for 3, with public IP 198.18.0.<i> and VTEP MAC
// 02:42:00:00:00:0<i>.
func claimPeer(ctx context.Context, t *testing.T, tn *testNode, network string, i byte, ttl time.Duration) *subnet.Lease {
	t.Helper()
	store := subnetetcd.New(subnetetcd.Config{Client: tn.cli, Prefix: tn.store.Prefix(), LeaseTTL: ttl})
	l, err := store.Claim(ctx, subnet.ClaimRequest{
		Config: mustConfig(t, network),
		Record: subnet.Record{NodeName: fmt.Sprintf("node-%c", 'a'+i-1), NodeID: uuid.NewString(),
			PublicIP: netip.AddrFrom4([4]byte{198, 18, 0, i}), BackendType: "vxlan",
			BackendData: subnet.BackendData{VTEPMAC: fmt.Sprintf("02:42:00:00:00:%02x", i)}, Version: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestRunLeaseLoss(t *testing.T) {
	skipUnlessEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tn := newTestNode(t, testNetwork)
	w := startWeftd(t, tn.ns, tn.env)
	w.waitReady(t, 60*time.Second)
	st := w.status(t)
	mine := st.Node.Subnet

	// Our key deleted (weftctl leases rm) while running → the same subnet
	// is claimed again, with a new epoch.
	evicted, err := tn.store.Evict(ctx, "node-a")
	if err != nil || len(evicted) != 1 {
		t.Fatalf("evict: %v, %v", evicted, err)
	}
	took := poll(t, 10*time.Second, "re-claim of the same subnet", func() string {
		v, err := tn.store.List(ctx)
		if err != nil {
			return err.Error()
		}
		for _, l := range v.Leases {
			if l.Record.NodeName == "node-a" {
				if l.Subnet != mine {
					return "re-claimed another subnet " + l.Subnet.String()
				}
				if l.Epoch <= evicted[0].Epoch {
					return "old epoch"
				}
				return ""
			}
		}
		return "no lease of node-a"
	})
	t.Logf("own lease re-claimed %s after it was deleted", took.Round(time.Millisecond))
	if gone, err := w.exited(); gone {
		t.Fatalf("weftd exited after its key was deleted: %v", err)
	}
	poll(t, 5*time.Second, "status shows the new epoch", func() string {
		if e := w.status(t).Node.Epoch; e <= evicted[0].Epoch {
			return fmt.Sprintf("epoch %d", e)
		}
		return ""
	})

	// Our key taken over by another node → weftd exits with an error that
	// says the pods must be recreated.
	v, err := tn.store.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	own := v.Leases[0]
	other := struct {
		subnet.Record
		Subnet netip.Prefix `json:"subnet"`
	}{subnet.Record{NodeName: "node-x", NodeID: uuid.NewString(), PublicIP: addr("198.18.0.9"), BackendType: "vxlan", Version: 1}, own.Subnet}
	data, _ := json.Marshal(other)
	if _, err := tn.cli.Put(ctx, tn.store.LeaseKey(own.Subnet), string(data), clientv3.WithLease(clientv3.LeaseID(own.LeaseID))); err != nil {
		t.Fatal(err)
	}
	var exitErr error
	poll(t, 10*time.Second, "weftd exit", func() string {
		gone, err := w.exited()
		if !gone {
			return "still running"
		}
		exitErr = err
		return ""
	})
	if exitErr == nil {
		t.Error("weftd exited with status 0; want an error")
	}
	if log := w.logBuf.String(); !strings.Contains(log, "must be recreated") || !strings.Contains(log, own.Subnet.String()) {
		t.Errorf("weftd's last words do not say the pods must be recreated:\n%s", log)
	}
}

func TestRunConfigChanges(t *testing.T) {
	skipUnlessEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tn := newTestNode(t, testNetwork)
	w := startWeftd(t, tn.ns, tn.env)
	w.waitReady(t, 60*time.Second)
	key := tn.store.ConfigKey()

	// An invalid config: reported, last good one kept, still ready.
	if _, err := tn.cli.Put(ctx, key, `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":"seven"}}`); err != nil {
		t.Fatal(err)
	}
	poll(t, 5*time.Second, "config error in /status", func() string {
		if st := w.status(t); st.Node.ConfigError == "" {
			return "no config error shown"
		}
		return ""
	})
	st := w.status(t)
	if !st.Node.Ready || st.Node.Network != pfx("10.244.0.0/16") || len(st.Node.PendingRestart) != 0 {
		t.Errorf("with a bad config: ready %t, network %s, pending %q", st.Node.Ready, st.Node.Network, st.Node.PendingRestart)
	}
	if code, _, _ := w.get("/readyz"); code != 200 {
		t.Errorf("/readyz with a bad config in etcd = %d", code)
	}
	if _, m, _ := w.get("/metrics"); !strings.Contains(m, "weft_config_errors_total 1") {
		t.Error("weft_config_errors_total is not 1")
	}

	// A valid config that needs a restart: said so, old network in force.
	if _, err := tn.cli.Put(ctx, key, `{"Network":"10.245.0.0/16","Backend":{"Type":"vxlan","VNI":7}}`); err != nil {
		t.Fatal(err)
	}
	poll(t, 5*time.Second, "restart needed in /status", func() string {
		st := w.status(t)
		if st.Node.ConfigError != "" {
			return "config error still shown: " + st.Node.ConfigError
		}
		if len(st.Node.PendingRestart) != 1 || !strings.Contains(st.Node.PendingRestart[0], "Network: 10.244.0.0/16 → 10.245.0.0/16") {
			return fmt.Sprintf("pending restart %q", st.Node.PendingRestart)
		}
		return ""
	})
	if st := w.status(t); st.Node.Network != pfx("10.244.0.0/16") {
		t.Errorf("network in force changed to %s without a restart", st.Node.Network)
	}
	if !strings.Contains(w.logBuf.String(), "restart weftd on every node to apply: Network: 10.244.0.0/16 → 10.245.0.0/16") {
		t.Error("log does not say to restart weftd on every node")
	}

	// SIGHUP reloads (here: nothing to reload) and does not stop weftd.
	if err := w.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	poll(t, 5*time.Second, "SIGHUP handled", func() string {
		if !strings.Contains(w.logBuf.String(), "reload: no gossip key file") {
			return "no reload logged"
		}
		return ""
	})

	// Back to the config in force: nothing pending.
	if err := tn.store.PutConfig(ctx, []byte(testNetwork)); err != nil {
		t.Fatal(err)
	}
	poll(t, 5*time.Second, "pending restart cleared", func() string {
		if p := w.status(t).Node.PendingRestart; len(p) != 0 {
			return fmt.Sprintf("%q", p)
		}
		return ""
	})
	if gone, err := w.exited(); gone {
		t.Fatalf("weftd exited: %v", err)
	}
}

// twoNode is one of the nodes of startTwoNodes.
type twoNode struct {
	ns  *netnstest.NS
	w   *weftdProc
	env map[string]string
}

// startTwoNodes starts weftd on two nodes on one underlay segment:
//
//	underlay ns: br-xxxx 198.18.0.254/24
//	  ├─ node A eth0 198.18.0.1/24
//	  └─ node B eth0 198.18.0.2/24
//
// extra adds settings for node i.
func startTwoNodes(t *testing.T, network string, extra func(i int) map[string]string) []*twoNode {
	t.Helper()
	sfx := netnstest.Suffix(6)
	prefix := "/weft-daemon-" + sfx
	store, _ := testStore(t, prefix)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := store.PutConfig(ctx, []byte(network)); err != nil {
		t.Fatal(err)
	}
	underlay := netnstest.NewNS(t, "weftd-ul")
	netnstest.AddBridge(t, underlay, "br-"+sfx)
	netnstest.SetupLink(t, underlay, "br-"+sfx, pfx("198.18.0.254/24"))
	var nodes []*twoNode
	for i, name := range []string{"node-a", "node-b"} {
		ns := netnstest.NewNS(t, "weftd-"+name[len(name)-1:])
		ip := fmt.Sprintf("198.18.0.%d", i+1)
		netnstest.Attach(t, underlay, "br-"+sfx, ns, "eth0", pfx(ip+"/24"))
		netnstest.AddRoute(t, ns, netip.Prefix{}, addr("198.18.0.254"), "eth0")
		dir := t.TempDir()
		env := map[string]string{
			"WEFTD_ETCD_ENDPOINTS":           testEtcd.Endpoint(),
			"WEFTD_ETCD_PREFIX":              prefix,
			"WEFTD_NODE_NAME":                name,
			"WEFTD_STATE_DIR":                filepath.Join(dir, "state"),
			"WEFTD_SUBNET_FILE":              filepath.Join(dir, "subnet.env"),
			"WEFTD_HTTP_ADDR":                testHTTPAddr,
			"WEFTD_RESYNC_INTERVAL":          "1s",
			"WEFTD_LOG_LEVEL":                "debug",
			"WEFTD_GOSSIP_BIND":              ip + ":7950",
			"WEFTD_GOSSIP_PUSHPULL_INTERVAL": "2s",
			"WEFTD_LEASE_TTL":                "1m",
		}
		if extra != nil {
			for k, v := range extra(i) {
				env[k] = v
			}
		}
		nodes = append(nodes, &twoNode{ns: ns, env: env, w: startWeftd(t, ns, env)})
	}
	for _, n := range nodes {
		n.w.waitReady(t, 60*time.Second)
	}
	return nodes
}

func TestRunTwoNodesGossip(t *testing.T) {
	skipUnlessEtcd(t)
	// Encrypted gossip: one key file (0600) shared by both nodes.
	keyFile := filepath.Join(t.TempDir(), "gossip.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	nodes := startTwoNodes(t, testNetwork, func(int) map[string]string {
		return map[string]string{"WEFTD_GOSSIP_KEY_FILE": keyFile}
	})
	a, b := nodes[0], nodes[1]
	sa, sb := a.w.status(t), b.w.status(t)

	// Each sees the other as a peer, alive by gossip.
	for _, c := range []struct {
		from *twoNode
		peer string
	}{{a, "node-b"}, {b, "node-a"}} {
		poll(t, 10*time.Second, c.peer+" alive in the status of its peer", func() string {
			st := c.from.w.status(t)
			if len(st.Peers) != 1 || st.Peers[0].Name != c.peer || st.Peers[0].State != "alive" {
				return fmt.Sprintf("peers %+v", st.Peers)
			}
			if len(st.Members) != 1 || st.Members[0].Name != c.peer || st.Members[0].State != "alive" {
				return fmt.Sprintf("members %+v", st.Members)
			}
			return ""
		})
	}

	if os.Getenv("WEFT_TEST_WEFTD_LOG") == "1" {
		_, body, _ := a.w.get("/status")
		t.Logf("node A /status:\n%s", body)
	}

	// Real packets over VXLAN between the nodes' subnet addresses; no NAT
	// inside the cluster network.
	if src := sourceSeen(t, b.ns, sb.Node.Subnet.Addr().String(), a.ns); src != sa.Node.Subnet.Addr().String() {
		t.Errorf("node B saw source %s for node A's packet, want A's subnet address %s", src, sa.Node.Subnet.Addr())
	}

	// SIGHUP re-reads the gossip key file.
	if err := b.w.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	poll(t, 5*time.Second, "gossip keys reloaded on SIGHUP", func() string {
		if !strings.Contains(b.w.logBuf.String(), "gossip keys reloaded") {
			return "not logged"
		}
		return ""
	})
	if !strings.Contains(a.w.logBuf.String(), "encrypted=true") {
		t.Error("node A's gossip is not encrypted with --gossip-key-file")
	}

	// Kill A: B reports it dead, and keeps its route (only etcd removes it).
	if err := a.w.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	took := poll(t, 10*time.Second, "node-a dead in node B's status", func() string {
		st := b.w.status(t)
		if len(st.Peers) != 1 || st.Peers[0].State != "dead" {
			return fmt.Sprintf("peers %+v", st.Peers)
		}
		return ""
	})
	t.Logf("killed node seen dead after %s", took.Round(time.Millisecond))
	if routeTo(t, b.ns.Netlink(t), sa.Node.Subnet) == nil {
		t.Error("node B removed its route to the dead node A; only an etcd delete may")
	}
	if _, m, _ := b.w.get("/metrics"); !strings.Contains(m, `weft_members{state="dead"} 1`) {
		t.Error(`weft_members{state="dead"} is not 1 on node B`)
	}
}

func TestRunTwoNodesWireGuard(t *testing.T) {
	skipUnlessEtcd(t)
	// Userspace WireGuard: the UAPI sockets in /var/run/wireguard are
	// shared by every namespace, so the device names are unique per run.
	sfx := netnstest.Suffix(4)
	devs := []string{"wgt" + sfx + "a", "wgt" + sfx + "b"}
	t.Cleanup(func() {
		for _, d := range devs {
			// Only our own sockets, left behind if a weftd was killed.
			os.Remove(filepath.Join("/var/run/wireguard", d+".sock"))
		}
	})
	nodes := startTwoNodes(t, `{"Network":"10.244.0.0/16","Backend":{"Type":"wireguard"}}`, func(i int) map[string]string {
		return map[string]string{"WEFTD_WIREGUARD_MODE": "userspace", "WEFTD_WIREGUARD_DEVICE": devs[i]}
	})
	a, b := nodes[0], nodes[1]
	sa, sb := a.w.status(t), b.w.status(t)
	for _, st := range []status.Report{sa, sb} {
		if st.Node.BackendType != "wireguard" || st.Node.BackendData.WireGuardKey == "" || st.Node.BackendData.WireGuardPort != 51820 || st.Node.MTU != 1440 {
			t.Errorf("node %s: backend %s data %+v mtu %d; want wireguard with a key, port 51820, MTU 1440", st.Node.Name, st.Node.BackendType, st.Node.BackendData, st.Node.MTU)
		}
	}
	poll(t, 10*time.Second, "peers learned", func() string {
		st := a.w.status(t)
		if len(st.Peers) != 1 || st.Peers[0].BackendData.WireGuardKey != sb.Node.BackendData.WireGuardKey {
			return fmt.Sprintf("node A peers %+v", st.Peers)
		}
		return ""
	})
	// Real packets through the tunnel, both ways, sources kept.
	if src := sourceSeen(t, b.ns, sb.Node.Subnet.Addr().String(), a.ns); src != sa.Node.Subnet.Addr().String() {
		t.Errorf("node B saw source %s, want node A's subnet address %s", src, sa.Node.Subnet.Addr())
	}
	if src := sourceSeen(t, a.ns, sa.Node.Subnet.Addr().String(), b.ns); src != sb.Node.Subnet.Addr().String() {
		t.Errorf("node A saw source %s, want node B's subnet address %s", src, sb.Node.Subnet.Addr())
	}
}

func TestRunDualStack(t *testing.T) {
	skipUnlessEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	network := `{"Network":"10.244.0.0/16","IPv6Network":"fd10:244::/56","Backend":{"Type":"vxlan","VNI":7}}`
	tn := newTestNode(t, network)
	w := startWeftd(t, tn.ns, tn.env)
	w.waitReady(t, 60*time.Second)

	sf, err := subnet.ReadSubnetFile(tn.env["WEFTD_SUBNET_FILE"])
	if err != nil {
		t.Fatal(err)
	}
	st := w.status(t)
	if sf.IPv6Network != pfx("fd10:244::/56") || sf.IPv6Subnet.Bits() != 64 || st.Node.IPv6Subnet != sf.IPv6Subnet.Masked() || st.Node.Subnet != sf.Subnet.Masked() {
		t.Errorf("subnet file %+v, /status subnets %s %s", sf, st.Node.Subnet, st.Node.IPv6Subnet)
	}
	var fwd []byte
	if err := tn.ns.Do(func() (err error) { fwd, err = os.ReadFile("/proc/sys/net/ipv6/conf/all/forwarding"); return err }); err != nil || strings.TrimSpace(string(fwd)) != "1" {
		t.Errorf("IPv6 forwarding in the node namespace = %q, %v", fwd, err)
	}
	peer := claimPeer(ctx, t, tn, network, 2, time.Minute)
	if !peer.IPv6Subnet.IsValid() {
		t.Fatalf("dual-stack claim without an IPv6 subnet: %+v", peer)
	}
	poll(t, 5*time.Second, "routes to both subnets of the peer", func() string {
		for _, p := range []netip.Prefix{peer.Subnet, peer.IPv6Subnet} {
			if routeTo(t, tn.nl, p) == nil {
				return "no route to " + p.String()
			}
		}
		return ""
	})
	if st := w.status(t); len(st.Peers) != 1 || st.Peers[0].IPv6Subnet != peer.IPv6Subnet {
		t.Errorf("/status peers = %+v", st.Peers)
	}
}
