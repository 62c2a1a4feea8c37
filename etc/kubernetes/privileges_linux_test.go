// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kubernetes

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/e2etest"
	"github.com/weftnet/weft/e2e/netnstest"
)

// capBits maps the capabilities the manifest may add to their numbers.
var capBits = map[string]uint{"NET_BIND_SERVICE": 10, "NET_ADMIN": 12, "NET_RAW": 13}

// containerScript runs the real weftd as the DaemonSet's container does:
// uid 0, no new privileges, only the added capabilities, and /proc/sys
// read-only (as a container runtime mounts it for an unprivileged
// container), in a mount namespace of its own. There, a tmpfs over
// /dev/net holds a TUN node of mode 0600 root, as on a host without udev
// (the DaemonSet mounts the host's node), so the test does not depend on
// the host's mode and never changes it.
const containerScript = `#!/bin/sh
set -eu
exec unshare --mount --propagation private /bin/sh -c '
	mount --bind /proc/sys /proc/sys
	mount -o remount,bind,ro /proc/sys
	mount -t tmpfs -o mode=0755,size=64k weft-test-dev-net /dev/net
	mknod -m 0600 /dev/net/tun c 10 200
	exec "$0" "$@"' \
	%[1]s --no-new-privs --inh-caps=-all%[2]s --ambient-caps=-all%[2]s --bounding-set=-all%[2]s %[3]s "$@"
`

// TestContainerPrivileges runs a two-node cluster whose weftd processes have
// only what the manifest gives the weftd container (NET_ADMIN, NET_RAW,
// read-only /proc/sys), and checks the decision the manifest documents:
// weftd cannot turn IP forwarding on and says so in /status, the weft CNI
// plugin (run as root on the node, as the container runtime runs it) turns
// it on when it sets up the first pod, and pod traffic between the nodes
// flows. It does so once per backend that needs different privileges:
// VXLAN, and userspace WireGuard with a /dev/net/tun of mode 0600 root (a
// host without udev), which the container, unlike the systemd unit, can
// open because it runs as uid 0, the node's owner.
func TestContainerPrivileges(t *testing.T) {
	netnstest.SkipUnlessRoot(t)
	setpriv := netnstest.RequireTool(t, "setpriv", "util-linux")
	netnstest.RequireTool(t, "unshare", "util-linux")
	netnstest.RequireTool(t, "mount", "mount")
	netnstest.RequireTool(t, "mknod", "coreutils")
	if _, err := os.Stat("/dev/net"); err != nil {
		t.Fatalf("no /dev/net (%v): the kernel has no TUN driver (modprobe tun)", err)
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

	bin, err := e2etest.BinDir()
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

	for _, backend := range []string{"vxlan", "wireguard"} {
		t.Run(backend, func(t *testing.T) { runContainerCluster(t, wrap, backend, mask) })
	}
}

func runContainerCluster(t *testing.T, wrap, backend string, mask uint64) {
	cl := e2etest.NewCluster(t, e2e.Options{Nodes: 2, PodsPerNode: 1, BinDir: wrap, Backend: backend})
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
		// weftd's mount namespace holds the TUN node of a host without udev.
		fi, err := os.Stat(fmt.Sprintf("/proc/%d/root/dev/net/tun", n.Proc().PID))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&fs.ModeCharDevice == 0 || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: weftd's /dev/net/tun is %v, want a character device of mode 0600", n.Name, fi.Mode())
		}
		s, err := n.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s.Node.BackendType != backend {
			t.Errorf("%s: backend %q, want %q", n.Name, s.Node.BackendType, backend)
		}
		if p := s.Node.ForwardingProblem; !strings.Contains(p, "ip_forward") {
			t.Errorf("%s: weftd with a read-only /proc/sys should report a forwarding problem, /status has %q", n.Name, p)
		}
		// weftd reads br_netfilter's state through the read-only
		// /proc/sys (the CNI plugin sets the sysctls).
		if bn := s.Node.BridgeNetfilter; bn == nil || !bn.Loaded || !bn.CallIPTables || bn.Problem != "" {
			t.Errorf("%s: /status bridgeNetfilter %+v, want loaded, call-iptables on, no problem", n.Name, bn)
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
