// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/weftnet/weft/daemon/status"
	"github.com/weftnet/weft/subnet"
)

// Node is one node of the cluster: a namespace plugged into the underlay
// and, once started, a weftd process in it.
type Node struct {
	c *Cluster
	// Index is the node's number (1-based); Name is "node<Index>".
	Index int
	Name  string
	NS    NS
	// Segment is 0 (underlay bridge) or 1 (behind the router).
	Segment int
	// IP and IPv6 are the node's underlay addresses on eth0.
	IP   netip.Addr
	IPv6 netip.Addr
	// Dir holds the node's files; StateDir, SubnetFilePath, LogFile and
	// CNIDataDir are inside it.
	Dir            string
	StateDir       string
	SubnetFilePath string
	LogFile        string
	CNIDataDir     string
	// HTTPAddr is weftd's --http-addr (<IP>:9950).
	HTTPAddr string
	// VXLANDevice and WireGuardDevice are the device names given to weftd.
	VXLANDevice     string
	WireGuardDevice string

	// ExtraArgs are appended to weftd's flags at the next Start.
	ExtraArgs []string
	// Env is added to weftd's environment at the next Start (weftd reads
	// every flag from WEFTD_<FLAG> too, as from the systemd unit's
	// environment file).
	Env []string
	// BinDir, when set, holds the weftd and weft CNI plugin this node runs
	// instead of the cluster's BinDir (an upgrade runs an earlier
	// release's binaries on some nodes). It is read at every Start and
	// every plugin call; weftctl and etcd stay the cluster's.
	BinDir string

	// mu guards the following.
	mu   sync.Mutex
	proc *Proc
	pods []*Pod
	npod int
}

func (n *Node) initPaths() {
	n.StateDir = filepath.Join(n.Dir, "state")
	n.SubnetFilePath = filepath.Join(n.Dir, "subnet.env")
	n.LogFile = filepath.Join(n.Dir, "weftd.log")
	n.CNIDataDir = filepath.Join(n.Dir, "cni")
	n.HTTPAddr = net.JoinHostPort(n.IP.String(), strconv.Itoa(HTTPPort))
	suffix := n.c.opts.DeviceSuffix
	if suffix == "-" {
		n.VXLANDevice = ""
		n.WireGuardDevice = fmt.Sprintf("weftlab-wg%d", n.Index)
	} else {
		n.VXLANDevice = fmt.Sprintf("vx%d-%s", n.Index, suffix)
		n.WireGuardDevice = fmt.Sprintf("wg%d-%s", n.Index, suffix)
	}
}

// VXLANDeviceName is the VXLAN device weftd uses on this node (weftd's
// default weft.<VNI> when the harness does not set one; VNI 1 assumed).
func (n *Node) VXLANDeviceName() string {
	if n.VXLANDevice != "" {
		return n.VXLANDevice
	}
	return "weft.1"
}

// Args returns weftd's command line flags for this node.
func (n *Node) Args() []string {
	args := []string{"--node-name", n.Name}
	if n.c.kube != nil {
		args = append(args, "--kube-subnet-mgr", "--kubeconfig", n.KubeconfigPath(), "--gossip-key-file", n.gossipKeyPath())
	} else {
		args = append(args, "--etcd-endpoints", n.c.EtcdEndpoint(), "--etcd-prefix", EtcdPrefix)
	}
	args = append(args,
		"--iface", "eth0",
		"--public-ip", n.IP.String(),
		"--subnet-file", n.SubnetFilePath,
		"--state-dir", n.StateDir,
		"--http-addr", n.HTTPAddr,
		"--gossip-bind", net.JoinHostPort(n.IP.String(), strconv.Itoa(GossipPort)),
		"--wireguard-device", n.WireGuardDevice,
	)
	if n.IPv6.IsValid() {
		args = append(args, "--public-ipv6", n.IPv6.String())
	}
	if n.VXLANDevice != "" {
		args = append(args, "--vxlan-device", n.VXLANDevice)
	}
	if d := n.c.opts.ResyncInterval; d > 0 {
		args = append(args, "--resync-interval", d.String())
	}
	args = append(args, n.c.opts.WeftdArgs...)
	n.mu.Lock()
	args = append(args, n.ExtraArgs...)
	n.mu.Unlock()
	return args
}

// Start starts weftd on the node (without waiting for readiness). It is a
// no-op when weftd is running.
func (n *Node) Start() error {
	if n.Running() {
		return nil
	}
	bin, err := checkBinary(n.binDir(), BinWeftd)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(n.StateDir, 0o755); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	args := n.Args()
	n.mu.Lock()
	defer n.mu.Unlock()
	// weftd repairs the anti-spoofing entries from the pod records of
	// this node's CNI data dir, not the host's /var/lib/cni/weft. The
	// environment carries it because an earlier release (an upgrade
	// test's old nodes) ignores variables it does not know but refuses
	// unknown flags; n.Env comes after, so a test can override it.
	env := cleanEnv(append([]string{"WEFTD_CNI_DATA_DIR=" + n.CNIDataDir}, n.Env...)...)
	p, err := startProc(n.NS, bin, args, env, n.LogFile)
	if err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	n.proc = p
	n.c.updateNode(n.Name, func(s *NodeState) { s.Weftd = p })
	return nil
}

