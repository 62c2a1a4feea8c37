// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package backend

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// dumpAttempts is how often a netlink dump is tried before an
// ErrDumpInterrupted is returned to the caller. The kernel interrupts a dump
// when the table changes while it is being read; on a busy node a few
// retries are enough.
const dumpAttempts = 8

// Every netlink dump in weft goes through the functions below (a test in
// this package fails on direct calls elsewhere). Each takes the handle to
// use; a nil handle means the netlink package default, which works in the
// network namespace of the calling thread.
//
// Drop these wrappers once a tagged netlink release has
// HandleOptions.RetryInterrupted.

func handleOrDefault(h *netlink.Handle) *netlink.Handle {
	if h == nil {
		// A zero Handle behaves exactly like the package-level functions.
		return &netlink.Handle{}
	}
	return h
}

// retryDump calls dump until it returns something other than
// netlink.ErrDumpInterrupted, at most dumpAttempts times.
func retryDump[T any](what string, dump func() ([]T, error)) ([]T, error) {
	var err error
	for range dumpAttempts {
		var res []T
		res, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return res, err
		}
	}
	return nil, fmt.Errorf("%s: dump interrupted %d times: %w", what, dumpAttempts, err)
}

// LinkList lists all links (ip link show).
func LinkList(h *netlink.Handle) ([]netlink.Link, error) {
	h = handleOrDefault(h)
	return retryDump("list links", h.LinkList)
}

// LinkByName looks a link up by name. It is not a dump, except on old
// kernels where the netlink package falls back to listing every link, so
// it retries as well.
func LinkByName(h *netlink.Handle, name string) (netlink.Link, error) {
	h = handleOrDefault(h)
	for range dumpAttempts {
		l, err := h.LinkByName(name)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return l, err
		}
	}
	return nil, fmt.Errorf("look up link %s: dump interrupted %d times: %w", name, dumpAttempts, netlink.ErrDumpInterrupted)
}

// AddrList lists the addresses of link (nil: all links) of the given family
// (netlink.FAMILY_ALL, FAMILY_V4, FAMILY_V6).
func AddrList(h *netlink.Handle, link netlink.Link, family int) ([]netlink.Addr, error) {
	h = handleOrDefault(h)
	return retryDump("list addresses", func() ([]netlink.Addr, error) { return h.AddrList(link, family) })
}

// RouteList lists the main-table routes of link (nil: all links) of the
// given family.
func RouteList(h *netlink.Handle, link netlink.Link, family int) ([]netlink.Route, error) {
	h = handleOrDefault(h)
	return retryDump("list routes", func() ([]netlink.Route, error) { return h.RouteList(link, family) })
}

// RouteListFiltered lists routes matching filter for the fields in
// filterMask (netlink.RT_FILTER_*).
func RouteListFiltered(h *netlink.Handle, family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error) {
	h = handleOrDefault(h)
	return retryDump("list routes", func() ([]netlink.Route, error) { return h.RouteListFiltered(family, filter, filterMask) })
}

// NeighList lists the neighbour entries of the link with index linkIndex
// (0: all links). Family unix.AF_BRIDGE lists forwarding database (FDB)
// entries.
func NeighList(h *netlink.Handle, linkIndex, family int) ([]netlink.Neigh, error) {
	h = handleOrDefault(h)
	return retryDump("list neighbours", func() ([]netlink.Neigh, error) { return h.NeighList(linkIndex, family) })
}

// ListOwnRoutes lists the main-table routes of both families that carry
// [RouteProtocol]: the routes weft owns.
func ListOwnRoutes(h *netlink.Handle) ([]netlink.Route, error) {
	return RouteListFiltered(h, netlink.FAMILY_ALL, ownRoutes, ownRoutesMask)
}

// ownRoutes and ownRoutesMask select the routes weft owns from a dump.
var ownRoutes = &netlink.Route{Table: unix.RT_TABLE_MAIN, Protocol: RouteProtocol}

const ownRoutesMask = netlink.RT_FILTER_TABLE | netlink.RT_FILTER_PROTOCOL

