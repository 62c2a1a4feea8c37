// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
)

// errNoDefaultRoute is returned when neither --iface nor --public-ip is
// set and the namespace has no default route to take them from.
var errNoDefaultRoute = errors.New("no default route: set --iface or --public-ip")

// resolveUnderlay fills in what the flags leave open, looking at the
// kernel of the current network namespace:
//
//   - --iface unset, --public-ip set: the interface holding that address
//     (or the default route's interface when no interface holds it, as
//     behind 1:1 NAT);
//   - both unset: the interface of the default route (IPv4 first);
//   - --public-ip unset: the first global address of the interface
//     (IPv4 first);
//   - --public-ipv6 unset: the interface's first global IPv6 address, if
//     the public IP is IPv4 (used for direct IPv6 routes).
func resolveUnderlay(iface string, pub, pub6 netip.Addr) (underlay, error) {
	u := underlay{Iface: iface, PublicIP: pub, PublicIPv6: pub6}
	if u.Iface == "" && pub.IsValid() {
		name, err := linkHolding(pub)
		if err != nil {
			return u, err
		}
		u.Iface = name
	}
	if u.Iface == "" {
		name, err := defaultRouteLink()
		if err != nil {
			return u, err
		}
		u.Iface = name
	}
	link, err := backend.LinkByName(nil, u.Iface)
	if err != nil {
		return u, fmt.Errorf("--iface %s: %w", u.Iface, err)
	}
	u.MTU = link.Attrs().MTU
	if !u.PublicIP.IsValid() {
		for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
			a, err := firstGlobalAddr(link, fam)
			if err != nil {
				return u, err
			}
			if a.IsValid() {
				u.PublicIP = a
				break
			}
		}
		if !u.PublicIP.IsValid() {
			return u, fmt.Errorf("interface %s has no global address: set --public-ip", u.Iface)
		}
	}
	if !u.PublicIPv6.IsValid() && u.PublicIP.Is4() {
		a, err := firstGlobalAddr(link, netlink.FAMILY_V6)
		if err != nil {
			return u, err
		}
		u.PublicIPv6 = a
	}
	if u.PublicIP.Is6() {
		u.PublicIPv6 = netip.Addr{}
	}
	return u, nil
}

// linkHolding returns the name of the interface that has ip, or the
// default route's interface when none has it.
func linkHolding(ip netip.Addr) (string, error) {
	fam := netlink.FAMILY_V4
	if ip.Is6() {
		fam = netlink.FAMILY_V6
	}
	addrs, err := backend.AddrList(nil, nil, fam)
	if err != nil {
		return "", fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == ip {
			l, err := netlink.LinkByIndex(a.LinkIndex)
			if err != nil {
				return "", fmt.Errorf("link of %s: %w", ip, err)
			}
			return l.Attrs().Name, nil
		}
	}
	name, err := defaultRouteLink()
	if err != nil {
		return "", fmt.Errorf("--public-ip %s is on no interface and there is no default route: set --iface", ip)
	}
	return name, nil
}

// defaultRouteLink returns the interface of the main table's default route
// with the lowest metric, IPv4 first.
func defaultRouteLink() (string, error) {
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := backend.RouteListFiltered(nil, fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return "", fmt.Errorf("list routes: %w", err)
		}
		var defaults []netlink.Route
		for _, r := range routes {
			if isDefault(r) {
				defaults = append(defaults, r)
			}
		}
		sort.SliceStable(defaults, func(i, j int) bool { return defaults[i].Priority < defaults[j].Priority })
		for _, r := range defaults {
			idx := r.LinkIndex
			if idx == 0 && len(r.MultiPath) > 0 {
				idx = r.MultiPath[0].LinkIndex
			}
			if idx == 0 {
				continue
			}
			l, err := netlink.LinkByIndex(idx)
			if err != nil {
				return "", fmt.Errorf("link of the default route: %w", err)
			}
			return l.Attrs().Name, nil
		}
	}
	return "", errNoDefaultRoute
}

func isDefault(r netlink.Route) bool {
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0
}

// firstGlobalAddr returns link's first global unicast address of the
// family, skipping tentative and deprecated IPv6 addresses.
func firstGlobalAddr(link netlink.Link, fam int) (netip.Addr, error) {
	addrs, err := backend.AddrList(nil, link, fam)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("list addresses of %s: %w", link.Attrs().Name, err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if !ip.IsGlobalUnicast() || a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DEPRECATED|unix.IFA_F_DADFAILED) != 0 {
			continue
		}
		return ip, nil
	}
	return netip.Addr{}, nil
}

// enableForwarding turns IP forwarding on in the current network namespace
// for the families in use. It returns what it could not do.
func enableForwarding(v4, v6 bool) error {
	var errs []error
	set := func(path string) {
		cur, err := os.ReadFile(path)
		if err == nil && strings.TrimSpace(string(cur)) == "1" {
			return
		}
		if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("enable forwarding (%s): %w", path, err))
		}
	}
	if v4 {
		set("/proc/sys/net/ipv4/ip_forward")
	}
	if v6 {
		set("/proc/sys/net/ipv6/conf/all/forwarding")
	}
	return errors.Join(errs...)
}