// binDir is where the node's weftd and CNI plugin are: [Node.BinDir], or
// the cluster's.
func (n *Node) binDir() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.BinDir != "" {
		return n.BinDir
	}
	return n.c.BinDir
}

// Proc returns the weftd process (nil if never started).
func (n *Node) Proc() *Proc {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// Running reports whether weftd runs.
func (n *Node) Running() bool { return n.Proc().Alive() }

// Stop stops weftd with SIGTERM (SIGKILL after 10 s) and waits.
func (n *Node) Stop() error {
	if err := n.Proc().Stop(10 * time.Second); err != nil {
		return fmt.Errorf("stop weftd on %s: %w", n.Name, err)
	}
	return nil
}

// Kill kills weftd with SIGKILL and waits.
func (n *Node) Kill() error {
	if err := n.Proc().Kill(); err != nil {
		return fmt.Errorf("kill weftd on %s: %w", n.Name, err)
	}
	return nil
}

// Restart stops weftd (SIGTERM), starts it again and waits until ready.
func (n *Node) Restart(ctx context.Context) error {
	if err := n.Stop(); err != nil {
		return err
	}
	if err := n.Start(); err != nil {
		return err
	}
	return n.WaitReady(ctx, 30*time.Second)
}

// CrashAndMove kills weftd (SIGKILL: a crash, not a clean stop), moves the
// node to the underlay address ip ([Node.ChangeIP]), starts weftd again
// and waits up to ready for it to be ready. It returns when weftd was
// started, for timing what follows.
func (n *Node) CrashAndMove(ctx context.Context, ip netip.Addr, ready time.Duration) (started time.Time, err error) {
	if err := n.Kill(); err != nil {
		return time.Time{}, err
	}
	if err := n.ChangeIP(ip); err != nil {
		return time.Time{}, err
	}
	started = time.Now()
	if err := n.Start(); err != nil {
		return started, err
	}
	return started, n.WaitReady(ctx, ready)
}

// HTTPClient returns an HTTP client whose connections are made inside the
// node's namespace (the node's weftd listens on its underlay address).
func (n *Node) HTTPClient() *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DialContext:       n.NS.DialContext,
			DisableKeepAlives: true,
		},
	}
}

// Get fetches path from weftd's HTTP API and returns the status code and
// body.
func (n *Node) Get(ctx context.Context, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.HTTPAddr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := n.HTTPClient().Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("GET %s on %s: %w", path, n.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("read %s on %s: %w", path, n.Name, err)
	}
	return resp.StatusCode, body, nil
}

// Status returns weftd's GET /status.
func (n *Node) Status(ctx context.Context) (*status.Report, error) {
	code, body, err := n.Get(ctx, "/status")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /status on %s: HTTP %d: %s", n.Name, code, body)
	}
	var s status.Report
	if err := json.Unmarshal(body, &s); err != nil {
		return nil, fmt.Errorf("decode /status of %s: %w: %s", n.Name, err, body)
	}
	return &s, nil
}

// WaitReady polls /readyz until it answers 200, weftd exits, or the
// timeout passes.
func (n *Node) WaitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		code, body, err := n.Get(ctx, "/readyz")
		if err == nil && code == http.StatusOK {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("HTTP %d: %s", code, body)
		}
		if !n.Running() {
			return fmt.Errorf("weftd on %s exited before ready (%s); log %s:\n%s", n.Name, last, n.LogFile, n.LogTail(30))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("weftd on %s not ready after %s (%s); log %s:\n%s", n.Name, timeout, last, n.LogFile, n.LogTail(30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SubnetFile reads the node's subnet file.
func (n *Node) SubnetFile() (*subnet.SubnetFile, error) {
	return subnet.ReadSubnetFile(n.SubnetFilePath)
}

// Subnet returns the node's IPv4 pod subnet (masked) from its subnet file.
func (n *Node) Subnet() (netip.Prefix, error) {
	f, err := n.SubnetFile()
	if err != nil {
		return netip.Prefix{}, err
	}
	return f.Subnet.Masked(), nil
}

// LogTail returns the last lines of weftd's log.
func (n *Node) LogTail(lines int) string {
	data, _ := os.ReadFile(n.LogFile)
	return tail(data, lines)
}

// writeStaticSubnetFile writes a subnet file for a node without weftd
// (Options.NoDaemons): 10.244.<index>.0/24, MTU 1450.
func (n *Node) writeStaticSubnetFile() error {
	f := &subnet.SubnetFile{
		Network: netip.MustParsePrefix(DefaultNetwork),
		Subnet:  netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(n.Index), 1}), 24),
		MTU:     1450,
		IPMasq:  true,
	}
	if n.c.ipv6() {
		f.IPv6Network = netip.MustParsePrefix(DefaultIPv6Network)
		f.IPv6Subnet = netip.MustParsePrefix(fmt.Sprintf("fd10:244:0:%x::1/64", n.Index))
	}
	return subnet.WriteSubnetFile(n.SubnetFilePath, f)
}
