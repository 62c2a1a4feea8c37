// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Cluster is a running topology. Its methods are safe for concurrent use
// unless noted.
type Cluster struct {
	opts Options
	// ID is the random run ID carried by names.
	ID string
	// Dir holds the cluster's files.
	Dir string
	// BinDir holds the binaries run.
	BinDir string

	// Underlay holds the underlay bridge and etcd; Outside is a host on
	// the underlay that is not a node.
	Underlay NS
	Outside  NS
	// Router is set when the second segment exists.
	Router *NS
	// Etcd is the cluster's etcd process; nil when the cluster runs a
	// multi-member etcd (Options.EtcdMembers), which is EtcdCluster.
	Etcd        *Etcd
	EtcdCluster *EtcdCluster

	// kube is the control plane in Kubernetes mode (Options.Kube).
	kube *kubeRun

	// mu guards the following.
	mu    sync.Mutex
	nodes []*Node
	state State
}

func (c *Cluster) logf(format string, args ...any) {
	if c.opts.Logf != nil {
		c.opts.Logf(format, args...)
	}
}

// New builds the topology described by opts: namespaces, bridge, veths,
// etcd with the network config, the initial nodes (weftd started and
// ready) and their pods. On error everything made so far is torn down.
func New(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Nodes < 0 {
		opts.Nodes = 0
	}
	if opts.Backend == "" {
		opts.Backend = "vxlan"
	}
	id, err := randomID()
	if err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts, ID: id, BinDir: opts.BinDir}
	if c.opts.NamePrefix == "" {
		c.opts.NamePrefix = "wt" + id + "-"
	}
	if c.opts.DeviceSuffix == "" {
		c.opts.DeviceSuffix = id
	}
	c.Dir = opts.Dir
	ownDir := opts.RemoveDir
	if c.Dir == "" {
		c.Dir, err = os.MkdirTemp("", "weft-e2e-"+id+"-")
		if err != nil {
			return nil, fmt.Errorf("create cluster dir: %w", err)
		}
		ownDir = true
	} else if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create cluster dir: %w", err)
	}
	c.state = State{ID: id, Dir: c.Dir, OwnDir: ownDir, Backend: opts.Backend}
	if err := c.build(ctx); err != nil {
		// The logs go with the directory: keep their ends in the error.
		logs := c.Logs(30)
		c.Close()
		return nil, fmt.Errorf("%w\nlogs before teardown:\n%s", err, logs)
	}
	return c, nil
}

func randomID() (string, error) {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random id: %w", err)
	}
	return hex.EncodeToString(b)[:5], nil
}

func (c *Cluster) needRouter() bool {
	if c.opts.Router {
		return true
	}
	for i := 0; i < c.opts.Nodes && i < len(c.opts.Segments); i++ {
		if c.opts.Segments[i] == 1 {
			return true
		}
	}
	return false
}

