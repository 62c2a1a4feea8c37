// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e && linux

package e2e_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/e2etest"
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
