// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2e

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
)

// Kernel is a snapshot of the data-plane state weft owns on a node.
type Kernel struct {
	// Routes are the main-table routes carrying weft's route protocol.
	Routes []KernelRoute
	// Neighbours and FDB are the entries on the node's VXLAN device
	// (empty when it has none).
	Neighbours []KernelNeigh
	FDB        []KernelFDB
	// VTEPMAC is the VXLAN device's MAC address ("" without one).
	VTEPMAC string
	// VXLANMTU is the VXLAN device's MTU (0 without one).
	VXLANMTU int
}

// KernelRoute is one route: destination, gateway and output device.
type KernelRoute struct {
	Dst netip.Prefix
	Gw  netip.Addr
	Dev string
}

// KernelNeigh is a neighbour entry: IP → MAC.
type KernelNeigh struct {
	IP    netip.Addr
	MAC   string
	State int
}

// KernelFDB is a forwarding database entry: MAC → remote VTEP IP.
type KernelFDB struct {
	MAC string
	Dst netip.Addr
}

func (r KernelRoute) String() string {
	return fmt.Sprintf("%s via %s dev %s", r.Dst, r.Gw, r.Dev)
}

// RouteTo returns the route for dst, if weft installed one.
func (k *Kernel) RouteTo(dst netip.Prefix) (KernelRoute, bool) {
	for _, r := range k.Routes {
		if r.Dst == dst.Masked() {
			return r, true
		}
	}
	return KernelRoute{}, false
}

// Neighbour returns the neighbour entry for ip on the VXLAN device.
func (k *Kernel) Neighbour(ip netip.Addr) (KernelNeigh, bool) {
	for _, n := range k.Neighbours {
		if n.IP == ip {
			return n, true
		}
	}
	return KernelNeigh{}, false
}

// FDBFor returns the FDB entry for mac on the VXLAN device.
func (k *Kernel) FDBFor(mac string) (KernelFDB, bool) {
	for _, f := range k.FDB {
		if strings.EqualFold(f.MAC, mac) {
			return f, true
		}
	}
	return KernelFDB{}, false
}

// Kernel reads the node's weft routes and its VXLAN device's neighbour
// and FDB entries.
func (n *Node) Kernel() (*Kernel, error) {
	h, err := n.NS.Handle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	k := &Kernel{}
	names := map[int]string{}
	links, err := backend.LinkList(h)
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	routes, err := backend.ListOwnRoutes(h)
	if err != nil {
		return nil, err
	}
	for _, r := range routes {
		kr := KernelRoute{Dev: names[r.LinkIndex]}
		if r.Dst != nil {
			kr.Dst = ipNetPrefix(r.Dst)
		}
		if a, ok := netip.AddrFromSlice(r.Gw); ok {
			kr.Gw = a.Unmap()
		}
		k.Routes = append(k.Routes, kr)
	}
	vx, err := h.LinkByName(n.VXLANDeviceName())
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return k, nil
		}
		return nil, fmt.Errorf("find %s on %s: %w", n.VXLANDeviceName(), n.Name, err)
	}
	k.VTEPMAC = vx.Attrs().HardwareAddr.String()
	k.VXLANMTU = vx.Attrs().MTU
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		neighs, err := backend.NeighList(h, vx.Attrs().Index, fam)
		if err != nil {
			return nil, err
		}
		for _, ne := range neighs {
			ip, ok := netip.AddrFromSlice(ne.IP)
			if !ok {
				continue
			}
			k.Neighbours = append(k.Neighbours, KernelNeigh{IP: ip.Unmap(), MAC: ne.HardwareAddr.String(), State: ne.State})
		}
	}
	fdb, err := backend.NeighList(h, vx.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return nil, err
	}
	for _, f := range fdb {
		ip, ok := netip.AddrFromSlice(f.IP)
		if !ok || f.HardwareAddr.String() == "00:00:00:00:00:00" {
			continue
		}
		k.FDB = append(k.FDB, KernelFDB{MAC: f.HardwareAddr.String(), Dst: ip.Unmap()})
	}
	return k, nil
}

func ipNetPrefix(n *net.IPNet) netip.Prefix {
	a, _ := netip.AddrFromSlice(n.IP)
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}

// DeleteRoute deletes the weft route to dst on the node (to simulate
// drift).
func (n *Node) DeleteRoute(dst netip.Prefix) error {
	return n.NS.withHandle(func(h *netlink.Handle) error {
		routes, err := backend.ListOwnRoutes(h)
		if err != nil {
			return err
		}
		for _, r := range routes {
			if r.Dst != nil && ipNetPrefix(r.Dst) == dst.Masked() {
				if err := h.RouteDel(&r); err != nil {
					return fmt.Errorf("delete route %s on %s: %w", dst, n.Name, err)
				}
				return nil
			}
		}
		return fmt.Errorf("no weft route to %s on %s", dst, n.Name)
	})
}

