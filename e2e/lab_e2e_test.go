// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e && linux

package e2e_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/e2etest"
	"github.com/weftnet/weft/e2e/kubetest"
	"github.com/weftnet/weft/subnet"
)

// TestLab drives weft-lab the way `make lab` and `make lab-down` do:
// up, up again (refused), status, down, down again (nothing to do).
func TestLab(t *testing.T) {
	e2etest.RequireRoot(t)
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), "weftlab-") {
		t.Skip("a lab is already up on this machine (weftlab-* namespaces): not touching it")
	}
	bins, err := e2etest.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "lab")
	lab := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(bins, e2e.BinWeftLab), args...)
		cmd.Env = append(e2e.CleanEnv(), e2e.BinDirEnv+"="+bins, "WEFT_LAB_DIR="+dir)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		if s, err := e2e.LoadState(filepath.Join(dir, "state.json")); err == nil {
			e2e.Teardown(s)
		}
	})

	out, err := lab("up", "--nodes", "2", "--pods", "2")
	t.Logf("lab up:\n%s", out)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	for _, want := range []string{"node1", "node2", "all 12 pairs reachable", "ip netns exec weftlab-underlay", "make lab-down"} {
		if !strings.Contains(out, want) {
			t.Errorf("lab up output lacks %q", want)
		}
	}
	s, err := e2e.LoadState(filepath.Join(dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	// The processes outlive the command that started them.
	if !s.Etcd.Alive() {
		t.Error("etcd is not running after lab up returned")
	}
	for _, n := range s.Nodes {
		if !n.Weftd.Alive() {
			t.Errorf("weftd on %s is not running after lab up returned", n.Name)
		}
	}

	out, err = lab("up")
	if err == nil || !strings.Contains(out, "already up") {
		t.Errorf("second lab up: err %v, output %q; want a refusal saying a lab is already up", err, out)
	}

	out, err = lab("status")
	if err != nil || !strings.Contains(out, "all 12 pairs reachable") || strings.Contains(out, "NOT RUNNING") {
		t.Errorf("lab status: err %v, output:\n%s", err, out)
		for _, n := range s.Nodes {
			if !n.Weftd.Alive() {
				data, _ := os.ReadFile(n.LogFile)
				t.Logf("%s's weftd log:\n%s", n.Name, data[max(0, len(data)-3000):])
			}
		}
	}

	out, err = lab("down")
	t.Logf("lab down:\n%s", out)
	if err != nil {
		t.Fatalf("lab down: %v", err)
	}
	if live := s.Live(); len(live) > 0 {
		t.Errorf("left after lab down: %v", live)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("lab dir %s left after lab down", dir)
	}

	out, err = lab("down")
	if err != nil || !strings.Contains(out, "no lab is up") {
		t.Errorf("second lab down: err %v, output %q; want success saying no lab is up", err, out)
	}
}

// TestLabKube drives `make lab STORE=kube` (weft-lab up --store kube) on
// the real kube-apiserver and kube-controller-manager from make
// kube-tools: each Node's podCIDR assigned by the controller-manager is
// its weftd's subnet, the pods reach each other, weftctl leases, status
// and members work with the printed kubeconfig (from the lab's underlay
// namespace, as the lab says), and down removes every process, namespace
// and file, the control plane's too.
func TestLabKube(t *testing.T) {
	tools := kubetest.RequireTools(t)
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), "weftlab-") {
		t.Skip("a lab is already up on this machine (weftlab-* namespaces): not touching it")
	}
	bins, err := e2etest.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "lab")
	lab := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(bins, e2e.BinWeftLab), args...)
		cmd.Env = append(e2e.CleanEnv(), e2e.BinDirEnv+"="+bins, "WEFT_LAB_DIR="+dir, kubetest.ToolsEnv+"="+tools)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		if s, err := e2e.LoadState(filepath.Join(dir, "state.json")); err == nil {
			e2e.Teardown(s)
		}
	})

	start := time.Now()
	out, err := lab("up", "--store", "kube", "--nodes", "3", "--pods", "2")
	t.Logf("lab up --store kube (%s):\n%s", time.Since(start).Round(time.Millisecond), out)
	if err != nil {
		t.Fatalf("lab up --store kube: %v", err)
	}
	kubeconfig := filepath.Join(dir, "kube", "admin.kubeconfig")
	for _, want := range []string{"kube-apiserver ready", "applied etc/kubernetes/weft-guard.yaml", "PODCIDRS (controller-manager)",
		"all 30 pairs reachable", "status --kubeconfig " + kubeconfig, "make lab-down"} {
		if !strings.Contains(out, want) {
			t.Errorf("lab up output lacks %q", want)
		}
	}
	s, err := e2e.LoadState(filepath.Join(dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Kube == nil || !s.Kube.APIServer.Alive() || !s.Kube.ControllerManager.Alive() || !s.Etcd.Alive() {
		t.Fatalf("control plane not running after lab up returned: %+v", s.Kube)
	}
	for _, n := range s.Nodes {
		if !n.Weftd.Alive() {
			t.Errorf("weftd on %s is not running after lab up returned", n.Name)
		}
	}

	// weftctl with the printed kubeconfig, from the underlay namespace.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	underlay := e2e.NS{Name: s.Underlay}
	weftctl := func(args ...string) (string, error) {
		cmd := underlay.Command(ctx, append([]string{filepath.Join(bins, e2e.BinWeftctl)}, args...)...)
		cmd.Env = e2e.CleanEnv()
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	kubectl := func(args ...string) (string, error) {
		cmd := underlay.Command(ctx, append([]string{s.Kube.Kubectl, "--kubeconfig", kubeconfig}, args...)...)
		cmd.Env = e2e.CleanEnv()
		b, err := cmd.Output()
		return string(b), err
	}
	out, err = weftctl("leases", "--kubeconfig", kubeconfig)
	t.Logf("weftctl leases --kubeconfig:\n%s", out)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range s.Nodes {
		cidr, err := kubectl("get", "node", n.Name, "-o", "jsonpath={.spec.podCIDR}")
		if err != nil || cidr == "" {
			t.Fatalf("Node %s: no podCIDR (%v)", n.Name, err)
		}
		sf, err := subnet.ReadSubnetFile(n.SubnetFile)
		if err != nil {
			t.Fatal(err)
		}
		if sf.Subnet.Masked().String() != cidr {
			t.Errorf("%s: subnet %s, its Node's podCIDR %s", n.Name, sf.Subnet.Masked(), cidr)
		}
		if !strings.Contains(out, cidr+"  "+n.Name+"  "+n.IP) {
			t.Errorf("weftctl leases lacks %s of %s at %s", cidr, n.Name, n.IP)
		}
	}
	out, err = weftctl("status", "--kubeconfig", kubeconfig)
	t.Logf("weftctl status --kubeconfig:\n%s", out)
	if err != nil {
		t.Errorf("weftctl status --kubeconfig: %v", err)
	}
	for _, n := range s.Nodes {
		// node, its HTTP address, 2 peers, both other members alive, ready.
		if !regexp.MustCompile(`(?m)^` + n.Name + `\s+` + regexp.QuoteMeta(n.HTTPAddr) + `\s+10\.244\.\d+\.0/24\s+vxlan\s+2\s+2/2\s+yes$`).MatchString(out) {
			t.Errorf("weftctl status --kubeconfig: no ready line for %s at %s with 2 peers and 2/2 members alive", n.Name, n.HTTPAddr)
		}
	}
	out, err = weftctl("status", "--kubeconfig", kubeconfig, "--node", "node2")
	if err != nil || !strings.Contains(out, "node2 (") || !strings.Contains(out, "2 peer(s)") {
		t.Errorf("weftctl status --kubeconfig --node node2: %v\n%s", err, out)
	}
	out, err = weftctl("members", "--kubeconfig", kubeconfig)
	t.Logf("weftctl members --kubeconfig:\n%s", out)
	if err != nil {
		t.Errorf("weftctl members --kubeconfig: %v", err)
	}
	if got := regexp.MustCompile(`(?m)^node\d\s+node\d\s+alive\s`).FindAllString(out, -1); len(got) != 6 {
		t.Errorf("weftctl members --kubeconfig: %d alive rows, want 6 (3 nodes × 2 others)", len(got))
	}
	out, err = weftctl("members", "--kubeconfig", kubeconfig, "--node", "nodeX")
	if err == nil || !strings.Contains(out, `no node "nodeX"`) || !strings.Contains(out, "node1, node2, node3") {
		t.Errorf("weftctl members --node nodeX: err %v, output %q; want a refusal naming the nodes", err, out)
	}

	// A stopped weftd: status names it and fails.
	out, err = lab("stop", "node3")
	if err != nil {
		t.Fatalf("lab stop node3: %v\n%s", err, out)
	}
	out, err = weftctl("status", "--kubeconfig", kubeconfig)
	if err == nil || !regexp.MustCompile(`(?m)^node3\s.*UNREACHABLE`).MatchString(out) || !strings.Contains(out, "1 of 3 nodes not ready or not answering: node3") {
		t.Errorf("weftctl status with node3's weftd stopped: err %v, output:\n%s", err, out)
	}
	if out, err = lab("start", "node3"); err != nil {
		t.Fatalf("lab start node3: %v\n%s", err, out)
	}

	// The state file now holds node3's new weftd.
	if s, err = e2e.LoadState(filepath.Join(dir, "state.json")); err != nil {
		t.Fatal(err)
	}
	out, err = lab("status")
	if err != nil || !strings.Contains(out, "Kubernetes mode: kube-apiserver") || !strings.Contains(out, "all 30 pairs reachable") || strings.Contains(out, "NOT RUNNING") {
		t.Errorf("lab status: err %v, output:\n%s", err, out)
		for _, n := range s.Nodes {
			if !n.Weftd.Alive() {
				data, _ := os.ReadFile(n.LogFile)
				t.Logf("%s's weftd log:\n%s", n.Name, data[max(0, len(data)-3000):])
			}
		}
	}

	out, err = lab("down")
	t.Logf("lab down:\n%s", out)
	if err != nil {
		t.Fatalf("lab down: %v", err)
	}
	if live := s.Live(); len(live) > 0 {
		t.Errorf("left after lab down: %v", live)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("lab dir %s left after lab down", dir)
	}
}
