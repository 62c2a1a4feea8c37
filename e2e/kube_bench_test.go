// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build bench && linux

package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/e2etest"
	"github.com/weftnet/weft/subnet"
	subnetkube "github.com/weftnet/weft/subnet/kube"
)

// TestBenchKubeJoin: a node joins a running 3-node cluster in Kubernetes
// mode and, in the same run and alternating with it, in etcd mode, 5 times
// each: weftd start → ready, and start → a route to its subnet on every
// peer. In Kubernetes mode the Node exists and has its podCIDR before
// weftd starts (as a kubelet registers it first); the time from creating
// the Node to its podCIDR is reported apart.
func TestBenchKubeJoin(t *testing.T) {
	quiet := func(string, ...any) {}
	kube := e2etest.NewCluster(t, e2e.Options{Nodes: 3, Kube: kubeOptions(t), Logf: quiet})
	etcd := e2etest.NewCluster(t, e2e.Options{Nodes: 3, Logf: quiet})
	ctx := t.Context()
	type series struct{ ready, routes []float64 }
	var k, e series
	var assign []float64
	for trial := 0; trial < 5; trial++ {
		for _, c := range []*e2e.Cluster{etcd, kube} {
			peers := c.Nodes()
			n, err := c.AddNode(0)
			if err != nil {
				t.Fatal(err)
			}
			s := &e
			if c == kube {
				s = &k
				created := time.Now()
				if err := c.KubeJoin(ctx, n); err != nil {
					t.Fatal(err)
				}
				if err := e2e.Eventually(30*time.Second, 20*time.Millisecond, func() error {
					cidrs, err := c.PodCIDRs(ctx, n)
					if err == nil && len(cidrs) == 0 {
						err = fmt.Errorf("Node %s has no podCIDR yet", n.Name)
					}
					return err
				}); err != nil {
					t.Fatal(err)
				}
				assign = append(assign, msOf(time.Since(created)))
			}
			ready, routes := timeJoin(t, n, peers)
			s.ready = append(s.ready, msOf(ready))
			s.routes = append(s.routes, msOf(routes))
			t.Logf("%s mode, %s: ready %.0f ms, routes on all %d peers %.0f ms", map[bool]string{true: "kube", false: "etcd"}[c == kube], n.Name, msOf(ready), len(peers), msOf(routes))
		}
	}
	benchRow("kube mode join: weftd start → ready (median of 5)", fmt.Sprintf("%.0f ms (max %.0f)", median(k.ready), slices.Max(k.ready)),
		fmt.Sprintf("etcd mode, same run: %.0f ms (max %.0f)", median(e.ready), slices.Max(e.ready)), fmt.Sprintf("%.2fx", median(k.ready)/median(e.ready)))
	benchRow("kube mode join: weftd start → route on every peer (median of 5)", fmt.Sprintf("%.0f ms (max %.0f)", median(k.routes), slices.Max(k.routes)),
		fmt.Sprintf("etcd mode, same run: %.0f ms (max %.0f)", median(e.routes), slices.Max(e.routes)),
		fmt.Sprintf("%.2fx; Node created → podCIDR by the controller-manager: median %.0f ms, before weftd starts", median(k.routes)/median(e.routes), median(assign)))
}

