// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kubetest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/namespace"
	"github.com/weftnet/weft/e2e/netnstest"
)

// Ports the control plane listens on inside its namespace.
const (
	APIServerPort = 6443
	etcdClientURL = "http://127.0.0.1:2479"
	etcdPeerURL   = "http://127.0.0.1:2480"
)

// AdminUser is the user name of the admin token; it is in the
// system:masters group.
const AdminUser = e2e.KubeAdminUser

// Options configure [Start]. The zero value runs etcd and kube-apiserver
// in a namespace of their own.
type Options struct {
	// NetNS names an existing network namespace (under /run/netns) to run
	// in, and Addr is an address of one of its links: the API server
	// advertises it and listens on it. Empty: Start creates a namespace
	// whose loopback link holds DefaultAddr.
	NetNS string
	Addr  netip.Addr
	// ControllerManager also runs kube-controller-manager with the
	// nodeipam and garbagecollector controllers.
	ControllerManager bool
	// ClusterCIDRs are the pod networks the controller-manager assigns
	// Nodes' podCIDRs from (one per family; default 10.244.0.0/16), in
	// blocks of NodeMaskSize4 and NodeMaskSize6 bits (default 24, 64).
	ClusterCIDRs                 []netip.Prefix
	NodeMaskSize4, NodeMaskSize6 int
	// ServiceCIDR is the service IP range (default 10.96.0.0/16).
	ServiceCIDR netip.Prefix
	// EtcdBinary is weft-etcd. Default: $WEFT_BIN_DIR/weft-etcd when that
	// exists, otherwise built into the test's temporary directory.
	EtcdBinary string
	// ReadyTimeout bounds start → /readyz (default 120 s: a loaded 2-core
	// machine).
	ReadyTimeout time.Duration
}

// RequireTools returns the [ToolsEnv] directory. It skips the test when
// the test may not run privileged code or the variable is unset, and
// fails it when the variable is unset under CI (CI non-empty, as
// .ci/run sets it) or names a directory without the programs.
func RequireTools(t testing.TB) string {
	t.Helper()
	netnstest.SkipUnlessRoot(t)
	dir, skip, err := toolsDir(os.Getenv, os.Stat)
	if err != nil {
		t.Fatal(err)
	}
	if skip != "" {
		t.Skip(skip)
	}
	return dir
}

// DefaultAddr is the API server's address in a namespace Start creates.
var DefaultAddr = netip.MustParseAddr("198.18.0.2")

// Cluster is a running control plane.
type Cluster struct {
	// NetNS is the namespace the processes run in; Addr the API server's
	// address there, URL its https URL.
	NetNS string
	Addr  netip.Addr
	URL   string
	// Dir holds the credentials, etcd's data, the kubeconfig and the logs
	// (removed at cleanup).
	Dir string
	// Kubeconfig is an admin kubeconfig file (token AdminUser, in
	// system:masters). Its server is reachable only from inside NetNS.
	Kubeconfig string
	// Config is the same admin config for this process: it dials from
	// inside NetNS. Copy it before changing it.
	Config *rest.Config
	// CAPEM is the CA of the API server's serving certificate.
	CAPEM []byte
	// ServiceAccountKey is the PEM file of the RSA key that signs
	// service-account tokens.
	ServiceAccountKey string
	// APIServerReady is the time from starting kube-apiserver to its
	// first successful /readyz; ControllerManagerHealthy the same for
	// kube-controller-manager's /healthz (zero without it).
	APIServerReady           time.Duration
	ControllerManagerHealthy time.Duration

	tools string
	ns    netns.NsHandle
	opts  Options
	pki   *e2e.KubePKI

	// mu guards the processes.
	mu                   sync.Mutex
	etcd, apiserver, kcm *Proc
}