// DeleteNeighbour deletes the neighbour entry for ip on the node's VXLAN
// device.
func (n *Node) DeleteNeighbour(ip netip.Addr) error {
	return n.NS.withHandle(func(h *netlink.Handle) error {
		vx, err := h.LinkByName(n.VXLANDeviceName())
		if err != nil {
			return fmt.Errorf("find %s on %s: %w", n.VXLANDeviceName(), n.Name, err)
		}
		fam := netlink.FAMILY_V4
		if ip.Is6() {
			fam = netlink.FAMILY_V6
		}
		if err := h.NeighDel(&netlink.Neigh{LinkIndex: vx.Attrs().Index, Family: fam, IP: ip.AsSlice()}); err != nil {
			return fmt.Errorf("delete neighbour %s on %s: %w", ip, n.Name, err)
		}
		return nil
	})
}

// DeleteFDB deletes the FDB entries for mac on the node's VXLAN device.
func (n *Node) DeleteFDB(mac string) error {
	return n.NS.withHandle(func(h *netlink.Handle) error {
		vx, err := h.LinkByName(n.VXLANDeviceName())
		if err != nil {
			return fmt.Errorf("find %s on %s: %w", n.VXLANDeviceName(), n.Name, err)
		}
		fdb, err := backend.NeighList(h, vx.Attrs().Index, unix.AF_BRIDGE)
		if err != nil {
			return err
		}
		found := false
		for _, f := range fdb {
			if strings.EqualFold(f.HardwareAddr.String(), mac) {
				if err := h.NeighDel(&f); err != nil {
					return fmt.Errorf("delete fdb %s on %s: %w", mac, n.Name, err)
				}
				found = true
			}
		}
		if !found {
			return fmt.Errorf("no fdb entry for %s on %s", mac, n.Name)
		}
		return nil
	})
}

// SetPodMTU sets the MTU of the pod's eth0 and of its host-side veth in
// the node (for path-MTU tests).
func (p *Pod) SetPodMTU(mtu int) error {
	var peer int
	err := p.NS.withHandle(func(h *netlink.Handle) error {
		l, err := h.LinkByName("eth0")
		if err != nil {
			return err
		}
		peer = l.Attrs().ParentIndex
		return h.LinkSetMTU(l, mtu)
	})
	if err != nil {
		return fmt.Errorf("set MTU in pod %s: %w", p.Name, err)
	}
	return p.Node.NS.withHandle(func(h *netlink.Handle) error {
		l, err := h.LinkByIndex(peer)
		if err != nil {
			return fmt.Errorf("find host veth of %s (index %d): %w", p.Name, peer, err)
		}
		return h.LinkSetMTU(l, mtu)
	})
}

// SetUnderlayUp sets the node's underlay link (eth0) up or down, cutting
// the node off the underlay (gossip partitions) without touching weftd.
func (n *Node) SetUnderlayUp(up bool) error {
	return n.NS.withHandle(func(h *netlink.Handle) error {
		l, err := h.LinkByName("eth0")
		if err != nil {
			return fmt.Errorf("find eth0 on %s: %w", n.Name, err)
		}
		if up {
			err = h.LinkSetUp(l)
		} else {
			err = h.LinkSetDown(l)
		}
		if err != nil {
			return fmt.Errorf("set eth0 on %s up=%t: %w", n.Name, up, err)
		}
		if up {
			// Bringing a link up drops its default route: put it back.
			if gw := n.defaultGateway(); gw.IsValid() {
				r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw.AsSlice()}
				if err := h.RouteReplace(r); err != nil {
					return fmt.Errorf("restore default route on %s: %w", n.Name, err)
				}
			}
		}
		return nil
	})
}

// defaultGateway is the IPv4 default gateway the harness gave the node.
func (n *Node) defaultGateway() netip.Addr {
	switch {
	case n.Segment == 1:
		return segment1GW
	case n.c.Router != nil:
		return RouterIP
	default:
		return underlayGW
	}
}

// ChangeIP moves the node to a new IPv4 underlay address on its segment:
// the old address goes, then the new one comes with the default route.
// weftd is not restarted; its next Start uses the new address for
// --public-ip, --http-addr and --gossip-bind. It must not run concurrently
// with the node's other methods.
func (n *Node) ChangeIP(ip netip.Addr) error {
	if !segmentPrefix[n.Segment].Contains(ip) {
		return fmt.Errorf("%s is not on segment %s", ip, segmentPrefix[n.Segment])
	}
	err := n.NS.withHandle(func(h *netlink.Handle) error {
		l, err := h.LinkByName("eth0")
		if err != nil {
			return fmt.Errorf("find eth0 on %s: %w", n.Name, err)
		}
		// Remove the old address first: deleting a primary address also
		// deletes the secondaries of its subnet (unless
		// promote_secondaries is set) and the routes through it.
		old := &netlink.Addr{IPNet: prefixIPNet(netip.PrefixFrom(n.IP, 24))}
		if err := h.AddrDel(l, old); err != nil {
			return fmt.Errorf("remove %s from %s: %w", n.IP, n.Name, err)
		}
		if err := addAddr(h, l, ip, 24); err != nil {
			return err
		}
		r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: n.defaultGateway().AsSlice()}
		if err := h.RouteReplace(r); err != nil {
			return fmt.Errorf("restore default route on %s: %w", n.Name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	httpAddr := net.JoinHostPort(ip.String(), strconv.Itoa(HTTPPort))
	n.mu.Lock()
	n.IP, n.HTTPAddr = ip, httpAddr
	n.mu.Unlock()
	n.c.updateNode(n.Name, func(s *NodeState) { s.IP, s.HTTPAddr = ip.String(), httpAddr })
	return nil
}
