// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package hostgw

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
)

// Backend is the host-gw backend. Create it with [New], call
// [Backend.Setup] once in the network namespace it is to program, then
// [Backend.Reconcile] as often as needed (never concurrently with itself).
type Backend struct {
	cfg Config
	log logrus.FieldLogger

	// mu guards the following.
	mu       sync.Mutex
	h        *netlink.Handle
	underlay netlink.Link
}

var _ backend.Backend = (*Backend)(nil)

// New validates cfg and returns a backend. It touches nothing.
func New(cfg Config) (*Backend, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Backend{cfg: cfg, log: cfg.Log.WithField("component", "host-gw")}, nil
}

// Setup binds the backend to the network namespace of the calling thread
// and finds the underlay interface. host-gw has no device and publishes no
// data; the pod MTU is the underlay's.
func (b *Backend) Setup(ctx context.Context) (backend.Attrs, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return backend.Attrs{}, err
	}
	if b.h == nil {
		h, err := netlink.NewHandle()
		if err != nil {
			return backend.Attrs{}, fmt.Errorf("open netlink handle: %w", err)
		}
		b.h = h
	}
	l, err := backend.UnderlayLink(b.h, b.cfg.Iface, b.cfg.PublicIP)
	if err != nil {
		return backend.Attrs{}, err
	}
	b.underlay = l
	b.log.WithFields(logrus.Fields{"iface": l.Attrs().Name, "mtu": l.Attrs().MTU}).Info("host-gw ready")
	return backend.Attrs{MTU: l.Attrs().MTU}, nil
}

// reach asks the kernel how it reaches a peer's public address.
func (b *Backend) reach(ip netip.Addr) reachability {
	idx, err := backend.DirectLink(b.h, ip)
	if err != nil {
		return reachability{reason: err.Error()}
	}
	if idx > 0 {
		if idx == b.underlay.Attrs().Index {
			return reachability{link: idx}
		}
		name := fmt.Sprintf("link #%d", idx)
		if l, err := b.h.LinkByIndex(idx); err == nil {
			name = l.Attrs().Name
		}
		return reachability{link: idx, reason: name}
	}
	routes, err := b.h.RouteGet(net.IP(ip.AsSlice()))
	switch {
	case errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTUNREACH):
		return reachability{reason: "no route to it"}
	case err != nil:
		return reachability{reason: err.Error()}
	case len(routes) == 1 && routes[0].Gw != nil:
		return reachability{reason: "the kernel routes it via " + routes[0].Gw.String()}
	}
	return reachability{reason: "the kernel has no single direct route to it"}
}

// Reconcile installs a direct route to every peer subnet whose peer is on
// this node's segment, reports the others in Result.Problems on every
// call (weftd logs them when they change), and deletes weft's routes of
// departed peers when d.Complete.
func (b *Backend) Reconcile(ctx context.Context, d backend.Desired) (backend.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h == nil {
		return backend.Result{}, errors.New("host-gw: Reconcile before Setup (or after Close)")
	}
	if err := ctx.Err(); err != nil {
		return backend.Result{}, err
	}
	// Look the underlay up again: it may have been re-created with a new
	// index since Setup.
	l, err := backend.UnderlayLink(b.h, b.cfg.Iface, b.cfg.PublicIP)
	if err != nil {
		return backend.Result{}, err
	}
	b.underlay = l
	routes, problems := planRoutes(d, b.underlay.Attrs().Index, b.reach)
	res := backend.Result{Problems: problems}
	res.Added, res.Updated, res.Removed, err = backend.SyncRoutes(b.h, routes, d.Complete)
	return res, err
}

// Close releases the netlink handle; the routes stay. It is idempotent.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h != nil {
		b.h.Close()
		b.h = nil
	}
	return nil
}
