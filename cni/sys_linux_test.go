// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package cni_test

import (
	"errors"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/e2e/netnstest"
)

// removablePodNS creates a named network namespace that the test may remove
// itself with removeNS; it is removed at cleanup if still there. It returns
// the namespace's path.
func removablePodNS(t *testing.T) string {
	t.Helper()
	name := "weftcni-gone-" + netnstest.Suffix(6)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		h, err := netns.NewNamed(name)
		if err == nil {
			h.Close()
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	path := "/run/netns/" + name
	t.Cleanup(func() {
		if err := removeNS(path); err != nil {
			t.Errorf("remove netns %s: %v", name, err)
		}
	})
	return path
}

// removeNS unmounts and removes a named namespace; a missing one is fine.
func removeNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// vethPair returns a veth pair name/name-peer (the kernel here has no dummy).
func vethPair(name string) netlink.Link {
	return &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, TxQLen: -1}, PeerName: name + "-peer", PeerTxQLen: -1}
}
