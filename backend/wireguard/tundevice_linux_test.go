// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package wireguard

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/e2e/netnstest"
)

func TestTUNAdvice(t *testing.T) {
	const path = "/dev/net/tun"
	rootOnly := &tunNode{mode: 0o600, char: true, major: 10, minor: 200, owner: "root:root (0:0)"}
	open := &tunNode{mode: 0o666, char: true, major: 10, minor: 200, owner: "root:root (0:0)"}
	cgroupDenied := *open
	cgroupDenied.openErr = unix.EPERM
	for _, c := range []struct {
		name string
		node *tunNode
		err  error
		euid int
		want []string // substrings, all required; none: no advice
	}{
		{"0600 as the weft user", rootOnly, unix.EACCES, 65534, []string{
			"uid 65534", "/dev/net/tun (mode 0600, owner root:root (0:0))",
			`KERNEL=="tun", MODE="0666"`, `"z /dev/net/tun 0666 root root -"`, "docs/install.md",
		}},
		{"0666 and still denied", open, unix.EACCES, 65534, []string{"mode 0666", "although its mode allows it", "nodev"}},
		{"device cgroup", &cgroupDenied, unix.EPERM, 65534, []string{"device cgroup", "DeviceAllow=/dev/net/tun rw", "10:200"}},
		{"no CAP_NET_ADMIN", open, unix.EPERM, 65534, []string{"CAP_NET_ADMIN", "AmbientCapabilities=", "NET_ADMIN capability"}},
		{"missing", nil, errors.New(`CreateTUN("wg0") failed; /dev/net/tun does not exist`), 0, []string{
			"/dev/net/tun does not exist", "modprobe tun", "mknod -m 0666 /dev/net/tun c 10 200",
		}},
		{"not a char device", &tunNode{mode: 0o644, owner: "root:root (0:0)"}, unix.EINVAL, 0, []string{"is not the TUN character device 10:200"}},
		{"wrong device numbers", &tunNode{mode: 0o666, char: true, major: 1, minor: 3, owner: "root:root (0:0)"}, unix.EBADFD, 0, []string{"not the TUN character device"}},
		{"busy: nothing to add", open, unix.EBUSY, 0, nil},
		{"root with 0600: nothing to add", rootOnly, unix.EINVAL, 0, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := tunAdvice(path, c.node, c.err, c.euid)
			if len(c.want) == 0 {
				if got != "" {
					t.Fatalf("advice %q, want none", got)
				}
				return
			}
			for _, w := range c.want {
				if !strings.Contains(got, w) {
					t.Errorf("advice lacks %q:\n%s", w, got)
				}
			}
		})
	}
}

// TestExplainTUN checks that explainTUN reads the real node: its mode,
// its owner by name and number, and the device numbers, and that the
// error it returns still wraps the original one.
func TestExplainTUN(t *testing.T) {
	dir := t.TempDir()
	t.Run("missing", func(t *testing.T) {
		err := explainTUN(filepath.Join(dir, "none"), unix.ENOENT)
		if !errors.Is(err, unix.ENOENT) || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("regular file", func(t *testing.T) {
		f := filepath.Join(dir, "file")
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		err := explainTUN(f, unix.EACCES)
		if !errors.Is(err, unix.EACCES) || !strings.Contains(err.Error(), "(mode 0600, owner ") ||
			!strings.Contains(err.Error(), "is not the TUN character device") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("char device 0600", func(t *testing.T) {
		netnstest.SkipUnlessRoot(t)
		node := filepath.Join(dir, "tun")
		if err := unix.Mknod(node, unix.S_IFCHR|0o600, int(unix.Mkdev(10, 200))); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(node, 0o600); err != nil { // the umask may have taken bits
			t.Fatal(err)
		}
		if err := os.Chown(node, 0, 0); err != nil {
			t.Fatal(err)
		}
		// As the owner, EACCES cannot come from the mode.
		if err := explainTUN(node, unix.EACCES); !strings.Contains(err.Error(), "although its mode allows it") {
			t.Errorf("as root: got %v", err)
		}
		// EPERM: root opens the node (the device cgroup allows it), so
		// the advice is about the capability.
		err := explainTUN(node, unix.EPERM)
		if !errors.Is(err, unix.EPERM) || !strings.Contains(err.Error(), "(mode 0600, owner root:root (0:0))") ||
			!strings.Contains(err.Error(), "CAP_NET_ADMIN") {
			t.Errorf("got %v", err)
		}
	})
}