// Start starts etcd, kube-apiserver and, with opts.ControllerManager,
// kube-controller-manager, and waits until each serves. It skips the test
// when it is not privileged or WEFT_KUBE_TOOLS is unset (it fails instead
// under CI), and registers a cleanup that stops every process it started,
// prints their logs' ends when the test failed, and removes their files.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	tools := RequireTools(t)
	opts = withDefaults(opts)
	c := &Cluster{Dir: t.TempDir(), tools: tools, opts: opts}
	if err := c.setupNS(t); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.cleanup(t) })

	var err error
	if c.pki, err = e2e.WriteKubePKI(c.Dir, []netip.Addr{c.Addr, e2e.FirstServiceIP(opts.ServiceCIDR)}); err != nil {
		t.Fatal(err)
	}
	c.CAPEM, c.ServiceAccountKey = c.pki.CAPEM, c.pki.ServiceAccountKey
	c.URL = "https://" + net.JoinHostPort(c.Addr.String(), strconv.Itoa(APIServerPort))
	c.Config = &rest.Config{
		Host:            c.URL,
		BearerToken:     c.pki.AdminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CAPEM},
		Dial:            c.DialContext,
		QPS:             200,
		Burst:           400,
	}
	if c.Kubeconfig, err = c.writeKubeconfig(); err != nil {
		t.Fatal(err)
	}

	etcdBin := opts.EtcdBinary
	if etcdBin == "" {
		if etcdBin, err = findEtcd(t); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	if err := c.startEtcd(etcdBin); err != nil {
		t.Fatal(err)
	}
	if err := c.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	if opts.ControllerManager {
		if err := c.startControllerManager(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func withDefaults(o Options) Options {
	if len(o.ClusterCIDRs) == 0 {
		o.ClusterCIDRs = []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}
	}
	if o.NodeMaskSize4 == 0 {
		o.NodeMaskSize4 = 24
	}
	if o.NodeMaskSize6 == 0 {
		o.NodeMaskSize6 = 64
	}
	if !o.ServiceCIDR.IsValid() {
		o.ServiceCIDR = netip.MustParsePrefix("10.96.0.0/16")
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 120 * time.Second
	}
	return o
}

// setupNS opens opts.NetNS, or creates a namespace whose loopback holds
// DefaultAddr.
func (c *Cluster) setupNS(t testing.TB) error {
	if c.opts.NetNS != "" {
		if !c.opts.Addr.IsValid() {
			return fmt.Errorf("kubetest: Options.NetNS %s given without Options.Addr", c.opts.NetNS)
		}
		h, err := namespace.Open(c.opts.NetNS)
		if err != nil {
			return err
		}
		c.NetNS, c.Addr, c.ns = c.opts.NetNS, c.opts.Addr, h
		return nil
	}
	ns := netnstest.NewNS(t, "kt")
	h, err := namespace.Open(ns.Name)
	if err != nil {
		return err
	}
	c.NetNS, c.Addr, c.ns = ns.Name, DefaultAddr, h
	// This kernel has no dummy links; loopback (already up) holds the
	// address as well: the API server only needs it on some link.
	nl := ns.Netlink(t)
	lo, err := nl.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo in %s: %w", ns.Name, err)
	}
	addr := &netlink.Addr{IPNet: netnstest.IPNet(netip.PrefixFrom(c.Addr, c.Addr.BitLen()))}
	if err := nl.AddrAdd(lo, addr); err != nil {
		return fmt.Errorf("add %s to lo in %s: %w", c.Addr, ns.Name, err)
	}
	return nil
}

// findEtcd returns $WEFT_BIN_DIR/weft-etcd, or builds weft-etcd into the
// test's temporary directory.
func findEtcd(t testing.TB) (string, error) {
	if d := os.Getenv(e2e.BinDirEnv); d != "" {
		p := filepath.Join(d, e2e.BinWeftEtcd)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := e2e.BuildBinaries(ctx, dir, e2e.BinWeftEtcd); err != nil {
		return "", err
	}
	return filepath.Join(dir, e2e.BinWeftEtcd), nil
}

func (c *Cluster) writeKubeconfig() (string, error) {
	path := filepath.Join(c.Dir, "admin.kubeconfig")
	return path, e2e.WriteKubeconfig(path, c.URL, c.CAPEM, AdminUser, c.pki.AdminToken)
}

// DialContext dials address from inside the cluster's namespace. It fits
// rest.Config.Dial and http.Transport.DialContext.
func (c *Cluster) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var conn net.Conn
	err := namespace.Do(c.ns, func() error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, network, address)
		return err
	})
	return conn, err
}

// Client returns an admin clientset; its connections are closed when the
// test ends.
func (c *Cluster) Client(t testing.TB) kubernetes.Interface {
	t.Helper()
	cfg := rest.CopyConfig(c.Config)
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatalf("http client: %v", err)
	}
	t.Cleanup(hc.CloseIdleConnections)
	cs, err := kubernetes.NewForConfigAndClient(cfg, hc)
	if err != nil {
		t.Fatalf("clientset: %v", err)
	}
	return cs
}

func (c *Cluster) startEtcd(bin string) error {
	dataDir := filepath.Join(c.Dir, "etcd")
	log := filepath.Join(c.Dir, "etcd.log")
	p, err := startProc(c.ns, bin, []string{
		"--data-dir", dataDir,
		"--listen-client-url", etcdClientURL,
		"--listen-peer-url", etcdPeerURL,
	}, log)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.etcd = p
	c.mu.Unlock()
	return p.waitLogLine("ready", 60*time.Second)
}

// plane describes the processes' command lines.
func (c *Cluster) plane() e2e.KubePlane {
	return e2e.KubePlane{
		Addr: c.Addr, Port: APIServerPort, EtcdServers: etcdClientURL, Dir: c.Dir, PKI: c.pki,
		ServiceCIDR: c.opts.ServiceCIDR, ClusterCIDRs: c.opts.ClusterCIDRs,
		NodeMaskSize4: c.opts.NodeMaskSize4, NodeMaskSize6: c.opts.NodeMaskSize6,
		Kubeconfig: c.Kubeconfig,
	}
}

