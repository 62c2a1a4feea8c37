// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package systemd

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

// capBits maps the capability names the unit may hold to their numbers.
var capBits = map[string]uint{"CAP_NET_BIND_SERVICE": 10, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13}

// wrapperScript runs the real weftd as the unit would: a non-root user
// (65534 stands in for weft), no new privileges, and only the unit's
// capabilities in its bounding, inheritable and ambient sets. Before it
// drops root it hands the node's state dir and subnet file directory to
// that user, as systemd does with StateDirectory= and RuntimeDirectory=,
// and, in a mount namespace of its own, puts a directory of that user's
// over /var/run/wireguard (RuntimeDirectory=wireguard), so the shared
// directory of the machine is left alone.
const wrapperScript = `#!/bin/sh
set -eu
state= subnet= prev=
for a in "$@"; do
	case $prev in
	--state-dir) state=$a ;;
	--subnet-file) subnet=$a ;;
	esac
	prev=$a
done
mkdir -p "$state" "$state.wireguard" /var/run/wireguard
chown -R 65534:65534 "$state" "$state.wireguard" "$(dirname "$subnet")"
export WEFT_WG_DIR="$state.wireguard"
exec unshare --mount --propagation private /bin/sh -c '
	mount --bind "$WEFT_WG_DIR" /var/run/wireguard
	exec "$0" "$@"' \
	%[1]s --reuid=65534 --regid=65534 --clear-groups --no-new-privs \
	--inh-caps=-all%[2]s --ambient-caps=-all%[2]s --bounding-set=-all%[2]s %[3]s "$@"
`

// procStatus returns the fields of /proc/<pid>/status.
func procStatus(pid int) (map[string]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	st := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			st[k] = strings.TrimSpace(v)
		}
	}
	return st, nil
}

// TestUnitPrivileges runs real weftd processes with exactly the
// privileges weftd.service gives them (a non-root user, CAP_NET_ADMIN and
// CAP_NET_RAW only) in a two-node cluster in network namespaces, once per
// backend, and checks that they get ready, turn forwarding on, install
// their masquerade table, and carry pod traffic between the nodes. This is
// the part of the unit that systemd-analyze cannot check: that weftd works
// inside it. (The machine has no WireGuard module, so the wireguard case
// runs the userspace device: TUN, UAPI socket, wgctrl.)
func TestUnitPrivileges(t *testing.T) {
	backendtest.SkipUnlessRoot(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) not found")
	}
	u := parseUnit(t, readFile(t, unitFile))
	bounding := strings.Fields(strings.Join(u["Service"]["CapabilityBoundingSet"], " "))
	if got := strings.Fields(strings.Join(u["Service"]["AmbientCapabilities"], " ")); strings.Join(got, " ") != strings.Join(bounding, " ") {
		t.Fatalf("AmbientCapabilities %v differ from CapabilityBoundingSet %v", got, bounding)
	}
	var capList string
	var mask uint64
	for _, c := range bounding {
		bit, ok := capBits[c]
		if !ok {
			t.Fatalf("capability %s in the unit: add it to capBits", c)
		}
		mask |= 1 << bit
		capList += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
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
	script := fmt.Sprintf(wrapperScript, setpriv, capList, filepath.Join(bin, "weftd"))
	if err := os.WriteFile(filepath.Join(wrap, "weftd"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}

	for _, backend := range []string{"vxlan", "wireguard"} {
		t.Run(backend, func(t *testing.T) { runUnprivilegedCluster(t, wrap, backend, mask) })
	}
}

func runUnprivilegedCluster(t *testing.T, wrap, backend string, mask uint64) {
	// The cluster's files live under a directory the non-root weftd can
	// traverse (as /var/lib is under systemd); temporary directories are
	// 0700.
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	c := e2e.NewForTest(t, e2e.Options{Nodes: 2, PodsPerNode: 1, BinDir: wrap, Dir: dir, Backend: backend})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nodes := c.Nodes()
	for _, n := range nodes {
		if err := n.WaitReady(ctx, time.Minute); err != nil {
			t.Fatal(err)
		}
		st, err := procStatus(n.Proc().PID)
		if err != nil {
			t.Fatal(err)
		}
		if uid := strings.Fields(st["Uid"]); len(uid) == 0 || uid[0] != "65534" || uid[1] != "65534" {
			t.Errorf("%s: weftd runs as uid %q, want 65534", n.Name, st["Uid"])
		}
		for _, f := range []string{"CapEff", "CapBnd", "CapAmb"} {
			v, err := strconv.ParseUint(st[f], 16, 64)
			if err != nil || v != mask {
				t.Errorf("%s: weftd %s %s, want %016x", n.Name, f, st[f], mask)
			}
		}
		s, err := n.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s.Node.BackendType != backend {
			t.Errorf("%s: backend %q, want %q", n.Name, s.Node.BackendType, backend)
		}
		for k, v := range map[string]string{
			"forwardingProblem": s.Node.ForwardingProblem,
			"masqueradeProblem": s.Node.MasqueradeProblem,
			"reconcileError":    s.Node.ReconcileError,
		} {
			if v != "" {
				t.Errorf("%s: /status %s: %s", n.Name, k, v)
			}
		}
	}
	if len(nodes) != 2 || len(nodes[0].Pods()) == 0 || len(nodes[1].Pods()) == 0 {
		t.Fatalf("want 2 nodes with a pod each")
	}
	a, b := nodes[0].Pods()[0], nodes[1].Pods()[0]
	for _, p := range []struct {
		from *e2e.Pod
		to   *e2e.Pod
	}{{a, b}, {b, a}} {
		err := e2e.Eventually(10*time.Second, 100*time.Millisecond, func() error {
			_, err := e2e.Ping(p.from.NS, p.to.IP, time.Second)
			return err
		})
		if err != nil {
			t.Errorf("ping %s (%s) -> %s (%s): %v", p.from.Name, p.from.IP, p.to.Name, p.to.IP, err)
		}
	}
}
