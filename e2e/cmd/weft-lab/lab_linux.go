// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/subnet"
)

// up builds the lab and prints what it built.
func up(ctx context.Context, nodes, pods int, backend string, dualStack bool, kube *e2e.KubeOptions, binDir, dir string) error {
	bins, err := filepath.Abs(binDir)
	if err != nil {
		return err
	}
	for _, b := range []string{e2e.BinWeftd, e2e.BinCNI, e2e.BinWeftEtcd} {
		if _, err := os.Stat(filepath.Join(bins, b)); err != nil {
			return fmt.Errorf("%s is missing from %s: run 'make build' (or go build -o %s/%s ...), or point --bin-dir at the binaries", b, bins, bins, b)
		}
	}

	sf := stateFile(dir)
	if old, err := e2e.LoadState(sf); err == nil {
		if live := old.Live(); len(live) > 0 {
			return fmt.Errorf("a lab is already up (%d namespaces and processes of it are live, state in %s): see 'weft-lab status', or remove it first with 'make lab-down' (weft-lab down)", len(live), sf)
		}
		fmt.Printf("==> a previous lab left a stale state file %s (nothing of it runs): removing it\n", sf)
		if err := e2e.Teardown(old); err != nil {
			return fmt.Errorf("remove the stale lab: %w", err)
		}
		os.Remove(sf)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read lab state: %w (remove %s if it is not a lab)", err, sf)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create lab dir: %w", err)
	}

	start := time.Now()
	step := func(format string, a ...any) {
		fmt.Printf("==> [%5.2fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
	}
	mode := ""
	if kube != nil {
		mode = ", Kubernetes mode"
	}
	step("building a %d-node %s lab (%d pods per node%s%s) in %s", nodes, backend, pods, map[bool]string{true: ", dual-stack"}[dualStack], mode, dir)
	c, err := e2e.New(ctx, e2e.Options{
		Nodes:        nodes,
		PodsPerNode:  pods,
		Backend:      backend,
		DualStack:    dualStack,
		BinDir:       bins,
		Dir:          dir,
		RemoveDir:    true,
		NamePrefix:   labPrefix,
		DeviceSuffix: "-",
		StateFile:    sf,
		Kube:         kube,
		Logf:         step,
	})
	if err != nil {
		// New has removed what it made.
		return fmt.Errorf("lab up failed (everything it made is removed): %w", err)
	}

	fmt.Println()
	printNodes(ctx, c)
	if kube != nil {
		fmt.Println()
		printKube(ctx, c)
	}
	fmt.Println()
	step("measuring pod-to-pod reachability (ICMP echo from every pod to every pod)")
	fmt.Println()
	printMatrix(podsOf(c.Pods()), false)
	if dualStack {
		fmt.Println()
		printMatrix(podsOf(c.Pods()), true)
	}
	fmt.Println()
	printExplore(c, bins)
	return nil
}

// down removes the lab s records (state file sf).
func down(s e2e.State, sf string) error {
	live := s.Live()
	fmt.Printf("==> removing the lab in %s: %d namespaces, %d nodes, %d pods\n", s.Dir, len(s.Namespaces), len(s.Nodes), len(s.Pods))
	if len(live) == 0 {
		fmt.Println("    (nothing of it was running any more)")
	}
	if err := e2e.Teardown(s); err != nil {
		return fmt.Errorf("lab down: %w (state kept in %s: run 'weft-lab down' again)", err, sf)
	}
	os.Remove(sf)
	fmt.Println("==> lab removed")
	return nil
}

