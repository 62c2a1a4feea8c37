// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package backendtest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
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
// calling thread's namespace is not changed. Loopback is brought up, and
// IPv6 duplicate address detection is off for links made in it later.
func NewNS(t testing.TB, prefix string) *NS {
	t.Helper()
	name := prefix + "-" + Suffix(6)
	var h netns.NsHandle
	err := onLockedThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return fmt.Errorf("get current netns: %w", err)
		}
		defer orig.Close()
		// NewNamed moves this thread into the new namespace.
		h, err = netns.NewNamed(name)
		if rerr := netns.Set(orig); rerr != nil {
			return errThreadTainted{fmt.Errorf("restore netns: %w", rerr)}
		}
		if err != nil {
			return fmt.Errorf("create netns %s: %w", name, err)
		}
		return nil
	})
	if err == nil {
		// No duplicate address detection in test namespaces: every link
		// made later gets usable IPv6 link-local addresses at once
		// instead of after a second or two.
		err = Do(h, func() error {
			for _, p := range []string{"all", "default"} {
				f := filepath.Join("/proc/sys/net/ipv6/conf", p, "accept_dad")
				if err := os.WriteFile(f, []byte("0\n"), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("disable DAD in %s: %w", name, err)
				}
			}
			return nil
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	n := &NS{Name: name, Handle: h}
	t.Cleanup(func() {
		n.Handle.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	nl := n.Netlink(t)
	lo, err := nl.LinkByName("lo")
	if err == nil {
		err = nl.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("netns %s: bring up lo: %v", name, err)
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

// Do runs fn on a thread switched into the namespace and waits for it.
// See [Do].
func (n *NS) Do(fn func() error) error { return Do(n.Handle, fn) }

// Do runs fn in network namespace ns and returns its error. fn runs on a
// new goroutine locked to its OS thread; the thread's original namespace is
// restored afterwards, and if that fails the thread is left locked so that
// Go discards it when the goroutine ends (never reused in the wrong
// namespace).
//
// Only fn's own goroutine is in ns: goroutines it starts may run on other
// threads, in other namespaces. Sockets opened by fn stay in ns after it
// returns.
func Do(ns netns.NsHandle, fn func() error) error {
	return onLockedThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return fmt.Errorf("get current netns: %w", err)
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("enter netns: %w", err)
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			return errThreadTainted{errors.Join(ferr, fmt.Errorf("restore netns: %w", err))}
		}
		return ferr
	})
}

// errThreadTainted marks an error after which the thread is in an unknown
// namespace and must not be unlocked.
type errThreadTainted struct{ error }

func (e errThreadTainted) Unwrap() error { return e.error }

func onLockedThread(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := fn()
		var tainted errThreadTainted
		if !errors.As(err, &tainted) {
			runtime.UnlockOSThread()
		}
		done <- err
	}()
	return <-done
}
