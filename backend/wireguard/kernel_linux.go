// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package wireguard

import (
	"errors"
	"fmt"
	"math"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
)

// KernelSupported reports whether the kernel of the calling thread's
// network namespace can create WireGuard interfaces.
//
// It asks netlink to create a link of type wireguard with an MTU no device
// accepts. A kernel without WireGuard answers EOPNOTSUPP (after trying to
// load the module); a kernel with it gets as far as validating the MTU and
// answers EINVAL. Nothing is created either way. Unlike checking for the
// "wireguard" generic-netlink family, which exists only once the module is
// loaded, the probe gives the right answer on a freshly booted node.
func KernelSupported() (bool, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return false, fmt.Errorf("open netlink handle: %w", err)
	}
	defer h.Close()
	return kernelSupported(h)
}

func kernelSupported(h *netlink.Handle) (bool, error) {
	la := netlink.NewLinkAttrs()
	// A random name: the kernel answers EEXIST before looking at the type
	// when the name is taken.
	la.Name = "wgprobe" + randomHex(4)
	la.MTU = math.MaxInt32
	err := h.LinkAdd(&netlink.Wireguard{LinkAttrs: la})
	switch {
	case err == nil:
		// Not expected: some kernel accepted the MTU. It does support
		// WireGuard; remove what it made.
		if l, lerr := h.LinkByName(la.Name); lerr == nil {
			if derr := h.LinkDel(l); derr != nil {
				return true, fmt.Errorf("remove probe link %s: %w", la.Name, derr)
			}
		}
		return true, nil
	case errors.Is(err, unix.EINVAL):
		return true, nil
	case errors.Is(err, unix.EOPNOTSUPP):
		return false, nil
	default:
		return false, fmt.Errorf("probe kernel wireguard support: %w", err)
	}
}

// ensureKernelLink creates the kernel WireGuard link, or adopts an existing
// one (fixing its MTU), and returns it.
func ensureKernelLink(h *netlink.Handle, name string, mtu int) (netlink.Link, bool, error) {
	l, err := backend.LinkByName(h, name)
	if err == nil {
		if l.Type() != "wireguard" {
			return nil, false, fmt.Errorf("link %s exists and is a %s link, not a kernel wireguard link", name, l.Type())
		}
		if l.Attrs().MTU != mtu {
			if err := h.LinkSetMTU(l, mtu); err != nil {
				return nil, false, fmt.Errorf("set mtu of %s to %d: %w", name, mtu, err)
			}
		}
		return l, false, nil
	}
	var notFound netlink.LinkNotFoundError
	if !errors.As(err, &notFound) {
		return nil, false, fmt.Errorf("look up link %s: %w", name, err)
	}
	la := netlink.NewLinkAttrs()
	la.Name = name
	la.MTU = mtu
	if err := h.LinkAdd(&netlink.Wireguard{LinkAttrs: la}); err != nil {
		return nil, false, fmt.Errorf("create wireguard link %s: %w", name, err)
	}
	l, err = backend.LinkByName(h, name)
	if err != nil {
		return nil, false, fmt.Errorf("look up created link %s: %w", name, err)
	}
	return l, true, nil
}
