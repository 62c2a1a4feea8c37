// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package netnstest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func TestNSLifecycle(t *testing.T) {
	SkipUnlessRoot(t)
	before, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()

	var name string
	t.Run("create", func(t *testing.T) {
		n := NewNS(t, "wbt")
		name = n.Name
		if _, err := os.Stat(filepath.Join("/run/netns", n.Name)); err != nil {
			t.Fatalf("named netns missing: %v", err)
		}
		// A link made through the handle lives in the namespace only.
		h := n.Netlink(t)
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "wbt0"}, PeerName: "wbt1"}); err != nil {
			t.Fatal(err)
		}
		if _, err := netlink.LinkByName("wbt0"); err == nil {
			t.Fatal("link wbt0 visible outside the test namespace")
		}
		// Do runs inside the namespace.
		err := n.Do(func() error {
			_, err := netlink.LinkByName("wbt0")
			return err
		})
		if err != nil {
			t.Fatalf("link not visible inside Do: %v", err)
		}
		now, err := netns.Get()
		if err != nil {
			t.Fatal(err)
		}
		defer now.Close()
		if !now.Equal(before) {
			t.Fatal("calling thread's namespace changed")
		}
	})
	if _, err := os.Stat(filepath.Join("/run/netns", name)); !os.IsNotExist(err) {
		t.Fatalf("netns %s not removed at cleanup: %v", name, err)
	}
}