func (c *Cluster) build(ctx context.Context) error {
	start := time.Now()
	c.logf("creating the underlay namespace and bridge")
	if err := c.buildUnderlay(); err != nil {
		return err
	}
	if err := c.buildOutside(); err != nil {
		return err
	}
	c.logf("created the outside host namespace %s (%s)", c.Outside.Name, OutsideIP)
	if c.needRouter() {
		c.logf("creating the router namespace and the second segment 198.18.1.0/24")
		if err := c.buildRouter(); err != nil {
			return err
		}
	}
	c.logf("starting etcd in %s on %s", c.Underlay.Name, c.EtcdEndpoint())
	etcdStart := time.Now()
	if err := c.startEtcd(ctx); err != nil {
		return err
	}
	c.logf("etcd ready in %.2fs", time.Since(etcdStart).Seconds())
	if c.opts.Kube != nil {
		c.logf("starting the Kubernetes control plane in %s", c.Underlay.Name)
		if err := c.startKube(ctx); err != nil {
			return err
		}
		c.logf("network config in ConfigMap %s/weft-config: %s", KubeNamespace, c.NetworkConfig())
	} else {
		if err := c.putConfig(ctx, c.NetworkConfig()); err != nil {
			return err
		}
		c.logf("network config written: %s", c.NetworkConfig())
	}
	var nodes []*Node
	for i := 0; i < c.opts.Nodes; i++ {
		seg := 0
		if i < len(c.opts.Segments) {
			seg = c.opts.Segments[i]
		}
		n, err := c.AddNode(seg)
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
	}
	if c.kube != nil {
		for _, n := range nodes {
			if err := c.KubeJoin(ctx, n); err != nil {
				return err
			}
			c.logf("created Node %s, its weftd pod and a token bound to it", n.Name)
		}
	}
	if !c.opts.NoDaemons {
		for _, n := range nodes {
			c.logf("starting weftd on %s (%s)", n.Name, n.IP)
			if err := n.Start(); err != nil {
				return err
			}
		}
		for _, n := range nodes {
			if err := n.WaitReady(ctx, 60*time.Second); err != nil {
				return err
			}
			sf, _ := n.SubnetFile()
			if sf != nil {
				c.logf("%s ready: subnet %s", n.Name, joinPrefixes(sf.Subnet, sf.IPv6Subnet))
			}
		}
	} else {
		for _, n := range nodes {
			if err := n.writeStaticSubnetFile(); err != nil {
				return err
			}
		}
	}
	for _, n := range nodes {
		for j := 0; j < c.opts.PodsPerNode; j++ {
			p, err := n.AddPod(ctx)
			if err != nil {
				return err
			}
			c.logf("pod %s on %s: %s", p.Name, n.Name, joinAddrs(p.IP, p.IPv6))
		}
	}
	c.logf("cluster up in %.2fs", time.Since(start).Seconds())
	return nil
}

func joinPrefixes(ps ...netip.Prefix) string {
	var s []string
	for _, p := range ps {
		if p.IsValid() {
			s = append(s, p.String())
		}
	}
	return strings.Join(s, ", ")
}

func joinAddrs(as ...netip.Addr) string {
	var s []string
	for _, a := range as {
		if a.IsValid() {
			s = append(s, a.String())
		}
	}
	return strings.Join(s, ", ")
}

// newNS creates a namespace named prefix+name and records it.
func (c *Cluster) newNS(name string) (NS, error) {
	full := c.opts.NamePrefix + name
	n, err := createNS(full)
	if err != nil {
		return NS{}, err
	}
	c.mu.Lock()
	c.state.Namespaces = append(c.state.Namespaces, full)
	c.mu.Unlock()
	c.saveState()
	return n, nil
}

func addAddr(h *netlink.Handle, link netlink.Link, a netip.Addr, bits int) error {
	addr := &netlink.Addr{IPNet: prefixIPNet(netip.PrefixFrom(a, bits))}
	if a.Is6() {
		addr.Flags = unix.IFA_F_NODAD
	}
	if err := h.AddrAdd(link, addr); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add %s/%d to %s: %w", a, bits, link.Attrs().Name, err)
	}
	return nil
}

func (c *Cluster) ipv6() bool { return c.opts.DualStack }

func (c *Cluster) buildUnderlay() error {
	var err error
	if c.Underlay, err = c.newNS("underlay"); err != nil {
		return err
	}
	c.state.Underlay = c.Underlay.Name
	if c.ipv6() {
		c.Underlay.Sysctl("net/ipv6/conf/all/accept_dad", "0")
		c.Underlay.Sysctl("net/ipv6/conf/default/accept_dad", "0")
	}
	return c.Underlay.withHandle(func(h *netlink.Handle) error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
		if err := h.LinkAdd(br); err != nil {
			return fmt.Errorf("add underlay bridge: %w", err)
		}
		for _, a := range []netip.Addr{underlayGW, EtcdIP} {
			if err := addAddr(h, br, a, 24); err != nil {
				return err
			}
		}
		if c.ipv6() {
			for _, a := range []netip.Addr{underlayGW6, etcdIP6} {
				if err := addAddr(h, br, a, 64); err != nil {
					return err
				}
			}
		}
		return h.LinkSetUp(br)
	})
}