// status prints what of the lab s runs and measures reachability.
func status(ctx context.Context, s e2e.State) error {
	fmt.Printf("lab in %s, backend %s, etcd %s in namespace %s: %s\n", s.Dir, s.Backend, s.EtcdEndpoint, s.Underlay, alive(s.Etcd))
	if k := s.Kube; k != nil {
		fmt.Printf("Kubernetes mode: kube-apiserver %s: %s; kube-controller-manager: %s\n", k.URL, alive(k.APIServer), alive(k.ControllerManager))
		fmt.Printf("admin kubeconfig (from namespace %s): %s\n", s.Underlay, k.Kubeconfig)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NODE\tNAMESPACE\tPUBLIC IP\tSUBNET\tWEFTD\tREADY")
	for _, n := range s.Nodes {
		sub := "-"
		if f, err := subnet.ReadSubnetFile(n.SubnetFile); err == nil {
			sub = joinValid(f.Subnet.Masked(), f.IPv6Subnet.Masked())
		}
		ready := "-"
		if n.Weftd.Alive() {
			ready = readyz(ctx, e2e.NS{Name: n.Namespace}, n.HTTPAddr)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Namespace, n.IP, sub, alive(n.Weftd), ready)
	}
	w.Flush()
	fmt.Println()
	w = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "POD\tNAMESPACE\tNODE\tADDRESSES")
	for _, p := range s.Pods {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", p.Name, p.Namespace, p.Node, strings.TrimSpace(p.IP+" "+p.IPv6))
	}
	w.Flush()
	if os.Geteuid() != 0 || len(s.Pods) < 2 {
		return nil
	}
	var pods []labPod
	for _, p := range s.Pods {
		lp := labPod{name: p.Name, ns: e2e.NS{Name: p.Namespace}}
		lp.ip[0], _ = netip.ParseAddr(p.IP)
		lp.ip[1], _ = netip.ParseAddr(p.IPv6)
		if lp.ns.Exists() {
			pods = append(pods, lp)
		}
	}
	fmt.Println()
	printMatrix(pods, false)
	if pods[0].ip[1].IsValid() {
		fmt.Println()
		printMatrix(pods, true)
	}
	return nil
}

// proc stops, starts or restarts the lab's process name and saves the
// new PID in the state file sf.
func proc(verb, name, sf string, s e2e.State) error {
	var slot **e2e.Proc
	switch {
	case name == "etcd":
		slot = &s.Etcd
	case name == "kube-apiserver" && s.Kube != nil:
		slot = &s.Kube.APIServer
	case name == "kube-controller-manager" && s.Kube != nil:
		slot = &s.Kube.ControllerManager
	default:
		var names []string
		for i := range s.Nodes {
			names = append(names, s.Nodes[i].Name)
			if s.Nodes[i].Name == name {
				slot = &s.Nodes[i].Weftd
			}
		}
		if slot == nil {
			if s.Kube != nil {
				names = append(names, "kube-apiserver", "kube-controller-manager")
			}
			return fmt.Errorf("no node %q in the lab (nodes: %s, or etcd)", name, strings.Join(names, ", "))
		}
	}
	p := *slot
	if p == nil {
		return fmt.Errorf("%s was never started", name)
	}
	if verb == "stop" || verb == "restart" {
		if !p.Alive() {
			fmt.Printf("%s is not running\n", name)
		} else if err := p.Stop(10 * time.Second); err != nil {
			return fmt.Errorf("stop %s: %w", name, err)
		} else {
			fmt.Printf("stopped %s (pid %d)\n", name, p.PID)
		}
	}
	if verb == "start" || verb == "restart" {
		if p.Alive() {
			fmt.Printf("%s is already running (pid %d)\n", name, p.PID)
			return nil
		}
		np, err := p.Respawn()
		if err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		*slot = np
		fmt.Printf("started %s (pid %d), log %s\n", name, np.PID, np.Log)
	}
	return e2e.SaveState(sf, s)
}