// diffOwnRoutes is [DiffRoutes] of [ListOwnRoutes] and want, taking the
// kernel's routes as the dump delivers them rather than as a list.
func diffOwnRoutes(h *netlink.Handle, want []netlink.Route) (RouteDiff, error) {
	rd := newRouteDiffer(want)
	var err error
	for range dumpAttempts {
		rd.reset()
		err = h.RouteListFilteredIter(netlink.FAMILY_ALL, ownRoutes, ownRoutesMask, func(r netlink.Route) bool { rd.see(r); return true })
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	switch {
	case errors.Is(err, netlink.ErrDumpInterrupted):
		return RouteDiff{}, fmt.Errorf("list routes: dump interrupted %d times: %w", dumpAttempts, err)
	case err != nil:
		return RouteDiff{}, err
	}
	return rd.diff(), nil
}

// SyncRoutes makes weft's routes in the main table (both families) match
// desired. Every desired route gets Protocol = [RouteProtocol] (the caller
// need not set it); its Table, if zero, is the main table. Routes are
// identified by destination and metric: a missing one is added, one whose
// attributes (gateway, device, onlink flag, scope, type, source, MTU) differ
// is replaced, an identical one is left alone. When complete is true, routes
// that carry RouteProtocol but are not desired are deleted; routes of any
// other protocol are never touched, and adding a route whose destination a
// foreign route already holds fails with EEXIST rather than replace it.
//
// It carries on past individual failures and returns them joined, with the
// counts of what succeeded.
func SyncRoutes(h *netlink.Handle, desired []netlink.Route, complete bool) (added, updated, removed int, err error) {
	h = handleOrDefault(h)
	// desired is compared as it is (the key and the attributes compared
	// ignore the protocol, and take table 0 as the main table); only the
	// routes to write are copies that get weft's protocol and the table:
	// copying every route of a resync was megabytes at thousands of peers.
	d, err := diffOwnRoutes(h, desired)
	if err != nil {
		return 0, 0, 0, err
	}
	for _, rs := range [][]netlink.Route{d.Add, d.Update} {
		for i := range rs {
			rs[i].Protocol = RouteProtocol
			if rs[i].Table == 0 {
				rs[i].Table = unix.RT_TABLE_MAIN
			}
		}
	}
	var errs []error
	for _, r := range d.Add {
		if err := h.RouteAdd(&r); err != nil {
			errs = append(errs, fmt.Errorf("add route %s: %w", describeRoute(r), err))
			continue
		}
		added++
	}
	for _, r := range d.Update {
		if err := h.RouteReplace(&r); err != nil {
			errs = append(errs, fmt.Errorf("replace route %s: %w", describeRoute(r), err))
			continue
		}
		updated++
	}
	if complete {
		for _, r := range d.Stale {
			if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("delete route %s: %w", describeRoute(r), err))
				continue
			}
			removed++
		}
	}
	return added, updated, removed, errors.Join(errs...)
}

// UnderlayLink returns the node's underlay link: the one named iface or,
// when iface is empty, the one that holds publicIP.
func UnderlayLink(h *netlink.Handle, iface string, publicIP netip.Addr) (netlink.Link, error) {
	h = handleOrDefault(h)
	if iface != "" {
		l, err := LinkByName(h, iface)
		if err != nil {
			return nil, fmt.Errorf("find underlay interface %s: %w", iface, err)
		}
		return l, nil
	}
	if !publicIP.IsValid() {
		return nil, errors.New("find underlay interface: neither its name nor the public IP is configured")
	}
	publicIP = publicIP.Unmap()
	addrs, err := AddrList(h, nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if ipAddr(a.IP) == publicIP {
			l, err := h.LinkByIndex(a.LinkIndex)
			if err != nil {
				return nil, fmt.Errorf("find link of public IP %s: %w", publicIP, err)
			}
			return l, nil
		}
	}
	return nil, fmt.Errorf("no interface has public IP %s (set the interface explicitly)", publicIP)
}

// SyncAddrs makes link's global addresses (link-local ones are left alone)
// match want and returns what it added and removed. IPv6 addresses are
// added without duplicate address detection, so they are usable at once.
// Addresses not in want are removed only when removeStale is true.
//
// It carries on past individual failures and returns them joined.
func SyncAddrs(h *netlink.Handle, link netlink.Link, want []netip.Prefix, removeStale bool) (added, removed []netip.Prefix, err error) {
	h = handleOrDefault(h)
	list, err := AddrList(h, link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, nil, fmt.Errorf("list addresses of %s: %w", link.Attrs().Name, err)
	}
	var current []netip.Prefix
	for _, a := range list {
		ip := ipAddr(a.IP)
		if !ip.IsValid() || ip.IsLinkLocalUnicast() {
			continue
		}
		ones, _ := a.Mask.Size()
		current = append(current, netip.PrefixFrom(ip, ones))
	}
	add, stale := diffAddrs(current, want)
	var errs []error
	for _, p := range add {
		a := &netlink.Addr{IPNet: prefixIPNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(link, a); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("add address %s to %s: %w", p, link.Attrs().Name, err))
			continue
		}
		added = append(added, p)
	}
	if removeStale {
		for _, p := range stale {
			if err := h.AddrDel(link, &netlink.Addr{IPNet: prefixIPNet(p)}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				errs = append(errs, fmt.Errorf("delete address %s from %s: %w", p, link.Attrs().Name, err))
				continue
			}
			removed = append(removed, p)
		}
	}
	return added, removed, errors.Join(errs...)
}

func prefixIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// DirectLink returns the index of the link through which ip is directly
// reachable, or 0 when it is not. ip is directly reachable when it is on a
// directly connected segment: the kernel's route to it is a single route
// without a gateway. An address the kernel has no route to at all is not
// directly reachable (0, nil).
func DirectLink(h *netlink.Handle, ip netip.Addr) (int, error) {
	h = handleOrDefault(h)
	if !ip.IsValid() {
		return 0, fmt.Errorf("route to invalid address")
	}
	routes, err := h.RouteGet(net.IP(ip.Unmap().AsSlice()))
	if err != nil {
		if errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTUNREACH) {
			return 0, nil
		}
		return 0, fmt.Errorf("get route to %s: %w", ip, err)
	}
	if len(routes) != 1 || routes[0].Gw != nil || len(routes[0].MultiPath) > 0 || routes[0].Via != nil {
		return 0, nil
	}
	return routes[0].LinkIndex, nil
}