// plugIn connects namespace ns to a bridge in namespace brNS with a veth
// pair: portName on the bridge side, "eth0" (or ifName) inside ns,
// addresses addrs, default route via gw (and gw6).
func plugIn(brNS NS, bridge, portName string, ns NS, ifName string, addrs []netip.Prefix, gw, gw6 netip.Addr) error {
	nsFd, err := nsFD(ns)
	if err != nil {
		return err
	}
	defer unix.Close(nsFd)
	err = brNS.withHandle(func(h *netlink.Handle) error {
		br, err := h.LinkByName(bridge)
		if err != nil {
			return fmt.Errorf("find bridge %s in %s: %w", bridge, brNS.Name, err)
		}
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: portName, MasterIndex: br.Attrs().Index},
			PeerName:      ifName,
			PeerNamespace: netlink.NsFd(nsFd),
		}
		if err := h.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth %s: %w", portName, err)
		}
		port, err := h.LinkByName(portName)
		if err != nil {
			return fmt.Errorf("find veth %s: %w", portName, err)
		}
		return h.LinkSetUp(port)
	})
	if err != nil {
		return err
	}
	return ns.withHandle(func(h *netlink.Handle) error {
		l, err := h.LinkByName(ifName)
		if err != nil {
			return fmt.Errorf("find %s in %s: %w", ifName, ns.Name, err)
		}
		for _, p := range addrs {
			if err := addAddr(h, l, p.Addr(), p.Bits()); err != nil {
				return err
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("set %s up: %w", ifName, err)
		}
		for _, g := range []netip.Addr{gw, gw6} {
			if !g.IsValid() {
				continue
			}
			r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: g.AsSlice()}
			if g.Is6() {
				r.Family = netlink.FAMILY_V6
			}
			if err := h.RouteAdd(r); err != nil {
				return fmt.Errorf("add default route via %s in %s: %w", g, ns.Name, err)
			}
		}
		return nil
	})
}