// kubeBenchNodes is how many simulated Nodes TestBenchKubeScale creates:
// WEFT_BENCH_KUBE_NODES when set; else 1000 with the long scale runs on
// (WEFT_BENCH_SCALE=1, as make bench-scale sets it: 3 to 5 minutes on this
// 2-core machine), and 200 otherwise (about 2 minutes).
func kubeBenchNodes(t *testing.T) int {
	v := os.Getenv("WEFT_BENCH_KUBE_NODES")
	if v == "" {
		if os.Getenv("WEFT_BENCH_SCALE") == "1" {
			return 1000
		}
		return 200
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 4000 {
		t.Fatalf("WEFT_BENCH_KUBE_NODES=%q: want 1 to 4000", v)
	}
	return n
}

// TestBenchKubeScale: 3 weftd in Kubernetes mode on a real API server that
// also holds N simulated Nodes (default 1000) of kubelet size (status with
// conditions, addresses, node info and 40 images: about 10 kB of JSON),
// each with a WeftNode record, while simulated kubelets heartbeat at a
// kubelet's rate: a Lease renewal every 10 s per Node and a Node status
// report every 5 minutes per Node (kubelet's defaults with node leases). It
// measures, each beside a figure of the same run:
//
//   - the API requests each weftd makes per minute at steady state (from
//     the API server's audit log, which names the node of weftd's
//     pod-bound token), beside the simulated kubelets' own rate;
//   - the bytes each weftd receives from the API server per minute (an
//     nftables counter in its node's namespace), beside the bytes of the
//     Node objects that changed in that minute (what any watcher of full
//     Nodes receives);
//   - each weftd's CPU per minute under the heartbeats, beside its CPU
//     with no Node changing, measured just before them (a Node update
//     that keeps its UID and podCIDRs must cost weftd nothing);
//   - weftd's RSS with the N Nodes, beside the same weftd before them;
//   - the time for a new node to program them all (start → ready → a route
//     to every record's subnet), beside the same join before they existed;
//   - the time from one record's change (a new public IP) to node1's FDB,
//     beside the API write's own latency.
func TestBenchKubeScale(t *testing.T) {
	sims := kubeBenchNodes(t)
	testStart := time.Now()
	ko := kubeOptions(t)
	ko.Audit = true
	cfg := `{"Network":"10.240.0.0/12","SubnetLen":24,"Backend":{"Type":"vxlan"}}`
	c := e2etest.NewCluster(t, e2e.Options{Nodes: 3, Kube: ko, NetworkConfig: cfg, Logf: func(string, ...any) {}})
	ctx := t.Context()
	cs, rc := kubeAdminClient(t, c)
	nc, err := subnet.ParseConfig([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes() {
		if err := countAPIBytes(n); err != nil {
			t.Fatal(err)
		}
	}
	// The reference join, and RSS, before the simulated Nodes exist.
	joinRef := kubeJoinNode(t, c)
	time.Sleep(3 * time.Second) // steady state (first resyncs) before RSS: a duration, not a condition
	n1 := c.Nodes()[0]
	rssBefore, err := n1.Proc().RSS()
	if err != nil {
		t.Fatal(err)
	}

	// N Nodes of kubelet size, their Leases, their podCIDRs.
	start := time.Now()
	nodeSize := createSimNodes(t, cs, sims)
	t.Logf("%d Nodes (%d bytes of JSON each) and their Leases created in %.1f s", sims, nodeSize, time.Since(start).Seconds())
	if err := e2e.Eventually(5*time.Minute, time.Second, func() error {
		l, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		if err != nil {
			return err
		}
		missing := 0
		for _, n := range l.Items {
			if len(n.Spec.PodCIDRs) == 0 {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d Nodes without a podCIDR", missing)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("podCIDRs assigned %.1f s after the first Node", time.Since(start).Seconds())

	// Their WeftNode records, written as each simulated node's weftd would
	// (admin credentials: the guard only binds weftd's).
	store, err := subnetkube.New(rc, subnetkube.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	start = time.Now()
	leases := claimSimRecords(t, store, nc, sims)
	written := time.Since(start)
	want := sims + len(c.Nodes()) - 1
	if err := e2e.Eventually(5*time.Minute, 50*time.Millisecond, func() error {
		k, err := n1.Kernel()
		if err != nil {
			return err
		}
		if len(k.Routes) < want {
			return fmt.Errorf("%s has %d weft routes, want %d", n1.Name, len(k.Routes), want)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	programmed := time.Since(start)
	t.Logf("%d records written in %.1f s; all %d routes on %s %.1f s after the first write", sims, written.Seconds(), want, n1.Name, programmed.Seconds())

	// A new node programs all of them.
	joinScale := kubeJoinNode(t, c)

	// weftd's CPU in a quiet window (no Node changes), the reference for
	// its CPU under heartbeats below.
	cpuWindow := 20 * time.Second
	weftdCPU := func() (out []time.Duration) {
		for _, n := range c.Nodes() {
			out = append(out, cpuTime(t, n.Proc().PID))
		}
		return out
	}
	cpuSpent := func(before, after []time.Duration) time.Duration { // the busiest weftd's
		var most time.Duration
		for i := range before {
			most = max(most, after[i]-before[i])
		}
		return most
	}
	quiet0 := weftdCPU()
	time.Sleep(cpuWindow)
	quietCPU := cpuSpent(quiet0, weftdCPU())

	// Steady state under kubelet heartbeats: requests, bytes, RSS, CPU.
	sim := startKubelets(t, cs, sims)
	time.Sleep(10 * time.Second) // let the heartbeats reach their rate before the window opens
	window := time.Minute
	busy0 := weftdCPU()
	auditOff, err := fileSize(c.KubeAuditLog())
	if err != nil {
		t.Fatal(err)
	}
	bytesBefore := map[string]int64{}
	for _, n := range c.Nodes() {
		if bytesBefore[n.Name], err = apiBytes(n); err != nil {
			t.Fatal(err)
		}
	}
	simBefore := sim.snapshot()
	time.Sleep(window)
	simAfter := sim.snapshot()
	busyCPU := cpuSpent(busy0, weftdCPU())
	var perNode []float64
	var bytesPerMin []float64
	for _, n := range c.Nodes() {
		b, err := apiBytes(n)
		if err != nil {
			t.Fatal(err)
		}
		bytesPerMin = append(bytesPerMin, float64(b-bytesBefore[n.Name])/window.Minutes())
	}
	reqs, err := weftdRequests(c.KubeAuditLog(), auditOff)
	if err != nil {
		t.Fatal(err)
	}
	var verbs []string
	for _, n := range c.Nodes() {
		total := 0
		for verb, k := range reqs[n.Name] {
			total += k
			verbs = append(verbs, fmt.Sprintf("%s %s×%d", n.Name, verb, k))
		}
		perNode = append(perNode, float64(total)/window.Minutes())
	}
	slices.Sort(verbs)
	t.Logf("weftd requests in the %s window: %v", window, verbs)
	rssAfter, err := n1.Proc().RSS()
	if err != nil {
		t.Fatal(err)
	}

	// One change among N: a record's public IP, until node1's FDB has it.
	var change, write []float64
	for i := 0; i < 5; i++ {
		l := leases[i*(sims/5)]
		rec := l.Record
		rec.PublicIP = netip.AddrFrom4([4]byte{198, 19, 255, byte(10 + i)})
		rec.Version++
		t0 := time.Now()
		nl, err := store.UpdateRecord(ctx, l, rec)
		if err != nil {
			t.Fatal(err)
		}
		write = append(write, msOf(time.Since(t0)))
		leases[i*(sims/5)] = nl
		if err := e2e.Eventually(30*time.Second, 2*time.Millisecond, func() error {
			k, err := n1.Kernel()
			if err != nil {
				return err
			}
			for _, f := range k.FDB {
				if f.MAC == rec.BackendData.VTEPMAC && f.Dst == rec.PublicIP {
					return nil
				}
			}
			return fmt.Errorf("no FDB entry %s → %s on %s", rec.BackendData.VTEPMAC, rec.PublicIP, n1.Name)
		}); err != nil {
			t.Fatal(err)
		}
		change = append(change, msOf(time.Since(t0)))
	}
	sim.stop()
	for _, n := range c.Nodes() {
		if !n.Running() {
			t.Errorf("weftd on %s died with %d Nodes", n.Name, sims)
		}
	}

	heartbeats := float64(simAfter.requests-simBefore.requests) / window.Minutes() / float64(sims)
	nodeBytes := float64(simAfter.nodeUpdates-simBefore.nodeUpdates) * float64(nodeSize) / window.Minutes()
	benchRow(fmt.Sprintf("kube mode: API requests per weftd per minute, %d Nodes heartbeating (max of %d)", sims, len(perNode)),
		fmt.Sprintf("%.1f/min", slices.Max(perNode)), fmt.Sprintf("a simulated kubelet, same run: %.1f/min", heartbeats),
		fmt.Sprintf("%.2fx; writes: %d; all of them: %s", slices.Max(perNode)/heartbeats, writesOf(reqs), strings.Join(verbsOf(reqs), ", ")))
	benchRow(fmt.Sprintf("kube mode: bytes each weftd receives per minute, %d Nodes heartbeating (max of %d)", sims, len(bytesPerMin)),
		fmt.Sprintf("%.2f MB/min", slices.Max(bytesPerMin)/1e6), fmt.Sprintf("Node objects changed × their size, same run: %.2f MB/min", nodeBytes/1e6),
		fmt.Sprintf("%.2fx; %d Node status reports and %d Lease renewals in the window (%d heartbeats missed: API server too slow); bytes on the wire, TLS included", slices.Max(bytesPerMin)/nodeBytes,
			simAfter.nodeUpdates-simBefore.nodeUpdates, simAfter.requests-simBefore.requests-(simAfter.nodeUpdates-simBefore.nodeUpdates), simAfter.missed-simBefore.missed))
	perMin := func(d, over time.Duration) float64 { return d.Seconds() * float64(time.Minute) / float64(over) }
	benchRow(fmt.Sprintf("kube mode: weftd CPU per minute, %d Nodes heartbeating (the busiest of %d)", sims, len(c.Nodes())),
		fmt.Sprintf("%.2f s/min", perMin(busyCPU, window)), fmt.Sprintf("the same weftd with no Node changing, same run: %.2f s/min", perMin(quietCPU, cpuWindow)),
		fmt.Sprintf("%.2fx; 10 ms clock ticks", perMin(busyCPU, window)/max(perMin(quietCPU, cpuWindow), 0.01)))
	benchRow(fmt.Sprintf("kube mode: weftd RSS with %d Nodes and records (node1)", sims), fmt.Sprintf("%.1f MB", float64(rssAfter)/1e6),
		fmt.Sprintf("the same weftd with 4 nodes, same run: %.1f MB", float64(rssBefore)/1e6), fmt.Sprintf("%.2fx", float64(rssAfter)/float64(rssBefore)))
	benchRow(fmt.Sprintf("kube mode: new node start → routes to all %d subnets", sims+len(c.Nodes())-1), fmt.Sprintf("%.0f ms (ready %.0f ms)", msOf(joinScale.all), msOf(joinScale.ready)),
		fmt.Sprintf("the same join with 3 peers, same run: %.0f ms (ready %.0f ms)", msOf(joinRef.all), msOf(joinRef.ready)),
		fmt.Sprintf("%.2fx; records written live: all routes on node1 %.1f s after the first of %d writes (written in %.1f s)", joinScale.all.Seconds()/joinRef.all.Seconds(), programmed.Seconds(), sims, written.Seconds()))
	benchRow(fmt.Sprintf("kube mode: one record changed among %d → node1's FDB (median of 5)", sims), fmt.Sprintf("%.0f ms (max %.0f)", median(change), slices.Max(change)),
		fmt.Sprintf("the API write itself, same run: %.0f ms", median(write)), fmt.Sprintf("%.2fx", median(change)/median(write)))
	t.Logf("TestBenchKubeScale with %d Nodes took %.0f s", sims, time.Since(testStart).Seconds())
}

type joinTimes struct{ ready, all time.Duration }

// kubeJoinNode adds a node (Node, podCIDR, token), starts weftd and
// returns the time from start to ready and to a route to every other
// lease's subnet in its own kernel.
func kubeJoinNode(t *testing.T, c *e2e.Cluster) joinTimes {
	t.Helper()
	ctx := t.Context()
	n, err := c.AddNode(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.KubeJoin(ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := countAPIBytes(n); err != nil {
		t.Fatal(err)
	}
	if err := e2e.Eventually(30*time.Second, 20*time.Millisecond, func() error {
		cidrs, err := c.PodCIDRs(ctx, n)
		if err == nil && len(cidrs) == 0 {
			err = fmt.Errorf("no podCIDR yet")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// Every other lease's subnet, as node1 lists them.
	st, err := c.Nodes()[0].Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := len(st.Peers) + 1 // node1's peers and node1
	start := time.Now()
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	if err := n.WaitReady(ctx, 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	var j joinTimes
	j.ready = time.Since(start)
	if err := e2e.Eventually(5*time.Minute, 5*time.Millisecond, func() error {
		k, err := n.Kernel()
		if err != nil {
			return err
		}
		if len(k.Routes) < want {
			return fmt.Errorf("%s has %d weft routes, want %d", n.Name, len(k.Routes), want)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	j.all = time.Since(start)
	t.Logf("%s: ready %.0f ms, %d routes %.0f ms after start", n.Name, msOf(j.ready), want, msOf(j.all))
	return j
}

// countAPIBytes adds an nftables counter of the bytes n receives from the
// API server (in n's namespace: weftd is its only client there).
func countAPIBytes(n *e2e.Node) error {
	rules := fmt.Sprintf("table inet weftbench {\n chain in {\n  type filter hook input priority 0; policy accept;\n  ip saddr %s tcp sport %d counter\n }\n}\n", e2e.EtcdIP, e2e.KubeAPIServerPort)
	cmd := n.NS.Command(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %w: %s", n.Name, err, out)
	}
	return nil
}

var nftBytes = regexp.MustCompile(`counter packets \d+ bytes (\d+)`)

// apiBytes reads the counter countAPIBytes made.
func apiBytes(n *e2e.Node) (int64, error) {
	out, err := n.NS.Run(context.Background(), "nft", "list", "chain", "inet", "weftbench", "in")
	if err != nil {
		return 0, err
	}
	m := nftBytes.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no counter in %s's weftbench chain:\n%s", n.Name, out)
	}
	return strconv.ParseInt(m[1], 10, 64)
}

// simNode is a Node as a kubelet registers and reports it: labels,
// annotations, capacity, conditions, addresses, node info and 40 images.
func simNode(i int) *corev1.Node {
	name := fmt.Sprintf("sim-%04d", i)
	now := metav1.Now()
	res := corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("32780516Ki"),
		corev1.ResourcePods: resource.MustParse("110"), corev1.ResourceEphemeralStorage: resource.MustParse("101430960Ki"),
		"hugepages-1Gi": resource.MustParse("0"), "hugepages-2Mi": resource.MustParse("0"),
	}
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
				"beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
				"node.kubernetes.io/instance-type": "n2-standard-8", "topology.kubernetes.io/region": "europe-west1",
				"topology.kubernetes.io/zone": "europe-west1-b",
			},
			Annotations: map[string]string{
				"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true",
				"kubeadm.alpha.kubernetes.io/cri-socket": "unix:///var/run/containerd/containerd.sock",
			},
		},
		Status: corev1.NodeStatus{
			Capacity: res, Allocatable: res,
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("198.19.%d.%d", i/250, 1+i%250)},
				{Type: corev1.NodeHostName, Address: name},
			},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10250}},
			NodeInfo: corev1.NodeSystemInfo{
				MachineID: fmt.Sprintf("%032x", i), SystemUUID: fmt.Sprintf("4c4c4544-%04d-3610-8054-b4c04f4e3232", i),
				BootID: fmt.Sprintf("c3a1d2b4-%04d-4a8e-9d3c-5b7e8f9a0b1c", i), KernelVersion: "6.1.0-28-cloud-amd64",
				OSImage: "Debian GNU/Linux 12 (bookworm)", ContainerRuntimeVersion: "containerd://1.7.24",
				KubeletVersion: "v1.37.2", KubeProxyVersion: "", OperatingSystem: "linux", Architecture: "amd64",
			},
		},
	}
	for _, c := range []struct {
		t      corev1.NodeConditionType
		s      corev1.ConditionStatus
		reason string
	}{
		{corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory"},
		{corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure"},
		{corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID"},
		{corev1.NodeReady, corev1.ConditionTrue, "KubeletReady"},
	} {
		n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{
			Type: c.t, Status: c.s, Reason: c.reason, Message: "kubelet is posting ready status",
			LastHeartbeatTime: now, LastTransitionTime: now,
		})
	}
	for j := 0; j < 40; j++ {
		repo := fmt.Sprintf("registry.example.com/team-%02d/service-%02d", j%7, j)
		n.Status.Images = append(n.Status.Images, corev1.ContainerImage{
			Names:     []string{fmt.Sprintf("%s@sha256:%064x", repo, j*7919+1), fmt.Sprintf("%s:v1.%d.%d", repo, j, i%10)},
			SizeBytes: int64(20_000_000 + j*1_234_567),
		})
	}
	return n
}

// createSimNodes creates n simulated Nodes (with status) and their Leases
// in kube-node-lease, 16 at a time, and returns a Node's size in JSON.
func createSimNodes(t *testing.T, cs kubernetes.Interface, n int) int {
	t.Helper()
	ctx := t.Context()
	raw, err := json.Marshal(simNode(0))
	if err != nil {
		t.Fatal(err)
	}
	parallel(t, n, func(i int) error {
		node := simNode(i)
		st := node.Status
		created, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create Node %s: %w", node.Name, err)
		}
		// A patch, as a kubelet sends: the controller-manager writes the
		// Node (its podCIDR) meanwhile.
		patch, err := json.Marshal(map[string]any{"status": st})
		if err != nil {
			return err
		}
		if _, err := cs.CoreV1().Nodes().PatchStatus(ctx, node.Name, patch); err != nil {
			return fmt.Errorf("status of Node %s: %w", node.Name, err)
		}
		_, err = cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Create(ctx, simLease(created), metav1.CreateOptions{})
		return err
	})
	return len(raw)
}

func simLease(n *corev1.Node) *coordinationv1.Lease {
	d := int32(40)
	now := metav1.NewMicroTime(time.Now())
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Namespace: corev1.NamespaceNodeLease,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: n.Name, UID: n.UID}}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &n.Name, LeaseDurationSeconds: &d, RenewTime: &now},
	}
}

// claimSimRecords writes a WeftNode record for each simulated Node, 16 at
// a time, and returns the leases by index.
func claimSimRecords(t *testing.T, store *subnetkube.Store, nc *subnet.Config, n int) []*subnet.Lease {
	t.Helper()
	ctx := t.Context()
	leases := make([]*subnet.Lease, n)
	parallel(t, n, func(i int) error {
		mac := net.HardwareAddr{0x02, 0x5e, 0, 0, byte(i >> 8), byte(i)}
		l, err := store.Claim(ctx, subnet.ClaimRequest{Config: nc, Record: subnet.Record{
			NodeName: fmt.Sprintf("sim-%04d", i), NodeID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i),
			PublicIP:    netip.AddrFrom4([4]byte{198, 19, byte(i / 250), byte(1 + i%250)}),
			BackendType: subnet.BackendVXLAN, BackendData: subnet.BackendData{VTEPMAC: mac.String()}, Version: 1,
		}})
		leases[i] = l
		return err
	})
	return leases
}

// kubelets simulates the heartbeats of n kubelets: each renews its Lease
// every 10 s and reports its Node status every 5 minutes (a strategic
// merge patch of the conditions' heartbeat times, as a kubelet sends),
// spread evenly over time.
type kubelets struct {
	cancel      context.CancelFunc
	wg          sync.WaitGroup
	requests    atomic.Int64
	nodeUpdates atomic.Int64
	missed      atomic.Int64 // ticks dropped: every worker busy
}

type kubeletCounts struct{ requests, nodeUpdates, missed int64 }

func (k *kubelets) snapshot() kubeletCounts {
	return kubeletCounts{k.requests.Load(), k.nodeUpdates.Load(), k.missed.Load()}
}

func startKubelets(t *testing.T, cs kubernetes.Interface, n int) *kubelets {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	k := &kubelets{cancel: cancel}
	t.Cleanup(k.stop)
	// One ticker per kind of request hands Node indexes to 16 workers,
	// so that a slow answer does not slow the rate down.
	every := func(period time.Duration, fn func(i int) error) {
		work := make(chan int, n)
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			defer close(work)
			tick := time.NewTicker(period / time.Duration(n))
			defer tick.Stop()
			for i := 0; ; i = (i + 1) % n {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				select {
				case work <- i:
				default:
					k.missed.Add(1)
				}
			}
		}()
		for w := 0; w < 16; w++ {
			k.wg.Add(1)
			go func() {
				defer k.wg.Done()
				for i := range work {
					if err := fn(i); err != nil {
						if ctx.Err() == nil {
							t.Errorf("simulated kubelet %d: %v", i, err)
						}
						continue
					}
					k.requests.Add(1)
				}
			}()
		}
	}
	every(10*time.Second, func(i int) error {
		name := fmt.Sprintf("sim-%04d", i)
		now := metav1.NewMicroTime(time.Now())
		patch := fmt.Sprintf(`{"spec":{"renewTime":%q}}`, now.Format(metav1.RFC3339Micro))
		_, err := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		return err
	})
	every(5*time.Minute, func(i int) error {
		name := fmt.Sprintf("sim-%04d", i)
		now := time.Now().UTC().Format(time.RFC3339)
		var conds []string
		for _, c := range []string{"MemoryPressure", "DiskPressure", "PIDPressure", "Ready"} {
			conds = append(conds, fmt.Sprintf(`{"type":%q,"lastHeartbeatTime":%q}`, c, now))
		}
		patch := `{"status":{"conditions":[` + strings.Join(conds, ",") + `]}}`
		_, err := cs.CoreV1().Nodes().PatchStatus(ctx, name, []byte(patch))
		if err == nil {
			k.nodeUpdates.Add(1)
		}
		return err
	})
	return k
}

func (k *kubelets) stop() {
	k.cancel()
	k.wg.Wait()
}

func fileSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// weftdRequests counts the requests of weftd's ServiceAccount in the audit
// log from byte offset on, by the node of the token and by verb and
// resource.
func weftdRequests(path string, offset int64) (map[string]map[string]int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if offset > int64(len(data)) {
		return nil, fmt.Errorf("audit log %s shrank", path)
	}
	out := map[string]map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data[offset:]))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev struct {
			Verb string `json:"verb"`
			User struct {
				Username string              `json:"username"`
				Extra    map[string][]string `json:"extra"`
			} `json:"user"`
			RequestURI string `json:"requestURI"`
			ObjectRef  struct {
				Resource    string `json:"resource"`
				Subresource string `json:"subresource"`
			} `json:"objectRef"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("audit log line: %w", err)
		}
		if ev.User.Username != "system:serviceaccount:weft-system:weftd" {
			continue
		}
		node := strings.Join(ev.User.Extra["authentication.kubernetes.io/node-name"], ",")
		what := ev.Verb + " " + ev.ObjectRef.Resource
		if ev.ObjectRef.Resource == "" { // a path such as /readyz
			what += strings.SplitN(ev.RequestURI, "?", 2)[0]
		}
		if ev.ObjectRef.Subresource != "" {
			what += "/" + ev.ObjectRef.Subresource
		}
		if out[node] == nil {
			out[node] = map[string]int{}
		}
		out[node][what]++
	}
	return out, sc.Err()
}

// verbsOf lists the verbs and resources of the counted requests, or says
// there were none.
func verbsOf(reqs map[string]map[string]int) []string {
	sum := map[string]int{}
	for _, m := range reqs {
		for what, k := range m {
			sum[what] += k
		}
	}
	if len(sum) == 0 {
		return []string{"no request in the window"}
	}
	var out []string
	for what, k := range sum {
		out = append(out, fmt.Sprintf("%s×%d", what, k))
	}
	slices.Sort(out)
	return out
}

// writesOf counts the requests that are not reads (get, list, watch).
func writesOf(reqs map[string]map[string]int) int {
	n := 0
	for _, m := range reqs {
		for what, k := range m {
			verb, _, _ := strings.Cut(what, " ")
			if verb != "get" && verb != "list" && verb != "watch" {
				n += k
			}
		}
	}
	return n
}
