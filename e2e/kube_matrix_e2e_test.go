// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e && linux

package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/weftnet/weft/daemon/status"
	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/e2etest"
	"github.com/weftnet/weft/e2e/kubetest"
)

// kubeOutage is how long the API server stays away in the outage case
// (issue 13: 60 s).
const kubeOutage = 60 * time.Second

// kubeFirstListBound bounds a restarted weftd's start → its first complete
// list from the API server applied (a resync would come later).
const kubeFirstListBound = 5 * time.Second

// kubeEnv is an e2e cluster whose weftd run in Kubernetes mode: a real
// kube-apiserver and kube-controller-manager (--allocate-node-cidrs over
// the cluster's pod networks) in the underlay namespace on
// [e2e.EtcdIP]:6443, the project's CRD and RBAC applied, the network
// config in the ConfigMap weft-system/weft-config, and a kubeconfig with a
// token of weftd's own ServiceAccount.
//
//	               underlay br0 198.18.0.0/24, 2001:2::/64
//	  kube-apiserver + kube-controller-manager + etcd on .2
//	   ┌──────────────┬──────────────┬──────────────┬─────────── ...
//	node1 .11      node2 .12      node3 .13      node4 .14 (joins)
//	weftd --kube-subnet-mgr, pods through the weft CNI plugin
type kubeEnv struct {
	c  *e2e.Cluster
	kc *kubetest.Cluster
	cs kubernetes.Interface
	// kubeconfig is weftd's (its ServiceAccount's token), gossipKey the
	// cluster's gossip key; both are set by install.
	kubeconfig string
	gossipKey  string
}

// newKubeEnv builds the cluster's topology (no weftd started) and starts
// the control plane in its underlay namespace. weftd stops before the
// control plane at cleanup, so that the API server has no watches to
// drain.
func newKubeEnv(t *testing.T, opts e2e.Options) *kubeEnv {
	t.Helper()
	opts.NoDaemons = true
	c := e2etest.NewCluster(t, opts)
	clusterCIDRs := []netip.Prefix{netip.MustParsePrefix(e2e.DefaultNetwork)}
	if opts.DualStack {
		clusterCIDRs = append(clusterCIDRs, netip.MustParsePrefix(e2e.DefaultIPv6Network))
	}
	start := time.Now()
	kc := kubetest.Start(t, kubetest.Options{NetNS: c.Underlay.Name, Addr: e2e.EtcdIP, ControllerManager: true, ClusterCIDRs: clusterCIDRs})
	t.Logf("control plane up in %s (kube-apiserver /readyz %s, kube-controller-manager /healthz %s)",
		time.Since(start).Round(time.Millisecond), kc.APIServerReady.Round(time.Millisecond), kc.ControllerManagerHealthy.Round(time.Millisecond))
	t.Cleanup(func() {
		for _, n := range c.Nodes() {
			if err := n.Stop(); err != nil {
				t.Logf("stop weftd on %s: %v", n.Name, err)
			}
		}
	})
	return &kubeEnv{c: c, kc: kc, cs: kc.Client(t)}
}

// install applies the CRD and the RBAC manifest, creates the ConfigMap
// with the cluster's network config, and makes weftd's kubeconfig and the
// gossip key (as a DaemonSet mounts it from a Secret: the API server does
// not keep it).
func (e *kubeEnv) install(t *testing.T, ctx context.Context) {
	t.Helper()
	for _, f := range []string{"weft-crd.yaml", "weft-rbac.yaml"} {
		if out, err := e.kc.Kubectl(ctx, "apply", "-f", filepath.Join("..", "etc", "kubernetes", f)); err != nil {
			t.Fatalf("kubectl apply -f %s: %v\n%s", f, err, out)
		}
	}
	if out, err := e.kc.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "crd/weftnodes.weft.dev"); err != nil {
		t.Fatalf("wait for the CRD: %v\n%s", err, out)
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "weft-config", Namespace: "weft-system"},
		Data:       map[string]string{"network-config.json": e.c.NetworkConfig()},
	}
	if _, err := e.cs.CoreV1().ConfigMaps("weft-system").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.kubeconfig = weftdKubeconfig(t, ctx, e.cs, e.kc)
	e.gossipKey = newGossipKey(t)
}

// args returns weftd's Kubernetes-mode flags for n (writing its gossip key
// file).
func (e *kubeEnv) args(t *testing.T, n *e2e.Node) []string {
	t.Helper()
	writeGossipKeyFile(t, n, e.gossipKey)
	return []string{"--kube-subnet-mgr", "--kubeconfig", e.kubeconfig, "--gossip-key-file", gossipKeyFile(n)}
}

// createNode creates the Node called name, with podCIDRs when given
// (otherwise the controller-manager assigns them).
func (e *kubeEnv) createNode(ctx context.Context, name string, podCIDRs ...string) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if len(podCIDRs) > 0 {
		node.Spec.PodCIDR, node.Spec.PodCIDRs = podCIDRs[0], podCIDRs
	}
	if _, err := e.cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create Node %s: %w", name, err)
	}
	return nil
}

