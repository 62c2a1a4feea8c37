// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/e2e/netnstest"
)

func TestResolveUnderlay(t *testing.T) {
	netnstest.SkipUnlessRoot(t)
	sfx := netnstest.Suffix(6)
	gwns := netnstest.NewNS(t, "weftul-gw")
	node := netnstest.NewNS(t, "weftul-node")
	// eth0: 198.18.0.1/24 (no default route yet); a second link a-xxxx
	// with 198.18.1.1/24 and 2001:2::1/64.
	vethInto(t, gwns, "g-"+sfx, pfx("198.18.0.254/24"), node, pfx("198.18.0.1/24"), netip.Addr{})
	other := netnstest.NewNS(t, "weftul-other")
	vethNamed(t, other, "x-"+sfx, pfx("198.18.1.254/24"), node, "a-"+sfx, pfx("198.18.1.1/24"), netip.Addr{})
	nh := node.Netlink(t)
	second, err := nh.LinkByName("a-" + sfx)
	if err != nil {
		t.Fatal(err)
	}
	v6 := &netlink.Addr{IPNet: netnstest.IPNet(pfx("2001:2::1/64")), Flags: unix.IFA_F_NODAD}
	if err := nh.AddrAdd(second, v6); err != nil {
		t.Fatal(err)
	}

	resolve := func(iface string, pub, pub6 netip.Addr) (underlay, error) {
		var u underlay
		var rerr error
		if err := node.Do(func() error {
			u, rerr = resolveUnderlay(iface, pub, pub6)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return u, rerr
	}

	t.Run("no default route and no flags", func(t *testing.T) {
		_, err := resolve("", netip.Addr{}, netip.Addr{})
		if !errors.Is(err, errNoDefaultRoute) || err.Error() != "no default route: set --iface or --public-ip" {
			t.Fatalf("err = %v, want %q", err, errNoDefaultRoute)
		}
	})
	t.Run("iface given: its first address, and its IPv6 address", func(t *testing.T) {
		u, err := resolve("a-"+sfx, netip.Addr{}, netip.Addr{})
		if err != nil || u.PublicIP != addr("198.18.1.1") || u.PublicIPv6 != addr("2001:2::1") || u.MTU != 1500 {
			t.Fatalf("resolve = %+v, %v", u, err)
		}
	})
	t.Run("public ip given: the interface holding it", func(t *testing.T) {
		u, err := resolve("", addr("198.18.1.1"), netip.Addr{})
		if err != nil || u.Iface != "a-"+sfx {
			t.Fatalf("resolve = %+v, %v", u, err)
		}
	})
	t.Run("missing iface", func(t *testing.T) {
		if _, err := resolve("nope0", netip.Addr{}, netip.Addr{}); err == nil {
			t.Fatal("no error for a missing interface")
		}
	})
	if err := nh.RouteAdd(&netlink.Route{Gw: addr("198.18.0.254").AsSlice()}); err != nil {
		t.Fatal(err)
	}
	t.Run("default route", func(t *testing.T) {
		u, err := resolve("", netip.Addr{}, netip.Addr{})
		if err != nil || u.Iface != "eth0" || u.PublicIP != addr("198.18.0.1") || u.PublicIPv6.IsValid() {
			t.Fatalf("resolve = %+v, %v", u, err)
		}
	})
	t.Run("public ip on no interface (1:1 NAT): the default route's interface", func(t *testing.T) {
		u, err := resolve("", addr("198.19.5.5"), netip.Addr{})
		if err != nil || u.Iface != "eth0" || u.PublicIP != addr("198.19.5.5") {
			t.Fatalf("resolve = %+v, %v", u, err)
		}
	})
}
