// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package backend defines the [Backend] interface through which weftd
// programs the kernel's data plane, the [Peer] model it is given, and kernel
// helpers shared by the backends (netlink dumps that retry when interrupted,
// weft's route protocol, route and device address reconciliation, the
// underlay link lookup).
//
// Backends are level-triggered: [Backend.Reconcile] receives the complete
// desired state and converges the kernel to it. A backend may also
// implement [Updater], which applies a few peers' changes without reading
// the kernel's tables (weftd uses it between resyncs). Implementations
// live in backend/vxlan, backend/wireguard and backend/hostgw.
package backend

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/weftnet/weft/subnet"
)

// RouteProtocol is the route protocol number (rtm_protocol) carried by every
// route weft installs. weft deletes only routes that carry it. 0x57 ('W') is
// not assigned in iproute2's rt_protos.
const RouteProtocol = 0x57

// Peer is what a backend needs to know about another node.
type Peer struct {
	// Name is the peer's node name.
	Name string
	// Subnet and IPv6Subnet are the peer's pod subnets (either may be zero).
	Subnet     netip.Prefix
	IPv6Subnet netip.Prefix
	// PublicIP is the peer's underlay address used for tunnels; PublicIPv6
	// its IPv6 underlay address when it has both (used for direct IPv6
	// routes).
	PublicIP   netip.Addr
	PublicIPv6 netip.Addr
	// Data is the peer's backend data (VTEP MAC, WireGuard key and port).
	Data subnet.BackendData
	// Epoch and Version identify which of the peer's data this is (see
	// DESIGN.md); backends use them only for logging.
	Epoch   int64
	Version uint64
}

// Local is this node's own part of the desired state.
type Local struct {
	// Subnet and IPv6Subnet are this node's pod subnets (either may be
	// zero). Backends that carry node-originated traffic put the subnet's
	// network address on their device (/32, /128).
	Subnet     netip.Prefix
	IPv6Subnet netip.Prefix
}

// DeviceAddrs returns the network address of each of l's subnets as a /32
// or /128: the addresses a backend that carries node-originated traffic
// puts on its device.
func (l Local) DeviceAddrs() []netip.Prefix {
	var addrs []netip.Prefix
	for _, s := range []netip.Prefix{l.Subnet, l.IPv6Subnet} {
		if s.IsValid() {
			a := s.Masked().Addr()
			addrs = append(addrs, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return addrs
}

// Desired is the complete state a backend converges the kernel to.
type Desired struct {
	Local Local
	Peers []Peer
	// Complete is false until the daemon has a complete peer view (a full
	// list from etcd, or its persisted snapshot). While it is false,
	// Reconcile only adds and updates; it deletes nothing.
	Complete bool
}

// Attrs is what a backend's Setup reports.
type Attrs struct {
	// Data is published in this node's lease record and gossip metadata.
	Data subnet.BackendData
	// MTU is the pod MTU this backend supports (underlay MTU minus
	// encapsulation overhead, or the configured MTU).
	MTU int
}

// Result summarises what a Reconcile changed. Counts are of kernel objects
// (routes, neighbours, FDB entries, WireGuard peers).
type Result struct {
	Added, Updated, Removed int
	// Problems maps a peer name to why it cannot be served (for example a
	// host-gw peer that is not on this node's L2 segment). Such peers are
	// reported in the log and in /status, never silently dropped.
	Problems map[string]string
}

// Changed reports whether the reconcile changed anything in the kernel.
func (r Result) Changed() bool { return r.Added+r.Updated+r.Removed > 0 }

// Backend programs the data plane of one node.
//
// Setup is called once before any Reconcile. Reconcile may be called any
// number of times with identical or different Desired states; it is
// idempotent, leaves correct entries untouched, and is never called
// concurrently with itself (the daemon has one reconcile loop). Close
// releases the backend's resources but leaves the kernel data plane in
// place (routes, neighbours, FDB entries and, where the kernel keeps it,
// the device), so that a restarted weftd loses no traffic.
type Backend interface {
	// Setup creates the backend's device(s), or adopts existing compatible
	// ones without disturbing them, and returns the data to publish and the
	// pod MTU. It does not need the node's subnet.
	Setup(ctx context.Context) (Attrs, error)
	// Reconcile makes the kernel match d.
	Reconcile(ctx context.Context, d Desired) (Result, error)
	// Close releases resources without tearing down the data plane.
	Close() error
}

// Change is one peer entry's change between the desired state a backend
// last applied and the next: Old is the entry as last applied (nil: the
// peer is new), New is the entry to apply (nil: the peer is gone). Peer
// entries are matched by primary subnet (IPv4 when it has one).
type Change struct {
	Old, New *Peer
}

// Updater is implemented by a backend that can apply a few peers' changes
// against the kernel state its last Reconcile (and the Updates since) left,
// touching only those peers' kernel objects: one change among thousands of
// peers then costs what the change costs, not a read of every table.
//
// weftd calls Update for the changes between resyncs, and Reconcile (the
// full comparison with the kernel, which repairs drift) at every resync,
// after a failed Update, and whenever the local part, completeness or
// network config changed. Update assumes the Desired.Local and Complete of
// the last Reconcile. It is never called before the first successful
// Reconcile, nor concurrently with itself or Reconcile. It carries on past
// individual failures and returns them joined; its Result counts kernel
// objects as Reconcile's does, and its Problems name only changed peers
// (a peer changed and not named has no problem any more).
type Updater interface {
	Update(ctx context.Context, changes []Change) (Result, error)
}

// MemoryReleaser is implemented by a backend that holds memory only a
// garbage collection gives back (the userspace WireGuard device's buffer
// pools, which keep what a burst of traffic made them grow). weftd calls
// ReleaseMemory at every resync, from its reconcile loop.
type MemoryReleaser interface {
	ReleaseMemory()
}

// ValidIfName checks a Linux interface name as the kernel does: 1 to 15
// bytes, not "." or "..", without '/', ':', white space (the kernel's
// isspace) or NUL.
func ValidIfName(name string) error {
	switch {
	case name == "":
		return errors.New("empty interface name")
	case len(name) > 15:
		return fmt.Errorf("interface name %q is longer than 15 bytes", name)
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q is not allowed", name)
	case strings.ContainsAny(name, "/: \t\n\v\f\r\x00"):
		return fmt.Errorf("interface name %q contains '/', ':' or white space", name)
	}
	return nil
}
