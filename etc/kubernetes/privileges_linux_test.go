// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kubernetes

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/backend/backendtest"
	"github.com/weftnet/weft/e2e"
)

// capBits maps the capabilities the manifest may add to their numbers.
var capBits = map[string]uint{"NET_BIND_SERVICE": 10, "NET_ADMIN": 12, "NET_RAW": 13}

// containerScript runs the real weftd as the DaemonSet's container does:
// uid 0, no new privileges, only the added capabilities, and /proc/sys
// read-only (as a container runtime mounts it for an unprivileged
// container), in a mount namespace of its own.
const containerScript = `#!/bin/sh
set -eu
exec unshare --mount --propagation private /bin/sh -c '
	mount --bind /proc/sys /proc/sys
	mount -o remount,bind,ro /proc/sys
	exec "$0" "$@"' \
	%[1]s --no-new-privs --inh-caps=-all%[2]s --ambient-caps=-all%[2]s --bounding-set=-all%[2]s %[3]s "$@"
`

// TestContainerPrivileges runs a two-node cluster whose weftd processes have
// only what the manifest gives the weftd container (NET_ADMIN, NET_RAW,
// read-only /proc/sys), and checks the decision the manifest documents:
// weftd cannot turn IP forwarding on and says so in /status, the weft CNI
// plugin (run as root on the node, as the container runtime runs it) turns
// it on when it sets up the first pod, and pod traffic between the nodes
// flows.
func TestContainerPrivileges(t *testing.T) {
	backendtest.SkipUnlessRoot(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) not found")
	}
	m, err := decodeManifest(readFile(t, manifestFile))
	if err != nil {
		t.Fatal(err)
	}
	c := container(m.DaemonSets[0].Spec.Template.Spec.Containers, "weftd")
	var capList string
	var mask uint64
	for _, cp := range c.SecurityContext.Capabilities.Add {
		bit, ok := capBits[string(cp)]
		if !ok {
			t.Fatalf("capability %s in the manifest: add it to capBits", cp)
		}
		mask |= 1 << bit
		capList += ",+" + strings.ToLower(string(cp))
	}

	bin, err := e2e.TestBinDir()
	if err != nil {
		t.Fatalf("binaries: %v", err)
	}
	wrap := t.TempDir()
	for _, name := range []string{"weftctl", "weft", "weft-etcd"} {
		if err := os.Symlink(filepath.Join(bin, name), filepath.Join(wrap, name)); err != nil {
			t.Fatal(err)
		}
	}
	script := fmt.Sprintf(containerScript, setpriv, capList, filepath.Join(bin, "weftd"))
	if err := os.WriteFile(filepath.Join(wrap, "weftd"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}

	cl := e2e.NewForTest(t, e2e.Options{Nodes: 2, PodsPerNode: 1, BinDir: wrap})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nodes := cl.Nodes()
	for _, n := range nodes {
		if err := n.WaitReady(ctx, time.Minute); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.Proc().PID))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && k == "CapEff" {
				if got, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err != nil || got != mask {
					t.Errorf("%s: weftd CapEff %s, want %016x", n.Name, strings.TrimSpace(v), mask)
				}
			}
		}
		s, err := n.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if p := s.Node.ForwardingProblem; !strings.Contains(p, "ip_forward") {
			t.Errorf("%s: weftd with a read-only /proc/sys should report a forwarding problem, /status has %q", n.Name, p)
		}
		// The pod the harness attached through the CNI plugin turned
		// forwarding on in the node's namespace.
		out, err := exec.Command("ip", "netns", "exec", n.NS.Name, "cat", "/proc/sys/net/ipv4/ip_forward").Output()
		if err != nil || strings.TrimSpace(string(out)) != "1" {
			t.Errorf("%s: ip_forward %q (%v) after the CNI plugin ran, want 1", n.Name, out, err)
		}
	}
	if len(nodes) != 2 || len(nodes[0].Pods()) == 0 || len(nodes[1].Pods()) == 0 {
		t.Fatalf("want 2 nodes with a pod each")
	}
	a, b := nodes[0].Pods()[0], nodes[1].Pods()[0]
	for _, p := range [][2]*e2e.Pod{{a, b}, {b, a}} {
		err := e2e.Eventually(10*time.Second, 100*time.Millisecond, func() error {
			_, err := e2e.Ping(p[0].NS, p[1].IP, time.Second)
			return err
		})
		if err != nil {
			t.Errorf("ping %s (%s) -> %s (%s): %v", p[0].Name, p[0].IP, p[1].Name, p[1].IP, err)
		}
	}
}