func printNodes(ctx context.Context, c *e2e.Cluster) {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NODE\tNAMESPACE\tSUBNET\tPUBLIC IP\tBACKEND\tMTU\tWEFTD PID")
	for _, n := range c.Nodes() {
		sub, mtu := "-", "-"
		if f, err := n.SubnetFile(); err == nil {
			sub = joinValid(f.Subnet.Masked(), f.IPv6Subnet.Masked())
			mtu = fmt.Sprint(f.MTU)
		}
		pid := "-"
		if p := n.Proc(); p != nil {
			pid = fmt.Sprint(p.PID)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.NS.Name, sub, n.IP, c.Backend(), mtu, pid)
	}
	w.Flush()
	fmt.Println()
	w = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "POD\tNAMESPACE\tNODE\tADDRESSES")
	for _, p := range c.Pods() {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", p.Name, p.NS.Name, p.Node.Name, joinValid(p.IP, p.IPv6))
	}
	w.Flush()
}

// labPod is a pod as the matrix needs it.
type labPod struct {
	name string
	ns   e2e.NS
	ip   [2]netip.Addr // IPv4, IPv6
}

func podsOf(ps []*e2e.Pod) []labPod {
	var out []labPod
	for _, p := range ps {
		out = append(out, labPod{name: p.Name, ns: p.NS, ip: [2]netip.Addr{p.IP, p.IPv6}})
	}
	return out
}

// printMatrix pings every pod from every pod and prints the round-trip
// times in milliseconds ("-" on the diagonal, "FAIL" for no reply). It
// returns the number of pairs that did not answer.
func printMatrix(pods []labPod, v6 bool) int {
	fam := 0
	if v6 {
		fam = 1
	}
	cells := make([][]string, len(pods))
	var wg sync.WaitGroup
	for i, a := range pods {
		cells[i] = make([]string, len(pods))
		for j, b := range pods {
			if i == j {
				cells[i][j] = "-"
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, err := e2e.Ping(a.ns, b.ip[fam], 2*time.Second)
				if err != nil {
					cells[i][j] = "FAIL"
					return
				}
				cells[i][j] = fmt.Sprintf("%.3f", d.Seconds()*1000)
			}()
		}
	}
	wg.Wait()
	fmt.Printf("pod-to-pod round trip over %s, ms (row: from, column: to)\n", map[bool]string{false: "IPv4", true: "IPv6"}[v6])
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(w, "\t")
	for _, b := range pods {
		fmt.Fprintf(w, "%s\t", b.name)
	}
	fmt.Fprintln(w)
	fails := 0
	for i, a := range pods {
		fmt.Fprintf(w, "%s\t", a.name)
		for j := range pods {
			if cells[i][j] == "FAIL" {
				fails++
			}
			fmt.Fprintf(w, "%s\t", cells[i][j])
		}
		fmt.Fprintln(w)
	}
	w.Flush()
	if fails > 0 {
		fmt.Printf("%d pairs did not answer: see the weftd logs\n", fails)
	} else {
		fmt.Printf("all %d pairs reachable\n", len(pods)*(len(pods)-1))
	}
	return fails
}

