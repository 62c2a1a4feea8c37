// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package namespace_test

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/weftnet/weft/e2e/namespace"
	"github.com/weftnet/weft/e2e/netnstest"
)

func TestLifecycle(t *testing.T) {
	netnstest.SkipUnlessRoot(t)
	before, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()

	name := "wnst-" + netnstest.Suffix(6)
	h, err := namespace.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { namespace.Delete(name) })
	defer h.Close()
	if _, err := os.Stat(namespace.Path(name)); err != nil {
		t.Fatalf("bind mount missing: %v", err)
	}
	if !sharedMount(t, namespace.RunDir) {
		t.Errorf("%s is not a shared mount point (ip netns add makes it one)", namespace.RunDir)
	}

	// A second namespace of the same name is refused, and the first one
	// stays.
	if _, err := namespace.Create(name); !errors.Is(err, os.ErrExist) {
		t.Errorf("create %s twice: err %v, want one wrapping os.ErrExist", name, err)
	}
	if _, err := os.Stat(namespace.Path(name)); err != nil {
		t.Fatalf("the refused second create removed the first: %v", err)
	}

	// Loopback is up, and a link made through a handle lives only there.
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	lo, err := nl.LinkByName("lo")
	if err != nil || lo.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("lo not up in the new namespace (%v)", err)
	}
	if err := nl.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "wnst0"}, PeerName: "wnst1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName("wnst0"); err == nil {
		t.Fatal("link wnst0 visible outside the namespace")
	}
	for _, do := range []func(func() error) error{
		func(fn func() error) error { return namespace.Do(h, fn) },
		func(fn func() error) error { return namespace.DoNamed(name, fn) },
	} {
		err := do(func() error {
			_, err := netlink.LinkByName("wnst0")
			return err
		})
		if err != nil {
			t.Errorf("link not visible inside Do: %v", err)
		}
	}
	// fn's error comes back as it is.
	errFn := errors.New("from fn")
	if err := namespace.DoNamed(name, func() error { return errFn }); err != errFn {
		t.Errorf("Do returned %v, want fn's error", err)
	}
	now, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer now.Close()
	if !now.Equal(before) {
		t.Fatal("calling thread's namespace changed")
	}

	if err := namespace.Delete(name); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(namespace.Path(name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("bind mount left after Delete: %v", err)
	}
	if err := namespace.Delete(name); err != nil {
		t.Errorf("deleting a missing namespace: %v, want nil", err)
	}
	if err := namespace.DoNamed(name, func() error { return nil }); err == nil {
		t.Error("Do in a deleted namespace succeeded")
	}
}

// sharedMount reports whether dir is a mount point with shared
// propagation in this process's mount namespace.
func sharedMount(t *testing.T, dir string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) > 6 && f[4] == dir {
			for _, opt := range f[6:] {
				if opt == "-" {
					break
				}
				if strings.HasPrefix(opt, "shared:") {
					return true
				}
			}
		}
	}
	return false
}