func nsFD(ns NS) (int, error) {
	fd, err := unix.Open(ns.Path(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", ns.Path(), err)
	}
	return fd, nil
}

func (c *Cluster) buildOutside() error {
	var err error
	if c.Outside, err = c.newNS("outside"); err != nil {
		return err
	}
	c.state.Outside = c.Outside.Name
	addrs := []netip.Prefix{netip.PrefixFrom(OutsideIP, 24)}
	if c.ipv6() {
		c.Outside.Sysctl("net/ipv6/conf/all/accept_dad", "0")
		addrs = append(addrs, netip.PrefixFrom(OutsideIPv6, 64))
	}
	// The outside host has no route to any pod network: it only ever
	// answers the address it sees, which must be a node's.
	return plugIn(c.Underlay, "br0", "out-"+c.ID, c.Outside, "eth0", addrs, netip.Addr{}, netip.Addr{})
}

func (c *Cluster) buildRouter() error {
	r, err := c.newNS("router")
	if err != nil {
		return err
	}
	c.Router = &r
	c.state.Router = r.Name
	if err := r.Sysctl("net/ipv4/ip_forward", "1"); err != nil {
		return fmt.Errorf("enable forwarding in router: %w", err)
	}
	addrs := []netip.Prefix{netip.PrefixFrom(RouterIP, 24)}
	if c.ipv6() {
		r.Sysctl("net/ipv6/conf/all/accept_dad", "0")
		r.Sysctl("net/ipv6/conf/default/accept_dad", "0")
		if err := r.Sysctl("net/ipv6/conf/all/forwarding", "1"); err != nil {
			return fmt.Errorf("enable IPv6 forwarding in router: %w", err)
		}
		addrs = append(addrs, netip.PrefixFrom(routerIP6, 64))
	}
	if err := plugIn(c.Underlay, "br0", "rtr-"+c.ID, r, "eth0", addrs, netip.Addr{}, netip.Addr{}); err != nil {
		return err
	}
	// The underlay (etcd) and the outside host reach segment 1 through
	// the router.
	for _, ns := range []NS{c.Underlay, c.Outside} {
		err := ns.withHandle(func(h *netlink.Handle) error {
			if err := h.RouteAdd(&netlink.Route{Dst: prefixIPNet(segmentPrefix[1]), Gw: RouterIP.AsSlice()}); err != nil {
				return fmt.Errorf("route to segment 1 in %s: %w", ns.Name, err)
			}
			if c.ipv6() {
				if err := h.RouteAdd(&netlink.Route{Dst: prefixIPNet(segmentPrefix6[1]), Gw: routerIP6.AsSlice()}); err != nil {
					return fmt.Errorf("IPv6 route to segment 1 in %s: %w", ns.Name, err)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return r.withHandle(func(h *netlink.Handle) error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br1"}}
		if err := h.LinkAdd(br); err != nil {
			return fmt.Errorf("add segment bridge: %w", err)
		}
		if err := addAddr(h, br, segment1GW, 24); err != nil {
			return err
		}
		if c.ipv6() {
			if err := addAddr(h, br, segment1GW6, 64); err != nil {
				return err
			}
		}
		return h.LinkSetUp(br)
	})
}

// EtcdEndpoint is the client URL of the cluster's etcd (reachable from
// every namespace of the cluster, never from the root namespace).
// With a multi-member etcd it lists every member's, separated by commas
// (as --etcd-endpoints takes them).
func (c *Cluster) EtcdEndpoint() string {
	if c.opts.EtcdMembers > 1 {
		return strings.Join(c.etcdMemberEndpoints(), ",")
	}
	return fmt.Sprintf("http://%s:%d", EtcdIP, EtcdClientPort)
}

func (c *Cluster) startEtcd(ctx context.Context) error {
	bin, err := checkBinary(c.BinDir, BinWeftEtcd)
	if err != nil {
		return err
	}
	if c.opts.EtcdMembers > 1 {
		return c.startEtcdCluster(ctx, bin)
	}
	c.Etcd = &Etcd{
		NS:       c.Underlay,
		Binary:   bin,
		DataDir:  filepath.Join(c.Dir, "etcd"),
		LogFile:  filepath.Join(c.Dir, "etcd.log"),
		Endpoint: c.EtcdEndpoint(),
		peerURL:  fmt.Sprintf("http://%s:%d", EtcdIP, etcdPeerPort),
		onStart: func(p *Proc) {
			c.mu.Lock()
			c.state.Etcd = p
			c.mu.Unlock()
			c.saveState()
		},
	}
	c.state.EtcdEndpoint = c.EtcdEndpoint()
	return c.Etcd.Start(ctx)
}

// NetworkConfig returns the network config JSON the cluster writes.
func (c *Cluster) NetworkConfig() string {
	if c.opts.NetworkConfig != "" {
		return c.opts.NetworkConfig
	}
	cfg := map[string]any{"Network": DefaultNetwork}
	if c.opts.DualStack {
		cfg["IPv6Network"] = DefaultIPv6Network
	}
	be := map[string]any{"Type": c.opts.Backend}
	if c.opts.DirectRouting {
		be["DirectRouting"] = true
	}
	cfg["Backend"] = be
	b, _ := json.Marshal(cfg)
	return string(b)
}

// Backend is the backend type the cluster was built with.
func (c *Cluster) Backend() string { return c.opts.Backend }

// Nodes returns the cluster's nodes in order of creation.
func (c *Cluster) Nodes() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Node(nil), c.nodes...)
}

// Pods returns every pod of every node.
func (c *Cluster) Pods() []*Pod {
	var ps []*Pod
	for _, n := range c.Nodes() {
		ps = append(ps, n.Pods()...)
	}
	return ps
}

// AddNode creates a node namespace on the given segment (0 or 1) and
// plugs it in; it does not start weftd (see [Node.Start]).
func (c *Cluster) AddNode(segment int) (*Node, error) {
	if segment == 1 && c.Router == nil {
		return nil, errors.New("segment 1 needs the router (Options.Router or Options.Segments)")
	}
	c.mu.Lock()
	idx := len(c.nodes) + 1
	c.mu.Unlock()
	name := fmt.Sprintf("node%d", idx)
	ns, err := c.newNS(name)
	if err != nil {
		return nil, err
	}
	seg := segmentPrefix[segment]
	ip := seg.Addr().As4()
	ip[3] = byte(10 + idx)
	n := &Node{
		c:       c,
		Index:   idx,
		Name:    name,
		NS:      ns,
		Segment: segment,
		IP:      netip.AddrFrom4(ip),
		Dir:     filepath.Join(c.Dir, name),
	}
	if c.ipv6() {
		ip6 := segmentPrefix6[segment].Addr().As16()
		ip6[15] = byte(10 + idx)
		n.IPv6 = netip.AddrFrom16(ip6)
		ns.Sysctl("net/ipv6/conf/all/accept_dad", "0")
		ns.Sysctl("net/ipv6/conf/default/accept_dad", "0")
	}
	n.initPaths()
	if err := os.MkdirAll(n.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create node dir: %w", err)
	}
	addrs := []netip.Prefix{netip.PrefixFrom(n.IP, 24)}
	if n.IPv6.IsValid() {
		addrs = append(addrs, netip.PrefixFrom(n.IPv6, 64))
	}
	// A default route makes the node look like a real host (weftd finds
	// its interface from it). Through the router, segment 1 reaches etcd
	// and the outside host on segment 0; without a router, the underlay
	// namespace is a dead end for anything that is not on the segment.
	brNS, bridge, gw, gw6 := c.Underlay, "br0", n.defaultGateway(), netip.Addr{}
	if segment == 1 {
		brNS, bridge = *c.Router, "br1"
		if c.ipv6() {
			gw6 = segment1GW6
		}
	} else if c.Router != nil && c.ipv6() {
		gw6 = routerIP6
	}
	if err := plugIn(brNS, bridge, fmt.Sprintf("n%d-%s", idx, c.ID), ns, "eth0", addrs, gw, gw6); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.state.Nodes = append(c.state.Nodes, NodeState{Name: name, Namespace: ns.Name, IP: n.IP.String(), HTTPAddr: n.HTTPAddr, SubnetFile: n.SubnetFilePath, LogFile: n.LogFile})
	if c.opts.Backend == "wireguard" {
		c.state.WireGuardDevices = append(c.state.WireGuardDevices, n.WireGuardDevice)
	}
	c.mu.Unlock()
	c.saveState()
	return n, nil
}

// State returns a copy of what the cluster created so far.
func (c *Cluster) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.state
	s.Namespaces = append([]string(nil), s.Namespaces...)
	s.EtcdMembers = append([]*Proc(nil), s.EtcdMembers...)
	s.Nodes = append([]NodeState(nil), s.Nodes...)
	s.Pods = append([]PodState(nil), s.Pods...)
	s.WireGuardDevices = append([]string(nil), s.WireGuardDevices...)
	return s
}

func (c *Cluster) saveState() {
	if c.opts.StateFile == "" {
		return
	}
	SaveState(c.opts.StateFile, c.State()) // best effort: the next step saves again
}

// updateNode applies update to the [NodeState] of the node called name
// and saves the state.
func (c *Cluster) updateNode(name string, update func(*NodeState)) {
	c.mu.Lock()
	for i := range c.state.Nodes {
		if c.state.Nodes[i].Name == name {
			update(&c.state.Nodes[i])
		}
	}
	c.mu.Unlock()
	c.saveState()
}

// Close stops every process and removes every namespace, link and file the
// cluster made (the directory only if New created it or Options.RemoveDir
// is set). It is idempotent.
func (c *Cluster) Close() error {
	return Teardown(c.State())
}

// Teardown removes what s records: it stops the weftd processes and etcd
// (SIGTERM, then SIGKILL), deletes the namespaces in reverse order (their
// links go with them), removes this cluster's WireGuard UAPI sockets, and
// the directory when the cluster created it.
func Teardown(s State) error {
	var errs []error
	var procs []*Proc
	for _, n := range s.Nodes {
		if n.Weftd != nil {
			procs = append(procs, n.Weftd)
		}
	}
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Stop(3 * time.Second)
		}()
	}
	wg.Wait()
	for _, p := range procs {
		if p.Alive() {
			errs = append(errs, fmt.Errorf("weftd pid %d still running", p.PID))
		}
	}
	if k := s.Kube; k != nil {
		// The controller-manager first: it writes through the API server.
		for _, p := range []*Proc{k.ControllerManager, k.APIServer} {
			if err := p.Stop(15 * time.Second); err != nil {
				errs = append(errs, fmt.Errorf("stop %s: %w", filepath.Base(p.Binary), err))
			}
		}
	}
	if s.Etcd != nil {
		if err := s.Etcd.Stop(10 * time.Second); err != nil {
			errs = append(errs, fmt.Errorf("stop etcd: %w", err))
		}
	}
	for i, p := range s.EtcdMembers {
		if err := p.Stop(10 * time.Second); err != nil {
			errs = append(errs, fmt.Errorf("stop etcd member %d: %w", i+1, err))
		}
	}
	for i := len(s.Namespaces) - 1; i >= 0; i-- {
		if err := deleteNS(s.Namespaces[i]); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range s.WireGuardDevices {
		if d == "" {
			continue
		}
		sock := uapiSocket(d)
		if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove %s: %w", sock, err))
		}
	}
	if s.OwnDir && s.Dir != "" {
		if err := os.RemoveAll(s.Dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", s.Dir, err))
		}
	}
	return errors.Join(errs...)
}