func printExplore(c *e2e.Cluster, bins string) {
	nodes, pods := c.Nodes(), c.Pods()
	n1 := nodes[0]
	weftctl := filepath.Join(bins, e2e.BinWeftctl)
	fmt.Println("The lab is up and keeps running. Explore it:")
	fmt.Printf("  ip netns list | grep %s\n", labPrefix)
	fmt.Printf("  ip netns exec %s ip route                 # routes to the other nodes' pod subnets\n", n1.NS.Name)
	if c.Backend() == subnet.BackendVXLAN {
		fmt.Printf("  ip netns exec %s bridge fdb show dev %s   # VXLAN forwarding entries\n", n1.NS.Name, n1.VXLANDeviceName())
		fmt.Printf("  ip netns exec %s ip neigh show dev %s\n", n1.NS.Name, n1.VXLANDeviceName())
	}
	fmt.Printf("  ip netns exec %s nft list table inet weft  # masquerade rules (needs the nft tool)\n", n1.NS.Name)
	if len(pods) > 0 {
		fmt.Printf("  ip netns exec %s ip addr show eth0\n", pods[0].NS.Name)
	}
	if kc := c.Kubeconfig(); kc != "" {
		kubectl := c.State().Kube.Kubectl
		fmt.Printf("  ip netns exec %s %s --kubeconfig %s get nodes,weftnodes -o wide\n", c.Underlay.Name, kubectl, kc)
		fmt.Printf("  ip netns exec %s %s leases --kubeconfig %s\n", c.Underlay.Name, weftctl, kc)
		fmt.Printf("  ip netns exec %s %s status --kubeconfig %s [--node %s]\n", c.Underlay.Name, weftctl, kc, n1.Name)
		fmt.Printf("  ip netns exec %s %s members --kubeconfig %s [--node %s]\n", c.Underlay.Name, weftctl, kc, n1.Name)
		fmt.Printf("  %s stop kube-apiserver   # the data plane carries on; start it again with start\n", filepath.Join(bins, e2e.BinWeftLab))
	} else {
		fmt.Printf("  ip netns exec %s %s leases --etcd-endpoints %s\n", c.Underlay.Name, weftctl, c.EtcdEndpoint())
		fmt.Printf("  ip netns exec %s %s status --addr %s\n", n1.NS.Name, weftctl, n1.HTTPAddr)
		fmt.Printf("  ip netns exec %s %s members --addr %s\n", n1.NS.Name, weftctl, n1.HTTPAddr)
	}
	fmt.Printf("  %s status\n", filepath.Join(bins, e2e.BinWeftLab))
	fmt.Printf("  logs: %s/<node>/weftd.log, %s/etcd.log\n", c.Dir, c.Dir)
	if c.Kubeconfig() != "" {
		fmt.Printf("        %s/kube/kube-apiserver.log, %s/kube/kube-controller-manager.log\n", c.Dir, c.Dir)
	}
	fmt.Println()
	fmt.Println("Remove it with: make lab-down   (or: weft-lab down)")
}

func alive(p *e2e.Proc) string {
	if p == nil {
		return "not started"
	}
	if p.Alive() {
		return fmt.Sprintf("running (pid %d)", p.PID)
	}
	return fmt.Sprintf("NOT RUNNING (was pid %d)", p.PID)
}

// readyz asks weftd's /readyz from inside the node's namespace.
func readyz(ctx context.Context, ns e2e.NS, addr string) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cl := &http.Client{Transport: &http.Transport{DialContext: ns.DialContext, DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
	if err != nil {
		return "?"
	}
	resp, err := cl.Do(req)
	if err != nil {
		return "unreachable"
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return "yes"
	}
	return fmt.Sprintf("no (HTTP %d)", resp.StatusCode)
}

// joinValid joins the valid ones of xs (addresses or prefixes) with
// commas; "-" when none is valid.
func joinValid[T interface {
	IsValid() bool
	String() string
}](xs ...T) string {
	var s []string
	for _, x := range xs {
		if x.IsValid() {
			s = append(s, x.String())
		}
	}
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

// printKube prints the Kubernetes side of a lab in Kubernetes mode: each
// Node's podCIDRs (assigned by the controller-manager) and the admin
// kubeconfig.
func printKube(ctx context.Context, c *e2e.Cluster) {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NODE OBJECT\tPODCIDRS (controller-manager)\tWEFTD KUBECONFIG")
	for _, n := range c.Nodes() {
		cidrs, err := c.PodCIDRs(ctx, n)
		got := strings.Join(cidrs, ",")
		if err != nil {
			got = "? " + err.Error()
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", n.Name, got, n.KubeconfigPath())
	}
	w.Flush()
	fmt.Println()
	fmt.Printf("kubeconfig (admin; its server %s is reachable from the lab's namespaces, e.g. ip netns exec %s):\n  %s\n",
		c.State().Kube.URL, c.Underlay.Name, c.Kubeconfig())
}
