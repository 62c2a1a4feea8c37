// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/weftnet/weft/e2e/namespace"
)

// SkipUnlessRoot skips t with a clear message unless the test runs as root
// (privileged tests create network namespaces and links).
func SkipUnlessRoot(t testing.TB) {
	t.Helper()
	if !Privileged() {
		t.Skip("skipping privileged test: " + unprivilegedReason())
	}
}

// UnprivilegedEnv, when set to 1, makes every privileged test skip even as
// root: `make test-unit` sets it so that the unit tier runs exactly what a
// non-root `go test ./...` runs.
const UnprivilegedEnv = "WEFT_TEST_UNPRIVILEGED"

// Privileged reports whether privileged tests may run: as root, and not in
// the unit tier (see [UnprivilegedEnv]).
func Privileged() bool {
	return os.Geteuid() == 0 && os.Getenv(UnprivilegedEnv) != "1"
}

func unprivilegedReason() string {
	if os.Geteuid() != 0 {
		return "needs root (it builds network namespaces); run go test as root"
	}
	return UnprivilegedEnv + "=1 (the unit tier); make test-priv runs it"
}

// Suffix returns n random hex characters, for names unique per run.
func Suffix(n int) string {
	b := make([]byte, (n+1)/2)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)[:n]
}

// NS is a named network namespace (visible to `ip netns`) created for one
// test. Everything inside it, links included, disappears when it is removed
// at the end of the test, provided the test closed its sockets and handles
// into it.
type NS struct {
	// Name is the namespace's name under /run/netns.
	Name string
	// Handle is an open handle to the namespace (closed at cleanup).
	Handle netns.NsHandle
}

// NewNS creates a network namespace named prefix-<random> and registers
// its removal with t.Cleanup (it runs on success and on failure). The
// calling thread's namespace is not changed. Loopback is up, and IPv6
// duplicate address detection is off for links made in it later.
func NewNS(t testing.TB, prefix string) *NS {
	t.Helper()
	name := prefix + "-" + Suffix(6)
	h, err := namespace.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	n := &NS{Name: name, Handle: h}
	t.Cleanup(func() {
		n.Handle.Close()
		if err := namespace.Delete(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	// No duplicate address detection in test namespaces: every link made
	// later gets usable IPv6 link-local addresses at once instead of after
	// a second or two.
	err = n.Do(func() error {
		for _, p := range []string{"all", "default"} {
			f := filepath.Join("/proc/sys/net/ipv6/conf", p, "accept_dad")
			if err := os.WriteFile(f, []byte("0\n"), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("disable DAD in %s: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Netlink returns a netlink handle that works inside the namespace from any
// thread; it is closed at cleanup.
func (n *NS) Netlink(t testing.TB) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(n.Handle)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", n.Name, err)
	}
	t.Cleanup(h.Close)
	return h
}

// Do runs fn on a thread switched into the namespace and waits for it
// (see [namespace.Do]).
func (n *NS) Do(fn func() error) error { return namespace.Do(n.Handle, fn) }