// uapiSocket is the UAPI socket of the userspace WireGuard device dev.
func uapiSocket(dev string) string { return filepath.Join("/var/run/wireguard", dev+".sock") }

// Weftctl runs weftctl with args in the underlay namespace, where etcd is
// reachable, with --etcd-endpoints and --etcd-prefix set after the
// subcommand words (args up to the first flag).
func (c *Cluster) Weftctl(ctx context.Context, args ...string) (string, error) {
	bin, err := checkBinary(c.BinDir, BinWeftctl)
	if err != nil {
		return "", err
	}
	i := 0
	for i < len(args) && !strings.HasPrefix(args[i], "-") {
		i++
	}
	conn := []string{"--etcd-endpoints", c.EtcdEndpoint(), "--etcd-prefix", EtcdPrefix}
	argv := append([]string{bin}, args[:i]...)
	argv = append(argv, conn...)
	argv = append(argv, args[i:]...)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := c.Underlay.Command(ctx, argv...)
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("weftctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Live lists what of s still exists: namespaces present, processes
// running. An empty result means s is stale.
func (s State) Live() []string {
	var live []string
	for _, ns := range s.Namespaces {
		if (NS{Name: ns}).Exists() {
			live = append(live, "namespace "+ns)
		}
	}
	if s.Etcd.Alive() {
		live = append(live, fmt.Sprintf("etcd (pid %d)", s.Etcd.PID))
	}
	for i, p := range s.EtcdMembers {
		if p.Alive() {
			live = append(live, fmt.Sprintf("etcd member %d (pid %d)", i+1, p.PID))
		}
	}
	for _, n := range s.Nodes {
		if n.Weftd.Alive() {
			live = append(live, fmt.Sprintf("weftd on %s (pid %d)", n.Name, n.Weftd.PID))
		}
	}
	if k := s.Kube; k != nil {
		for _, p := range []*Proc{k.APIServer, k.ControllerManager} {
			if p.Alive() {
				live = append(live, fmt.Sprintf("%s (pid %d)", filepath.Base(p.Binary), p.PID))
			}
		}
	}
	return live
}

// Logs returns the last lines of etcd's and every weftd's log.
func (c *Cluster) Logs(lines int) string {
	var b strings.Builder
	if c.Etcd != nil {
		data, _ := os.ReadFile(c.Etcd.LogFile)
		fmt.Fprintf(&b, "----- etcd (%s) -----\n%s\n", c.Etcd.LogFile, tail(data, lines))
	}
	if c.EtcdCluster != nil {
		for _, m := range c.EtcdCluster.Members {
			data, _ := os.ReadFile(m.LogFile)
			fmt.Fprintf(&b, "----- etcd member %s (%s) -----\n%s\n", m.Name, m.LogFile, tail(data, lines))
		}
	}
	if k := c.State().Kube; k != nil {
		for _, p := range []*Proc{k.APIServer, k.ControllerManager} {
			if p != nil {
				data, _ := os.ReadFile(p.Log)
				fmt.Fprintf(&b, "----- %s (%s) -----\n%s\n", filepath.Base(p.Binary), p.Log, tail(data, lines))
			}
		}
	}
	for _, n := range c.Nodes() {
		if n.Proc() == nil {
			continue // weftd never started here
		}
		fmt.Fprintf(&b, "----- weftd on %s (%s) -----\n%s\n", n.Name, n.LogFile, n.LogTail(lines))
	}
	return b.String()
}