// StartAPIServer starts kube-apiserver (again, after [Cluster.StopAPIServer])
// and waits for /readyz, recording the time in APIServerReady.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apiserver != nil {
		if exited, _ := c.apiserver.Exited(); !exited {
			return nil
		}
	}
	start := time.Now()
	p, err := startProc(c.ns, filepath.Join(c.tools, "kube-apiserver"), c.plane().APIServerArgs(), filepath.Join(c.Dir, "kube-apiserver.log"))
	if err != nil {
		return err
	}
	c.apiserver = p
	hc, err := rest.HTTPClientFor(c.Config)
	if err != nil {
		return fmt.Errorf("http client: %w", err)
	}
	defer hc.CloseIdleConnections()
	if err := c.poll(ctx, p, hc, c.URL+"/readyz"); err != nil {
		return err
	}
	c.APIServerReady = time.Since(start)
	return nil
}

// StopAPIServer stops kube-apiserver (SIGTERM, SIGKILL after 15 s); etcd
// and the controller-manager keep running.
func (c *Cluster) StopAPIServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apiserver == nil {
		return nil
	}
	return c.apiserver.Stop(15 * time.Second)
}

// KillAPIServer kills kube-apiserver with SIGKILL, as a crash or a power
// loss would, and waits until it is gone: its clients see the outage at
// once, where a SIGTERM has it drain its watches first.
func (c *Cluster) KillAPIServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apiserver == nil {
		return nil
	}
	return c.apiserver.Kill(10 * time.Second)
}

// APIServer returns the running kube-apiserver process.
func (c *Cluster) APIServer() *Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.apiserver
}

// StopControllerManager stops kube-controller-manager (SIGTERM, SIGKILL
// after 15 s): Nodes created meanwhile get no podCIDRs, as in a cluster
// whose controller-manager runs without --allocate-node-cidrs.
func (c *Cluster) StopControllerManager() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kcm == nil {
		return nil
	}
	return c.kcm.Stop(15 * time.Second)
}

// StartControllerManager starts kube-controller-manager again after
// [Cluster.StopControllerManager] and waits for its /healthz. It is a
// no-op while it runs, and an error without Options.ControllerManager.
func (c *Cluster) StartControllerManager(ctx context.Context) error {
	if !c.opts.ControllerManager {
		return errors.New("kubetest: the cluster was started without Options.ControllerManager")
	}
	if p := c.ControllerManager(); p != nil {
		if exited, _ := p.Exited(); !exited {
			return nil
		}
	}
	return c.startControllerManager(ctx)
}

// ControllerManager returns the kube-controller-manager process (nil
// without Options.ControllerManager).
func (c *Cluster) ControllerManager() *Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.kcm
}

func (c *Cluster) startControllerManager(ctx context.Context) error {
	args := c.plane().ControllerManagerArgs()
	start := time.Now()
	p, err := startProc(c.ns, filepath.Join(c.tools, "kube-controller-manager"), args, filepath.Join(c.Dir, "kube-controller-manager.log"))
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.kcm = p
	c.mu.Unlock()
	// Its serving certificate is self-signed, made at start; /healthz is
	// open to anonymous clients (--authorization-always-allow-paths).
	hc := &http.Client{Transport: &http.Transport{
		DialContext:     c.DialContext,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
	defer hc.CloseIdleConnections()
	if err := c.poll(ctx, p, hc, e2e.KubeControllerManagerHealthz); err != nil {
		return err
	}
	c.ControllerManagerHealthy = time.Since(start)
	return nil
}

// poll GETs url until it answers 200, failing early when p exits.
func (c *Cluster) poll(ctx context.Context, p *Proc, hc *http.Client, url string) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.ReadyTimeout)
	defer cancel()
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if exited, werr := p.Exited(); exited {
			return fmt.Errorf("%s exited (%v) before %s answered:\n%s", p.Name, werr, url, p.tail(30))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %s not ready within %s (last: %s):\n%s", p.Name, url, c.opts.ReadyTimeout, last, p.tail(30))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Kubectl runs kubectl with the admin kubeconfig inside the cluster's
// namespace and returns its standard output.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.tools, "kubectl"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	cmd.Env = childEnv()
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := namespace.Do(c.ns, cmd.Start); err != nil {
		return "", fmt.Errorf("start kubectl: %w", err)
	}
	if err := cmd.Wait(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}

// cleanup stops the processes in reverse order, shows the ends of their
// logs if the test failed, and closes the namespace handle. The files go
// with the test's temporary directory; a namespace Start created goes with
// its own cleanup.
func (c *Cluster) cleanup(t testing.TB) {
	c.mu.Lock()
	procs := []*Proc{c.kcm, c.apiserver, c.etcd}
	c.mu.Unlock()
	var errs []error
	for _, p := range procs {
		if p == nil {
			continue
		}
		if err := p.Stop(15 * time.Second); err != nil {
			errs = append(errs, err)
		}
		if t.Failed() {
			t.Logf("--- %s log (last 40 lines of %s):\n%s", p.Name, p.Log, p.tail(40))
		}
	}
	if c.ns.IsOpen() {
		c.ns.Close()
	}
	if err := errors.Join(errs...); err != nil {
		t.Errorf("stop control plane: %v", err)
	}
}
