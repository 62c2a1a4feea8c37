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

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/cni/antispoof"
	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/e2etest"
	"github.com/weftnet/weft/e2e/netnstest"
)

// capBits maps the capability names the unit may hold to their numbers.
var capBits = map[string]uint{"CAP_NET_BIND_SERVICE": 10, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13}

// wrapperScript runs the real weftd as the unit would: a non-root user
// (65534 stands in for weft), no new privileges, and only the unit's
// capabilities in its bounding, inheritable and ambient sets. Before it
// drops root it hands the node's state dir and subnet file directory to
// that user, as systemd does with StateDirectory= and RuntimeDirectory=
// (the latter not recursively: the test's node directory also holds the
// CNI plugin's data directory, which stays root's as on a real node).
// In a mount namespace of its own it puts a directory of that user's over
// /var/run/wireguard (RuntimeDirectory=wireguard), so the shared directory
// of the machine is left alone, and a tmpfs over /dev/net holding a TUN
// node of its own with the mode under test (%[4]s): 0666 is what udev
// gives the device on most distributions, 0600 what a host without udev
// has. The host's /dev/net/tun is never changed.
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
chown -R 65534:65534 "$state" "$state.wireguard"
chown 65534:65534 "$(dirname "$subnet")"
export WEFT_WG_DIR="$state.wireguard"
exec unshare --mount --propagation private /bin/sh -c '
	mount --bind "$WEFT_WG_DIR" /var/run/wireguard
	mount -t tmpfs -o mode=0755,size=64k weft-test-dev-net /dev/net
	mknod -m %[4]s /dev/net/tun c 10 200
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
//
// The unit needs one thing from the host that it cannot grant itself: a
// /dev/net/tun its user may open (mode 0666, as udev makes it). Each weftd
// sees a TUN node of its own (see wrapperScript): 0666 in the cases that
// must work, whatever the host has; and 0600 root in the last case, which
// checks what weftd does on a host without udev: it exits, and its error
// names the device, its mode and owner, and the fix.
func TestUnitPrivileges(t *testing.T) {
	netnstest.SkipUnlessRoot(t)
	setpriv := netnstest.RequireTool(t, "setpriv", "util-linux")
	netnstest.RequireTool(t, "unshare", "util-linux")
	netnstest.RequireTool(t, "mount", "mount")
	netnstest.RequireTool(t, "mknod", "coreutils")
	if _, err := os.Stat("/dev/net"); err != nil {
		t.Fatalf("no /dev/net (%v): the kernel has no TUN driver (modprobe tun)", err)
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

	bin, err := e2etest.BinDir()
	if err != nil {
		t.Fatalf("binaries: %v", err)
	}
	hostTUN := tunMode(t, "/dev/net/tun")
	t.Cleanup(func() {
		if m := tunMode(t, "/dev/net/tun"); m != hostTUN {
			t.Errorf("the host's /dev/net/tun changed from %s to %s", hostTUN, m)
		}
	})
	t.Logf("the host's /dev/net/tun: %s", hostTUN)

	for _, backend := range []string{"vxlan", "wireguard"} {
		t.Run(backend, func(t *testing.T) {
			wrap := wrapperDir(t, bin, fmt.Sprintf(wrapperScript, setpriv, capList, filepath.Join(bin, "weftd"), "0666"))
			c := runUnprivilegedCluster(t, wrap, backend, mask)
			if backend == "vxlan" {
				checkPodRecords(t, c, setpriv)
			}
		})
	}
	t.Run("wireguard-tun-0600", func(t *testing.T) {
		wrap := wrapperDir(t, bin, fmt.Sprintf(wrapperScript, setpriv, capList, filepath.Join(bin, "weftd"), "0600"))
		checkTUNDenied(t, wrap)
	})
}

// wrapperDir returns a directory with weftd (the script) and symbolic
// links to the other binaries of bin.
func wrapperDir(t *testing.T, bin, script string) string {
	t.Helper()
	wrap := t.TempDir()
	for _, name := range []string{"weftctl", "weft", "weft-etcd"} {
		if err := os.Symlink(filepath.Join(bin, name), filepath.Join(wrap, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(wrap, "weftd"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return wrap
}

// tunMode describes a TUN node: "crw-rw-rw- 0:0 10:200".
func tunMode(t *testing.T, path string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	kind := "?"
	if st.Mode&unix.S_IFMT == unix.S_IFCHR {
		kind = "c"
	}
	return fmt.Sprintf("%s%s %d:%d %d:%d", kind, os.FileMode(st.Mode & 0o777).String()[1:],
		st.Uid, st.Gid, unix.Major(st.Rdev), unix.Minor(st.Rdev))
}

// checkTUNDenied starts a one-node userspace WireGuard cluster whose weftd
// finds /dev/net/tun 0600 root, as on a host without udev, and checks that
// weftd exits before it is ready with an error that names the device, its
// mode and owner, the user weftd runs as, and the fix.
func checkTUNDenied(t *testing.T, wrap string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := e2e.New(ctx, e2e.Options{Nodes: 1, BinDir: wrap, Dir: clusterDir(t), Backend: "wireguard", Logf: t.Logf})
	if err == nil {
		c.Close()
		t.Fatal("weftd got ready as uid 65534 with a /dev/net/tun of mode 0600 root, which it must not be able to open: does it see another node, or hold CAP_DAC_OVERRIDE?")
	}
	msg := err.Error()
	if !strings.Contains(msg, "exited before ready") {
		t.Fatalf("weftd did not exit before ready: %v", err)
	}
	for _, l := range strings.Split(msg, "\n") {
		if strings.Contains(l, "create tun") {
			t.Logf("weftd on a host whose /dev/net/tun is 0600 root: %s", l)
			break
		}
	}
	for _, want := range []string{
		"create tun", "permission denied",
		"/dev/net/tun (mode 0600, owner root:root (0:0))", "weftd runs as uid 65534",
		"50-udev-default.rules", "MODE=", "0666", "/etc/tmpfiles.d/", "docs/install.md",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("weftd's error lacks %q:\n%s", want, msg)
		}
	}
}

// clusterDir returns a directory for a cluster's files that the non-root
// weftd can traverse (as /var/lib is under systemd); temporary directories
// are 0700.
func clusterDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func runUnprivilegedCluster(t *testing.T, wrap, backend string, mask uint64) *e2e.Cluster {
	c := e2etest.NewCluster(t, e2e.Options{Nodes: 2, PodsPerNode: 1, BinDir: wrap, Dir: clusterDir(t), Backend: backend})
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
		// weftd's mount namespace holds the TUN node a udev host has.
		if m := tunMode(t, fmt.Sprintf("/proc/%d/root/dev/net/tun", n.Proc().PID)); m != "crw-rw-rw- 0:0 10:200" {
			t.Errorf("%s: weftd sees /dev/net/tun as %s, want crw-rw-rw- 0:0 10:200", n.Name, m)
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
	return c
}

// checkPodRecords checks that weftd, as the unit runs it, can read the
// CNI plugin's pod records and cannot change them, and that it repairs
// the anti-spoofing entries from them: an entry deleted by hand is back
// within a resync.
func checkPodRecords(t *testing.T, c *e2e.Cluster, setpriv string) {
	nft := netnstest.RequireTool(t, "nft", "nftables")
	n := c.Nodes()[0]
	pod := n.Pods()[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n.ExtraArgs = append(n.ExtraArgs, "--cni-data-dir", n.CNIDataDir, "--resync-interval", "500ms")
	if err := n.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	dir := antispoof.RecordDir(n.CNIDataDir)
	recs, err := antispoof.ReadRecords(dir)
	if err != nil || len(recs.Good) != 1 || recs.Good[0].IPv4 != pod.IP {
		t.Fatalf("pod records in %s: %+v %v; want the one of %s", dir, recs, err, pod.IP)
	}
	rec := recs.Good[0]
	file := filepath.Join(dir, rec.Port+".json")
	for path, want := range map[string]string{n.CNIDataDir: "-rwx--x--x 0:0", dir: "-rwxr-xr-x 0:0", file: "-rw-r--r-- 0:0"} {
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%s %d:%d", os.FileMode(st.Mode&0o777), st.Uid, st.Gid); got != want {
			t.Errorf("%s: %s, want %s", path, got, want)
		}
	}
	// As weftd's user: reading works; writing, replacing and removing do
	// not.
	asWeftd := func(script string) ([]byte, error) {
		return exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "/bin/sh", "-c", script, "sh", dir, file).CombinedOutput()
	}
	if out, err := asWeftd(`cat "$2"`); err != nil || !strings.Contains(string(out), rec.Port) {
		t.Errorf("uid 65534 cannot read %s: %v %s", file, err, out)
	}
	for _, script := range []string{`echo x > "$1/weft00000000.json"`, `echo x > "$2"`, `rm -f "$2"`, `mv "$2" "$2.x"`} {
		if out, err := asWeftd(script); err == nil {
			t.Errorf("uid 65534 could run %q in the pod record directory: %s", script, out)
		}
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("the record is gone: %v", err)
	}

	// Delete the pod's IPv4 entry by hand: weftd puts it back.
	elem := fmt.Sprintf(`{ "%s" . %s . %s }`, rec.Port, rec.MAC, rec.IPv4)
	if out, err := exec.Command("ip", "netns", "exec", n.NS.Name, nft, "delete", "element", "bridge", antispoof.TableName, antispoof.SetIPv4, elem).CombinedOutput(); err != nil {
		t.Fatalf("nft delete element: %v %s", err, out)
	}
	err = e2e.Eventually(10*time.Second, 100*time.Millisecond, func() error {
		out, err := exec.Command("ip", "netns", "exec", n.NS.Name, nft, "list", "set", "bridge", antispoof.TableName, antispoof.SetIPv4).CombinedOutput()
		if err != nil {
			return fmt.Errorf("nft list set: %v %s", err, out)
		}
		if !strings.Contains(string(out), rec.IPv4.String()) {
			return fmt.Errorf("the entry of %s is still missing:\n%s", rec.IPv4, out)
		}
		return nil
	})
	if err != nil {
		t.Errorf("weftd (uid 65534) did not repair the anti-spoofing entry: %v\n%s", err, n.LogTail(20))
	}
	if _, err := e2e.Ping(pod.NS, c.Nodes()[1].Pods()[0].IP, 5*time.Second); err != nil {
		t.Errorf("pod traffic after the repair: %v", err)
	}
}