// startNodes creates the nodes' Nodes, starts their weftd in Kubernetes
// mode, waits until all are ready and attaches pods pods to each.
func (e *kubeEnv) startNodes(t *testing.T, ctx context.Context, nodes []*e2e.Node, pods int) {
	t.Helper()
	for _, n := range nodes {
		if err := e.createNode(ctx, n.Name); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	for _, n := range nodes {
		n.ExtraArgs = e.args(t, n)
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		if err := n.WaitReady(ctx, 90*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d weftd ready in Kubernetes mode %s after start", len(nodes), time.Since(start).Round(time.Millisecond))
	for _, n := range nodes {
		checkSubnetIsPodCIDR(t, ctx, e.cs, n)
		for range pods {
			if _, err := n.AddPod(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestKubeMatrix runs the Kubernetes-mode scenarios of issue 13 over VXLAN
// on one dual-stack cluster (see [kubeEnv] for the topology), in order,
// each building on the last: three nodes reach each other over both
// families with the right routes, neighbours and FDB entries; a fourth
// joins, timed from its Node's creation to routes on every peer; weftd
// restarts under traffic; the API server stops for 60 s under traffic
// while node3 is re-addressed; a Node without a podCIDR and one with a
// podCIDR outside the network get their clear messages; a Node deleted
// takes its kernel state away everywhere, also from a weftd that was
// stopped at the time.
func TestKubeMatrix(t *testing.T) {
	e := newKubeEnv(t, e2e.Options{Nodes: 3, DualStack: true})
	ctx := t.Context()
	e.install(t, ctx)
	e.startNodes(t, ctx, e.c.Nodes(), 2)
	if t.Failed() {
		return
	}

	t.Run("pods-all-to-all", func(t *testing.T) {
		for _, v6 := range []bool{false, true} {
			t.Run(family(v6), func(t *testing.T) { allToAll(t, e.c.Pods(), v6) })
		}
	})
	t.Run("kernel-tables", func(t *testing.T) {
		if err := checkVXLANPeers(ctx, e.c.Nodes()); err != nil {
			t.Error(err)
		}
	})
	t.Run("node-joins", func(t *testing.T) {
		testKubeJoin(t, e, checkVXLANPeers)
	})
	t.Run("restart-under-traffic", func(t *testing.T) {
		testRestartUnderTraffic(t, e.c)
	})
	t.Run("api-server-outage", func(t *testing.T) {
		testKubeOutage(t, e)
	})
	t.Run("podcidr-missing", func(t *testing.T) {
		testKubePodCIDRMissing(t, e)
	})
	t.Run("podcidr-outside-network", func(t *testing.T) {
		testKubePodCIDROutside(t, e)
	})
	t.Run("node-deleted", func(t *testing.T) {
		testKubeNodeDeleted(t, e, vxlanLeftovers)
	})
	t.Run("node-deleted-while-stopped", func(t *testing.T) {
		testKubeNodeDeletedWhileStopped(t, e, vxlanLeftovers)
	})
}

// TestKubeMatrixWireGuard runs the representative subset of
// [TestKubeMatrix] over WireGuard (the embedded userspace device: this
// kernel has no WireGuard module; its UAPI sockets in /var/run/wireguard
// carry the run's ID): pods all-to-all over both families with the right
// peers and routes, a node join timed, a 20 s API server outage under
// traffic (0 lost, nothing changed), a restart (graceful and crash) with
// traffic back within 1 s of ready, and a Node deleted taking its
// WireGuard peer and routes away everywhere, also from a weftd that was
// stopped at the time.
func TestKubeMatrixWireGuard(t *testing.T) {
	e2etest.RequireRoot(t)
	var e *kubeEnv
	// Registered first, so it runs after the cluster's teardown: no
	// namespace, process or UAPI socket may be left.
	t.Cleanup(func() {
		if e != nil {
			checkNothingLeft(t, e.c.State())
		}
	})
	e = newKubeEnv(t, e2e.Options{Nodes: 3, DualStack: true, Backend: "wireguard"})
	ctx := t.Context()
	e.install(t, ctx)
	e.startNodes(t, ctx, e.c.Nodes(), 2)
	if t.Failed() {
		return
	}

	t.Run("pods-all-to-all", func(t *testing.T) {
		for _, v6 := range []bool{false, true} {
			t.Run(family(v6), func(t *testing.T) { allToAll(t, e.c.Pods(), v6) })
		}
	})
	t.Run("devices-peers-routes", func(t *testing.T) {
		testWGDevices(t, e.c)
	})
	t.Run("node-joins", func(t *testing.T) {
		testKubeJoin(t, e, func(ctx context.Context, nodes []*e2e.Node) error {
			sts, err := statuses(ctx, nodes)
			if err != nil {
				return err
			}
			return checkPeers(nodes, sts)
		})
	})
	t.Run("api-server-outage", func(t *testing.T) {
		testKubeOutageWireGuard(t, e)
	})
	t.Run("restart", func(t *testing.T) {
		for _, crash := range []bool{false, true} {
			t.Run(map[bool]string{false: "graceful", true: "crash"}[crash], func(t *testing.T) {
				testWGRestart(t, e.c, crash)
			})
		}
	})
	t.Run("node-deleted", func(t *testing.T) {
		testKubeNodeDeleted(t, e, wireGuardLeftovers)
	})
	t.Run("node-deleted-while-stopped", func(t *testing.T) {
		testKubeNodeDeletedWhileStopped(t, e, wireGuardLeftovers)
	})
}

// kubePeer is what the other nodes' kernels hold for a node.
type kubePeer struct {
	name          string
	subnet, sub6  netip.Prefix
	publicIP      netip.Addr
	vtepMAC       string
	wireGuardKey  string
	wireGuardPort int
}

func kubePeerOf(ctx context.Context, n *e2e.Node) (kubePeer, error) {
	st, err := n.Status(ctx)
	if err != nil {
		return kubePeer{}, err
	}
	return kubePeerFromStatus(n.Name, st), nil
}

func kubePeerFromStatus(name string, st *status.Report) kubePeer {
	return kubePeer{
		name: name, subnet: st.Node.Subnet.Masked(), sub6: st.Node.IPv6Subnet.Masked(), publicIP: st.Node.PublicIP,
		vtepMAC: st.Node.BackendData.VTEPMAC, wireGuardKey: st.Node.BackendData.WireGuardKey, wireGuardPort: st.Node.BackendData.WireGuardPort,
	}
}

// checkVXLANPeers checks every node's kernel against the others'
// /status: a route to each of their subnets (both families) on the VXLAN
// device via their VTEP address, a permanent neighbour for that address
// with their VTEP MAC, and an FDB entry sending that MAC to their public
// IP; and nothing for a node that is not among nodes.
func checkVXLANPeers(ctx context.Context, nodes []*e2e.Node) error {
	peers := map[string]kubePeer{}
	for _, n := range nodes {
		p, err := kubePeerOf(ctx, n)
		if err != nil {
			return err
		}
		peers[n.Name] = p
	}
	var errs []error
	for _, n := range nodes {
		k, err := n.Kernel()
		if err != nil {
			return err
		}
		for _, m := range nodes {
			if m == n {
				continue
			}
			p := peers[m.Name]
			for _, s := range []netip.Prefix{p.subnet, p.sub6} {
				r, ok := k.RouteTo(s)
				if !ok || r.Dev != n.VXLANDeviceName() || r.Gw != s.Addr() {
					errs = append(errs, fmt.Errorf("%s: route to %s (%s) = %v (%t), want via %s dev %s", n.Name, s, m.Name, r, ok, s.Addr(), n.VXLANDeviceName()))
				}
				if ne, ok := k.Neighbour(s.Addr()); !ok || !strings.EqualFold(ne.MAC, p.vtepMAC) {
					errs = append(errs, fmt.Errorf("%s: neighbour %s (%s) = %+v (%t), want MAC %s", n.Name, s.Addr(), m.Name, ne, ok, p.vtepMAC))
				}
			}
			if f, ok := k.FDBFor(p.vtepMAC); !ok || f.Dst != p.publicIP {
				errs = append(errs, fmt.Errorf("%s: FDB entry for %s (%s) = %+v (%t), want dst %s", n.Name, p.vtepMAC, m.Name, f, ok, p.publicIP))
			}
		}
		// Nothing else: one route per peer subnet, one FDB entry per peer.
		if want := 2 * (len(nodes) - 1); len(k.Routes) != want {
			errs = append(errs, fmt.Errorf("%s: %d weft routes %v, want %d", n.Name, len(k.Routes), k.Routes, want))
		}
		if want := len(nodes) - 1; len(k.FDB) != want {
			errs = append(errs, fmt.Errorf("%s: %d FDB entries %v, want %d", n.Name, len(k.FDB), k.FDB, want))
		}
	}
	return errors.Join(errs...)
}

// vxlanLeftovers lists what n's kernel still holds of peer p: routes to
// its subnets, neighbours in them or with its VTEP MAC, FDB entries for
// its MAC or its public IP.
func vxlanLeftovers(n *e2e.Node, p kubePeer) ([]string, error) {
	k, err := n.Kernel()
	if err != nil {
		return nil, err
	}
	var left []string
	for _, r := range k.Routes {
		if r.Dst.Overlaps(p.subnet) || r.Dst.Overlaps(p.sub6) {
			left = append(left, "route "+r.String())
		}
	}
	for _, ne := range k.Neighbours {
		if p.subnet.Contains(ne.IP) || p.sub6.Contains(ne.IP) || strings.EqualFold(ne.MAC, p.vtepMAC) {
			left = append(left, fmt.Sprintf("neighbour %s lladdr %s", ne.IP, ne.MAC))
		}
	}
	for _, f := range k.FDB {
		if strings.EqualFold(f.MAC, p.vtepMAC) || f.Dst == p.publicIP {
			left = append(left, fmt.Sprintf("fdb %s dst %s", f.MAC, f.Dst))
		}
	}
	return left, nil
}

// wireGuardLeftovers lists what n still holds of peer p: its WireGuard
// peer (by key, or allowed its subnets) and routes to its subnets.
func wireGuardLeftovers(n *e2e.Node, p kubePeer) ([]string, error) {
	d, err := wgDevice(n)
	if err != nil {
		return nil, err
	}
	var left []string
	for _, wp := range d.Peers {
		allowed := slices.ContainsFunc(wp.AllowedIPs, func(a net.IPNet) bool {
			pre := e2e.IPNetPrefix(&a)
			return pre.Overlaps(p.subnet) || pre.Overlaps(p.sub6)
		})
		if wp.PublicKey.String() == p.wireGuardKey || allowed {
			left = append(left, fmt.Sprintf("peer %s allowed %v", wp.PublicKey, wp.AllowedIPs))
		}
	}
	k, err := n.Kernel()
	if err != nil {
		return nil, err
	}
	for _, r := range k.Routes {
		if r.Dst.Overlaps(p.subnet) || r.Dst.Overlaps(p.sub6) {
			left = append(left, "route "+r.String())
		}
	}
	return left, nil
}

// testKubeJoin adds a node the way a Kubernetes cluster does: its Node is
// created (the kubelet registering) and its weftd started at once (the
// DaemonSet's pod). It times each step from the Node's creation: the
// controller-manager assigning its podCIDRs, weftd ready, and routes to
// both its subnets on every running peer; then its pod must reach every
// pod, and check must pass on all running nodes.
func testKubeJoin(t *testing.T, e *kubeEnv, check func(context.Context, []*e2e.Node) error) {
	ctx := t.Context()
	peers := runningNodes(e.c)
	n, err := e.c.AddNode(0)
	if err != nil {
		t.Fatal(err)
	}
	n.ExtraArgs = e.args(t, n)
	created := time.Now()
	if err := e.createNode(ctx, n.Name); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	var assigned, ready, routed time.Duration
	var cidrs []netip.Prefix
	err = e2e.Eventually(90*time.Second, 10*time.Millisecond, func() error {
		if assigned == 0 {
			node, err := e.cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if len(node.Spec.PodCIDRs) > 0 {
				assigned = time.Since(created)
				for _, s := range node.Spec.PodCIDRs {
					cidrs = append(cidrs, netip.MustParsePrefix(s))
				}
			}
		}
		if ready == 0 {
			if code, _, err := n.Get(ctx, "/readyz"); err == nil && code == 200 {
				ready = time.Since(created)
			}
		}
		if routed == 0 && len(cidrs) > 0 {
			all := true
			for _, p := range peers {
				k, err := p.Kernel()
				if err != nil {
					return err
				}
				for _, s := range cidrs {
					_, ok := k.RouteTo(s)
					all = all && ok
				}
			}
			if all {
				routed = time.Since(created)
			}
		}
		if !n.Running() {
			return fmt.Errorf("weftd on %s exited:\n%s", n.Name, n.LogTail(20))
		}
		if assigned == 0 || ready == 0 || routed == 0 {
			return fmt.Errorf("%s: podCIDRs assigned after %s, ready after %s, routes on every peer after %s (0: not yet)", n.Name, assigned, ready, routed)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0f ms", d.Seconds()*1000) }
	t.Logf("KUBE-JOIN| %s backend | Node created → podCIDRs assigned %s → weftd ready %s → routes on %d peers %s",
		e.c.Backend(), ms(assigned), ms(ready), len(peers), ms(routed))
	checkSubnetIsPodCIDR(t, ctx, e.cs, n)
	checkNetworkAvailable(t, ctx, e.cs, n)
	p, err := n.AddPod(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range e.c.Pods() {
		if o == p {
			continue
		}
		for _, v6 := range []bool{false, true} {
			if _, err := e2e.Ping(o.NS, p.Addr(v6), 10*time.Second); err != nil {
				t.Errorf("%s → new pod %s: %v", o.Name, p.Name, err)
			}
			if _, err := e2e.Ping(p.NS, o.Addr(v6), 10*time.Second); err != nil {
				t.Errorf("new pod %s → %s: %v", p.Name, o.Name, err)
			}
		}
	}
	if err := check(ctx, runningNodes(e.c)); err != nil {
		t.Error(err)
	}
}

// testKubeOutage stops the API server for kubeOutage under pod traffic
// between the first, second and fourth nodes. Meanwhile node3's weftd
// crashes and comes back on a new underlay address: the others must
// follow it by gossip alone. Every weftd must report the API server
// unreachable in /status. When the API server returns nothing may change
// in the kernel of the nodes that stayed, no subnet or epoch may change,
// and node3's record must carry its new address.
func testKubeOutage(t *testing.T, e *kubeEnv) {
	ctx := t.Context()
	nodes := e.c.Nodes()
	n3 := nodes[2]
	watchers := nodesExcept(nodes, n3)
	epochsBefore := peerEpochs(t, ctx, nodes)
	offsets := map[string]int64{}
	for _, n := range watchers {
		offsets[n.Name] = haFileSize(n.LogFile)
	}
	tr := startHATraffic(t, watchers)
	defer tr.stop()

	reach := watchReachable(ctx, watchers)
	defer reach.stop()
	start := time.Now()
	restore := killAPIServer(t, e)
	defer restore()
	newIP := readdressDuringOutage(t, n3, watchers, start)
	holdOutage(t, nodes, start, kubeOutage)
	// weftd makes no request to learn it (no probe): its watches break at
	// the kill and the next watch request is refused.
	reach.stop()
	t.Logf("/status unreachable first seen (sampled every 50 ms) %v after the kill", reach.firstOff)
	for _, n := range watchers {
		if off, ok := reach.firstOff[n.Name]; !ok || off > 5*time.Second {
			t.Errorf("%s's /status said the API server was unreachable %v after it was killed (seen: %t), want within 5 s", n.Name, off, ok)
		}
	}
	kernBefore := kubeKernels(t, watchers)
	changesBefore := map[string]float64{}
	for _, n := range watchers {
		var err error
		if changesBefore[n.Name], err = haReconcileChanges(ctx, n); err != nil {
			t.Fatal(err)
		}
	}

	reached := waitAPIServerBack(t, e, nodes, func() error {
		if ip, err := weftNodePublicIP(ctx, e.cs, n3.Name); err != nil || ip != newIP {
			return fmt.Errorf("WeftNode %s: public IP %s (%v), want %s", n3.Name, ip, err, newIP)
		}
		return nil
	})
	t.Logf("API server back after %s: /status reachable and ready after %v; %s's new address written back", time.Since(start).Round(time.Second), reached, n3.Name)
	// The log says so once each way, naming the API server.
	for _, n := range watchers {
		log := logSince(n, offsets[n.Name])
		for _, msg := range []string{"Kubernetes API server unreachable", "Kubernetes API server reachable again"} {
			if got := strings.Count(log, `msg="`+msg+`"`); got != 1 {
				t.Errorf("%s logged %q %d times over the outage, want once", n.Name, msg, got)
			}
		}
	}
	// Let a resync pass, then nothing may have changed.
	time.Sleep(2 * time.Second)
	if after := peerEpochs(t, ctx, nodes); after != epochsBefore {
		t.Errorf("subnets or epochs changed over the outage: before %s, after %s", epochsBefore, after)
	}
	if d := cmp.Diff(kernBefore, kubeKernels(t, watchers), haCmpKernel); d != "" {
		t.Errorf("kernel state changed when the API server returned (-before +after):\n%s", d)
	}
	for _, n := range watchers {
		ch, err := haReconcileChanges(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if ch != changesBefore[n.Name] {
			t.Errorf("%s's reconciles changed %v kernel objects after the API server returned", n.Name, ch-changesBefore[n.Name])
		}
	}
	if err := checkVXLANPeers(ctx, nodes); err != nil {
		t.Error(err)
	}
	lost, summary := tr.stop()
	t.Logf("pod traffic over the %s API server outage: %s", kubeOutage, summary)
	if lost != 0 {
		t.Errorf("%d pod echoes lost over the API server outage", lost)
	}
}

// killAPIServer kills the API server. The returned function starts it
// again unless [waitAPIServerBack] did (defer it: the next subtest needs
// the API server, also after a failure).
func killAPIServer(t *testing.T, e *kubeEnv) (restore func()) {
	t.Helper()
	if err := e.kc.KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := e.kc.StartAPIServer(context.Background()); err != nil { // a no-op when it runs
			t.Errorf("restart kube-apiserver: %v", err)
		}
	}
}

// waitAPIServerBack starts the API server and waits until every node's
// /status says it is reachable and the node ready, and extra (when not
// nil) passes. It returns when each node saw it, from the start.
func waitAPIServerBack(t *testing.T, e *kubeEnv, nodes []*e2e.Node, extra func() error) map[string]time.Duration {
	t.Helper()
	ctx := t.Context()
	back := time.Now()
	if err := e.kc.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver started again, ready in %s", time.Since(back).Round(time.Millisecond))
	reached := map[string]time.Duration{}
	err := e2e.Eventually(60*time.Second, 100*time.Millisecond, func() error {
		var errs []error
		for _, n := range nodes {
			if _, ok := reached[n.Name]; ok {
				continue
			}
			g, err := n.Status(ctx)
			if err != nil {
				return err
			}
			if !g.Node.EtcdReachable || !g.Node.Ready {
				errs = append(errs, fmt.Errorf("%s: API server reachable %t, ready %t (%s)", n.Name, g.Node.EtcdReachable, g.Node.Ready, g.Node.NotReady))
				continue
			}
			reached[n.Name] = time.Since(back)
		}
		if extra != nil {
			errs = append(errs, extra())
		}
		return errors.Join(errs...)
	})
	if err != nil {
		t.Fatal(err)
	}
	return reached
}

// readdressDuringOutage crashes n's weftd and starts it again on a new
// underlay address while the API server is away (since start): the
// watchers must follow it by gossip alone (in /status and their FDB), and
// their pods reach its pod over both families. It returns the new address.
func readdressDuringOutage(t *testing.T, n *e2e.Node, watchers []*e2e.Node, start time.Time) netip.Addr {
	t.Helper()
	ctx := t.Context()
	id := gossipIdentity(ctx, t, n)
	newIP := netip.AddrFrom4([4]byte{198, 18, 0, byte(50 + n.Index)})
	if _, err := n.CrashAndMove(ctx, newIP, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s restarted on %s and ready %s into the outage", n.Name, newIP, time.Since(start).Round(time.Millisecond))
	learnStart := time.Now()
	err := e2e.Eventually(15*time.Second, 20*time.Millisecond, func() error {
		for _, o := range watchers {
			g, err := o.Status(ctx)
			if err != nil {
				return err
			}
			if p, ok := statusPeer(g, n.Name); !ok || p.PublicIP != newIP || p.State != "alive" {
				return fmt.Errorf("%s sees %s as %+v, want alive at %s", o.Name, n.Name, p, newIP)
			}
		}
		return checkGossipRoutesKept(watchers, id, newIP)
	})
	if err != nil {
		t.Fatalf("API server away, %s re-addressed: %v", n.Name, err)
	}
	t.Logf("%s re-addressed to %s with the API server away: the others' /status and FDB had it %s after its ready", n.Name, newIP, gossipMS(time.Since(learnStart)))
	for _, q := range watchers {
		for _, v6 := range []bool{false, true} {
			if _, err := e2e.Ping(q.Pods()[0].NS, n.Pods()[0].Addr(v6), 5*time.Second); err != nil {
				t.Errorf("API server away, from %s's pod to re-addressed %s's pod: %v", q.Name, n.Name, err)
			}
		}
	}
	return newIP
}

// holdOutage waits until d has passed since start, checking that every
// node's /status says the API server is unreachable some time in between.
func holdOutage(t *testing.T, nodes []*e2e.Node, start time.Time, d time.Duration) {
	t.Helper()
	unreachable := map[string]time.Duration{}
	for time.Since(start) < d {
		for _, o := range nodes {
			g, err := o.Status(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			store, ok := g.Node.Reachable()
			if store != status.StoreKube || g.Node.EtcdReachable != ok {
				t.Fatalf("%s's /status: store %q reachable %t, etcdReachable %t: want store kube, the same value twice", o.Name, store, ok, g.Node.EtcdReachable)
			}
			if _, seen := unreachable[o.Name]; !seen && !ok {
				unreachable[o.Name] = time.Since(start)
			}
		}
		time.Sleep(min(time.Second, max(0, d-time.Since(start))))
	}
	t.Logf("the API server reported unreachable in /status after: %v", unreachable)
	for _, o := range nodes {
		if _, ok := unreachable[o.Name]; !ok {
			t.Errorf("%s's /status never said the API server was unreachable over %s", o.Name, d)
		}
	}
}

// kubeKernels snapshots the state weft owns in the nodes' kernels: their
// routes, FDB entries and permanent neighbours (not the neighbour entries
// the kernel makes by itself on the VXLAN device, such as IPv6 multicast
// ones, which come and go).
func kubeKernels(t *testing.T, nodes []*e2e.Node) map[string]*e2e.Kernel {
	t.Helper()
	m := haKernels(t, nodes)
	for _, k := range m {
		k.Neighbours = slices.DeleteFunc(k.Neighbours, func(n e2e.KernelNeigh) bool { return n.State&netlink.NUD_PERMANENT == 0 })
	}
	return m
}

// logSince returns n's weftd log from offset bytes on.
func logSince(n *e2e.Node, offset int64) string {
	data, _ := os.ReadFile(n.LogFile)
	if int64(len(data)) < offset {
		return ""
	}
	return string(data[offset:])
}

// kubeWGOutage is how long the API server stays away over WireGuard: the
// 60 s case runs over VXLAN; this one shows that nothing of the WireGuard
// data plane depends on the API server either.
const kubeWGOutage = 20 * time.Second

// testKubeOutageWireGuard kills the API server for kubeWGOutage under
// pod traffic in a ring of all nodes: no echo may be lost, and when the
// API server returns no WireGuard peer, allowed IP, endpoint or route may
// have changed.
func testKubeOutageWireGuard(t *testing.T, e *kubeEnv) {
	ctx := t.Context()
	nodes := runningNodes(e.c)
	tr := startHATraffic(t, nodes)
	defer tr.stop()
	before := map[string][]wgPeer{}
	for _, n := range nodes {
		d, err := wgDevice(n)
		if err != nil {
			t.Fatal(err)
		}
		before[n.Name] = viewOf(d)
	}
	kernBefore := kubeKernels(t, nodes)
	start := time.Now()
	restore := killAPIServer(t, e)
	defer restore()
	holdOutage(t, nodes, start, kubeWGOutage)
	reached := waitAPIServerBack(t, e, nodes, nil)
	t.Logf("kube-apiserver back after %s; /status reachable and ready after %v", time.Since(start).Round(time.Second), reached)
	time.Sleep(2 * time.Second) // a resync's worth
	for _, n := range nodes {
		d, err := wgDevice(n)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(before[n.Name], viewOf(d)); diff != "" {
			t.Errorf("%s: WireGuard peers changed over the API server outage (-before +after):\n%s", n.Name, diff)
		}
	}
	if d := cmp.Diff(kernBefore, kubeKernels(t, nodes), haCmpKernel); d != "" {
		t.Errorf("routes changed when the API server returned (-before +after):\n%s", d)
	}
	sts, err := statuses(ctx, nodes)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkPeers(nodes, sts); err != nil {
		t.Error(err)
	}
	lost, summary := tr.stop()
	t.Logf("pod traffic over the %s API server outage: %s", kubeWGOutage, summary)
	if lost != 0 {
		t.Errorf("%d pod echoes lost over the API server outage", lost)
	}
}

// weftNodePublicIP reads the public IP of the WeftNode called name.
func weftNodePublicIP(ctx context.Context, cs kubernetes.Interface, name string) (netip.Addr, error) {
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/apis/weft.dev/v1alpha1/weftnodes", name).DoRaw(ctx)
	if err != nil {
		return netip.Addr{}, err
	}
	var rec struct {
		Spec struct {
			PublicIP netip.Addr `json:"publicIP"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		return netip.Addr{}, fmt.Errorf("decode WeftNode %s: %w", name, err)
	}
	return rec.Spec.PublicIP, nil
}

// testKubePodCIDRMissing stops the controller-manager (a cluster without
// --allocate-node-cidrs), creates a Node and starts its weftd: it must
// wait, not ready, naming the controller-manager flags and the
// --cluster-cidr value that fits the network config in its /readyz,
// /status and log; once the controller-manager runs again and assigns the
// podCIDRs, weftd must become ready without a restart.
func testKubePodCIDRMissing(t *testing.T, e *kubeEnv) {
	ctx := t.Context()
	if err := e.kc.StopControllerManager(); err != nil {
		t.Fatal(err)
	}
	kcmBack := false
	defer func() {
		if !kcmBack {
			if err := e.kc.StartControllerManager(context.Background()); err != nil {
				t.Errorf("restart kube-controller-manager: %v", err)
			}
		}
	}()
	peers := runningNodes(e.c)
	n, err := e.c.AddNode(0)
	if err != nil {
		t.Fatal(err)
	}
	n.ExtraArgs = e.args(t, n)
	if err := e.createNode(ctx, n.Name); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	want := []string{"Node " + n.Name + " has no podCIDR", "--allocate-node-cidrs=true", "--cluster-cidr=" + e2e.DefaultNetwork + "," + e2e.DefaultIPv6Network}
	var readyz string
	var st *status.Report
	err = e2e.Eventually(30*time.Second, 100*time.Millisecond, func() error {
		code, body, err := n.Get(ctx, "/readyz")
		if err != nil {
			return err
		}
		readyz = fmt.Sprintf("HTTP %d: %s", code, strings.TrimSpace(string(body)))
		if code == 200 {
			return fmt.Errorf("/readyz: %s", readyz)
		}
		if st, err = n.Status(ctx); err != nil {
			return err
		}
		for _, w := range want {
			if !strings.Contains(readyz, w) || !strings.Contains(st.Node.NotReady, w) || !strings.Contains(n.LogTail(50), w) {
				return fmt.Errorf("/readyz %q, /status notReady %q or the log does not say %q", readyz, st.Node.NotReady, w)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("weftd whose Node has no podCIDR: %v\nlog:\n%s", err, n.LogTail(20))
	}
	t.Logf("no podCIDR: /readyz %s", readyz)
	if st.Node.Ready {
		t.Errorf("/status says ready without a podCIDR")
	}
	if !n.Running() {
		t.Fatalf("weftd exited waiting for a podCIDR:\n%s", n.LogTail(20))
	}

	back := time.Now()
	if err := e.kc.StartControllerManager(ctx); err != nil {
		t.Fatal(err)
	}
	kcmBack = true
	if err := n.WaitReady(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	ready := time.Since(back)
	if err := waitRoutesTo(ctx, peers, n, 30*time.Second); err != nil {
		t.Error(err)
	}
	t.Logf("kube-controller-manager started again (healthy after %s): %s ready %s later, routes to it on %d peers %s later", e.kc.ControllerManagerHealthy.Round(time.Millisecond),
		n.Name, ready.Round(time.Millisecond), len(peers), time.Since(back).Round(time.Millisecond))
	checkSubnetIsPodCIDR(t, ctx, e.cs, n)
	if _, err := n.AddPod(ctx); err != nil {
		t.Fatal(err)
	}
}

// testKubePodCIDROutside creates a Node whose podCIDRs lie outside the
// network config's networks (set on the Node, as an operator or another
// IPAM may): weftd must refuse them, exit, and say so naming both the
// podCIDR and the network, without touching any other node.
func testKubePodCIDROutside(t *testing.T, e *kubeEnv) {
	ctx := t.Context()
	others := runningNodes(e.c)
	n, err := e.c.AddNode(0)
	if err != nil {
		t.Fatal(err)
	}
	n.ExtraArgs = e.args(t, n)
	const outside, outside6 = "10.250.6.0/24", "fd10:250:0:6::/64"
	if err := e.createNode(ctx, n.Name, outside, outside6); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	if err := n.Proc().Wait(60 * time.Second); err != nil {
		n.Stop()
		t.Fatalf("weftd with a podCIDR outside the network: %v\nlog:\n%s", err, n.LogTail(20))
	}
	log := n.LogTail(10)
	for _, w := range []string{outside, e2e.DefaultNetwork} {
		if !strings.Contains(log, w) {
			t.Errorf("weftd with podCIDRs %s,%s exited; its log does not name %s:\n%s", outside, outside6, w, log)
		}
	}
	t.Logf("podCIDR outside the network: weftd exited saying:\n%s", lastLine(log))
	if _, err := e.cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("Node %s: %v", n.Name, err)
	}
	if err := weftNodeAbsent(ctx, e.cs, n.Name); err != nil {
		t.Error(err)
	}
	// Nothing of it reaches another node's kernel (its gossip claim is
	// refused as well: the store has no lease for it). No VTEP MAC of its
	// is known: match no MAC.
	refused := kubePeer{name: n.Name, subnet: netip.MustParsePrefix(outside), sub6: netip.MustParsePrefix(outside6), publicIP: n.IP, vtepMAC: "-"}
	for _, o := range others {
		if left, err := vxlanLeftovers(o, refused); err != nil || len(left) > 0 {
			t.Errorf("%s holds %v of the refused node %s (%v)", o.Name, left, n.Name, err)
		}
	}
	// The refused Node goes: it would hold a podCIDR no weftd serves.
	if err := e.cs.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{}); err != nil {
		t.Error(err)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// weftNodeAbsent returns an error when a WeftNode called name exists.
func weftNodeAbsent(ctx context.Context, cs kubernetes.Interface, name string) error {
	_, err := cs.CoreV1().RESTClient().Get().AbsPath("/apis/weft.dev/v1alpha1/weftnodes", name).DoRaw(ctx)
	switch {
	case err == nil:
		return fmt.Errorf("WeftNode %s exists for a refused Node", name)
	case apierrors.IsNotFound(err):
		return nil
	}
	return fmt.Errorf("WeftNode %s: %w", name, err)
}

// testKubeNodeDeleted deletes the Node of the last running node, whose
// weftd keeps running: every other node's kernel must lose what it held
// of it (leftovers lists that) and its pods must be unreachable; its own
// weftd must say that its Node is gone (it is stopped then, as a drained
// node's would be).
func testKubeNodeDeleted(t *testing.T, e *kubeEnv, leftovers func(*e2e.Node, kubePeer) ([]string, error)) {
	ctx := t.Context()
	running := runningNodes(e.c)
	gone := running[len(running)-1]
	rest := running[:len(running)-1]
	p, err := kubePeerOf(ctx, gone)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range rest {
		if left, err := leftovers(n, p); err != nil || len(left) == 0 {
			t.Fatalf("%s holds nothing of %s before its Node's deletion (%v): the check would prove nothing", n.Name, gone.Name, err)
		}
	}
	start := time.Now()
	if err := e.cs.CoreV1().Nodes().Delete(ctx, gone.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitKernelClean(t, rest, p, leftovers, start, "its Node's deletion")
	// Its own weftd loses the lease and waits for the Node to come back
	// (a kubelet registers it again), saying so.
	if err := e2e.Eventually(10*time.Second, 100*time.Millisecond, func() error {
		if !strings.Contains(gone.LogTail(10), "there is no Node "+gone.Name) {
			return errors.New("its log does not say there is no Node")
		}
		return nil
	}); err != nil {
		t.Errorf("weftd on %s after its Node was deleted: %v:\n%s", gone.Name, err, gone.LogTail(10))
	}
	if err := gone.Stop(); err != nil {
		t.Error(err)
	}
	for _, n := range rest {
		if _, err := e2e.Ping(n.Pods()[0].NS, gone.Pods()[0].IP, time.Second); err == nil {
			t.Errorf("%s's pod still reaches %s's pod after its Node was deleted", n.Name, gone.Name)
		}
	}
}

// waitKernelClean waits, for each node of nodes in parallel, until
// leftovers reports nothing of p, and logs how long after start (the
// event called since) it took.
func waitKernelClean(t *testing.T, nodes []*e2e.Node, p kubePeer, leftovers func(*e2e.Node, kubePeer) ([]string, error), start time.Time, since string) {
	t.Helper()
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := e2e.Eventually(30*time.Second, 20*time.Millisecond, func() error {
				left, err := leftovers(n, p)
				if err != nil {
					return err
				}
				if len(left) > 0 {
					return fmt.Errorf("%s still holds %s", n.Name, strings.Join(left, ", "))
				}
				return waitNoPeerOnce(t.Context(), n, p.name)
			})
			if err != nil {
				t.Errorf("Node %s deleted: %v", p.name, err)
				return
			}
			t.Logf("%s: the kernel state and /status peer of %s gone %.0f ms after %s", n.Name, p.name, time.Since(start).Seconds()*1000, since)
		}()
	}
	wg.Wait()
}

// waitNoPeerOnce returns an error while n's /status lists a peer name.
func waitNoPeerOnce(ctx context.Context, n *e2e.Node, name string) error {
	st, err := n.Status(ctx)
	if err != nil {
		return err
	}
	if p, ok := statusPeer(st, name); ok {
		return fmt.Errorf("%s still lists peer %s (%s)", n.Name, name, p.Subnet)
	}
	return nil
}

// testKubeNodeDeletedWhileStopped stops the first node's weftd, deletes
// the Node of the last running node, waits until the running nodes
// dropped it, then starts the first node's weftd again: its first
// complete list must take the deleted node's kernel state away, though no
// event about it ever reached this weftd.
func testKubeNodeDeletedWhileStopped(t *testing.T, e *kubeEnv, leftovers func(*e2e.Node, kubePeer) ([]string, error)) {
	ctx := t.Context()
	running := runningNodes(e.c)
	stopped, gone := running[0], running[len(running)-1]
	rest := running[1 : len(running)-1]
	p, err := kubePeerOf(ctx, gone)
	if err != nil {
		t.Fatal(err)
	}
	if left, err := leftovers(stopped, p); err != nil || len(left) == 0 {
		t.Fatalf("%s holds nothing of %s before its Node's deletion (%v): the check would prove nothing", stopped.Name, gone.Name, err)
	}
	if err := stopped.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := gone.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, n := range rest {
		if left, err := leftovers(n, p); err != nil || len(left) == 0 {
			t.Fatalf("%s holds nothing of %s before its Node's deletion (%v): the check would prove nothing", n.Name, gone.Name, err)
		}
	}
	start := time.Now()
	if err := e.cs.CoreV1().Nodes().Delete(ctx, gone.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitKernelClean(t, rest, p, leftovers, start, "its Node's deletion")
	// The stopped weftd left its data plane as it was: the deleted
	// node's entries are still there. A userspace WireGuard device dies
	// with its weftd; its restart must not bring the peer back from the
	// peers it saved.
	if left, err := leftovers(stopped, p); err != nil || len(left) == 0 {
		if e.c.Backend() != "wireguard" {
			t.Fatalf("%s (stopped) holds nothing of %s before its restart (%v)", stopped.Name, gone.Name, err)
		}
		t.Logf("%s (stopped) holds nothing of %s: its userspace WireGuard device went with its weftd (%v)", stopped.Name, gone.Name, err)
	}
	restart := time.Now()
	if err := stopped.Start(); err != nil {
		t.Fatal(err)
	}
	if err := stopped.WaitReady(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	ready := time.Since(restart)
	left, err := leftovers(stopped, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		// Ready comes with the first reconcile, from the peers saved in
		// the state dir (it adds, deletes nothing); the first complete
		// list from the API server follows.
		t.Logf("%s still held %s when it became ready", stopped.Name, strings.Join(left, ", "))
	}
	waitKernelClean(t, []*e2e.Node{stopped}, p, leftovers, restart, "weftd's start")
	// At the first complete list, not at a later resync.
	if took := time.Since(restart); took > kubeFirstListBound {
		t.Errorf("%s restarted: %s's state gone only %s after the start, want within %s (its first complete list)", stopped.Name, gone.Name, took.Round(time.Millisecond), kubeFirstListBound)
	}
	t.Logf("%s restarted: ready after %s", stopped.Name, ready.Round(time.Millisecond))
	var pods []*e2e.Pod
	for _, n := range runningNodes(e.c) {
		pods = append(pods, n.Pods()...)
	}
	for _, v6 := range []bool{false, true} {
		allToAll(t, pods, v6)
	}
}

// waitRoutesTo waits until every node of peers has a weft route to each
// of n's subnets.
func waitRoutesTo(ctx context.Context, peers []*e2e.Node, n *e2e.Node, timeout time.Duration) error {
	p, err := kubePeerOf(ctx, n)
	if err != nil {
		return err
	}
	return e2e.Eventually(timeout, 20*time.Millisecond, func() error {
		for _, o := range peers {
			k, err := o.Kernel()
			if err != nil {
				return err
			}
			for _, s := range []netip.Prefix{p.subnet, p.sub6} {
				if _, ok := k.RouteTo(s); !ok {
					return fmt.Errorf("%s has no route to %s (%s)", o.Name, s, n.Name)
				}
			}
		}
		return nil
	})
}
