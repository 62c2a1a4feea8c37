// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package wireguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/subnet"
)

var _ backend.Backend = (*Backend)(nil)

// silentPeerDelay is how long after adding a peer (outside start-up) the
// userspace device waits for a handshake before initiating one itself.
const silentPeerDelay = time.Second

// Backend is the WireGuard backend. Create it with [New]; see the package
// documentation for the kernel state it owns.
//
// Setup must be called once, in the network namespace weftd runs in (the
// userspace device opens its sockets there, from goroutines on any thread:
// the whole process must live in that namespace). Reconcile is not safe
// for concurrent use (the daemon calls it from one loop). Close is
// idempotent; a Reconcile that runs concurrently with it fails.
type Backend struct {
	cfg Config
	log logrus.FieldLogger

	// Set by Setup, read-only afterwards.
	nl     *netlink.Handle
	wg     *wgctrl.Client
	kernel bool
	key    wgtypes.Key
	pub    wgtypes.Key
	psk    wgtypes.Key
	mtu    int
	user   *userDevice // nil with a kernel device
	// restarted is true when the userspace device started with an
	// existing key; starting is true until the first complete reconcile.
	// See Reconcile. starting is owned by Reconcile after Setup.
	restarted, starting bool

	// Owned by Reconcile (never concurrent).
	lastEndpoint map[wgtypes.Key]netip.AddrPort

	// mu guards the following.
	mu     sync.Mutex
	setup  bool
	closed bool
}

// New validates cfg, applies defaults and returns a backend. It touches
// neither the kernel nor the file system and starts no goroutines.
func New(cfg Config) (*Backend, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("wireguard config: %w", err)
	}
	return &Backend{
		cfg:          c,
		log:          c.Log.WithField("component", "wireguard").WithField("device", c.Name),
		lastEndpoint: map[wgtypes.Key]netip.AddrPort{},
	}, nil
}

// Kernel reports whether Setup chose the kernel device (false: userspace).
func (b *Backend) Kernel() bool { return b.kernel }

// ReleaseMemory implements [backend.MemoryReleaser]. The userspace
// device's buffer pools keep what a burst of traffic made them grow (up to
// --memory-limit) until the garbage collector has run twice, which an idle
// process rarely does: two forced collections hand that memory back. The
// device does so by itself a second after a burst ends; this call (at every
// resync) does it too unless traffic is flowing, when a forced collection
// would only empty the pools the next packets need. A kernel device holds
// no such memory, so there is nothing to do.
func (b *Backend) ReleaseMemory() {
	if b.user != nil && !b.user.busy.Load() {
		releaseMemory()
	}
}

// PublicKey returns this node's public key (valid after Setup).
func (b *Backend) PublicKey() wgtypes.Key { return b.pub }

// Setup loads or creates the private key, chooses the kernel or the
// userspace device (see [Config.Mode]), creates or adopts the interface,
// sets its MTU, private key and listen port, brings it up, and returns the
// public key and port to publish with the pod MTU.
func (b *Backend) Setup(ctx context.Context) (backend.Attrs, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return backend.Attrs{}, errors.New("wireguard backend closed")
	}
	if b.setup {
		return backend.Attrs{}, errors.New("wireguard backend already set up")
	}
	if err := b.setupLocked(); err != nil {
		b.releaseLocked()
		b.user, b.wg, b.nl = nil, nil, nil
		return backend.Attrs{}, err
	}
	b.setup = true
	return backend.Attrs{
		Data: subnet.BackendData{WireGuardKey: b.pub.String(), WireGuardPort: b.cfg.ListenPort},
		MTU:  b.mtu,
	}, nil
}

func (b *Backend) setupLocked() error {
	var err error
	var created bool
	if b.key, created, err = loadOrCreateKey(b.cfg.StateDir); err != nil {
		return err
	}
	b.pub = b.key.PublicKey()
	if b.cfg.PSKFile != "" {
		if b.psk, err = readPSK(b.cfg.PSKFile); err != nil {
			return err
		}
	}
	if b.nl, err = netlink.NewHandle(); err != nil {
		return fmt.Errorf("open netlink handle: %w", err)
	}
	if b.mtu, err = b.deviceMTU(); err != nil {
		return err
	}
	if b.kernel, err = b.chooseKernel(); err != nil {
		return err
	}

	var link netlink.Link
	if b.kernel {
		var made bool
		link, made, err = ensureKernelLink(b.nl, b.cfg.Name, b.mtu)
		if err != nil {
			return err
		}
		b.log.WithFields(logrus.Fields{"created": made, "mtu": b.mtu}).Info("using kernel wireguard device")
	} else {
		if l, lerr := backend.LinkByName(b.nl, b.cfg.Name); lerr == nil {
			return fmt.Errorf("link %s already exists (type %s): another process owns it, or a kernel device is left from an earlier run (use mode %s or delete it)",
				b.cfg.Name, l.Type(), ModeKernel)
		}
		b.user, err = startUserDevice(b.cfg.Name, b.mtu, !b.cfg.DisableOffloads, b.log)
		if err != nil {
			return err
		}
		if link, err = backend.LinkByName(b.nl, b.cfg.Name); err != nil {
			return fmt.Errorf("look up tun %s: %w", b.cfg.Name, err)
		}
		b.restarted, b.starting = !created, true
		b.log.WithFields(logrus.Fields{"mtu": b.mtu, "offloads": !b.cfg.DisableOffloads}).Info("started userspace wireguard device")
	}

	if b.wg, err = wgctrl.New(); err != nil {
		return fmt.Errorf("open wgctrl client: %w", err)
	}
	if err := b.configureDevice(); err != nil {
		return err
	}
	if err := b.nl.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", b.cfg.Name, err)
	}
	if b.user != nil {
		if err := b.user.up(); err != nil {
			return fmt.Errorf("bring userspace device up: %w", err)
		}
	}
	return nil
}

// chooseKernel applies Config.Mode.
func (b *Backend) chooseKernel() (bool, error) {
	if b.cfg.Mode == ModeUserspace {
		return false, nil
	}
	ok, err := kernelSupported(b.nl)
	if err != nil {
		return false, err
	}
	if b.cfg.Mode == ModeKernel && !ok {
		return false, fmt.Errorf("mode %s: this kernel has no wireguard support (no module); use mode %s or %s",
			ModeKernel, ModeAuto, ModeUserspace)
	}
	return ok, nil
}

// deviceMTU is Config.MTU, or the underlay MTU minus the encapsulation
// overhead.
func (b *Backend) deviceMTU() (int, error) {
	if b.cfg.MTU != 0 {
		return b.cfg.MTU, nil
	}
	l, err := backend.UnderlayLink(b.nl, b.cfg.Iface, b.cfg.PublicIP)
	if err != nil {
		return 0, fmt.Errorf("derive mtu (set MTU to skip): %w", err)
	}
	mtu := podMTU(l.Attrs().MTU, b.cfg.PublicIP)
	if mtu < 1280 {
		return 0, fmt.Errorf("underlay %s mtu %d leaves %d for pods, below the minimum 1280", l.Attrs().Name, l.Attrs().MTU, mtu)
	}
	return mtu, nil
}

// configureDevice sets the private key and listen port where they differ,
// so an adopted kernel device keeps its sessions.
func (b *Backend) configureDevice() error {
	dev, err := b.wg.Device(b.cfg.Name)
	if err != nil {
		return fmt.Errorf("read wireguard device %s: %w", b.cfg.Name, err)
	}
	var c wgtypes.Config
	if dev.PrivateKey != b.key {
		c.PrivateKey = &b.key
	}
	if dev.ListenPort != b.cfg.ListenPort {
		c.ListenPort = &b.cfg.ListenPort
	}
	if c.PrivateKey == nil && c.ListenPort == nil {
		return nil
	}
	if err := b.wg.ConfigureDevice(b.cfg.Name, c); err != nil {
		return fmt.Errorf("set private key and listen port %d on %s: %w", b.cfg.ListenPort, b.cfg.Name, err)
	}
	return nil
}

// Reconcile converges the interface's addresses, the WireGuard peers and
// the routes to peer subnets with d. Peers and routes not in d are removed
// only when d.Complete.
//
// The userspace device initiates handshakes itself where the other side
// cannot know that it must. A peer that holds a session with this node
// whose keys this device does not have (the device restarted, or it dropped
// the peer and added it again) keeps encrypting with them; everything it
// sends is dropped here, and it would not start a new handshake for up to
// about 15 s. So:
//
//   - Started with an existing key (weftd restarted), the device sends a
//     handshake initiation at once to every peer it adds, up to and
//     including the first reconcile with a complete view.
//   - Started with a new key, it picks one initiator per pair by key
//     order (splitInitiators): it initiates at once with each peer whose
//     public key sorts after its own, and gives the others
//     silentPeerDelay to do so before initiating itself. Without this,
//     the first packets of two pods on two fresh nodes that talk to each
//     other at the same moment make both nodes initiate: initiations that
//     cross each other can leave the pair without a working session for
//     5 s or more (4 of 19 three-node cluster starts in the e2e tests,
//     pods pinging all-to-all). The delayed side covers an initiation
//     that was dropped
//     because the peer did not know this node yet (this side then waits
//     up to 5 s, WireGuard's rekey timeout, before initiating again).
//   - Afterwards, each peer added gets an initiation silentPeerDelay later
//     if no handshake with it has happened by then. The delay lets a node
//     that just joined configure its peers and start the handshake itself
//     (an initiation it receives before that is dropped, and this side
//     could not initiate again for 5 s), and keeps this side from
//     crossing an initiation from a peer that has traffic for it.
func (b *Backend) Reconcile(ctx context.Context, d backend.Desired) (backend.Result, error) {
	b.mu.Lock()
	ready := b.setup && !b.closed
	b.mu.Unlock()
	if !ready {
		return backend.Result{}, errors.New("wireguard backend not set up, or closed")
	}
	var res backend.Result
	link, err := b.ensureLink()
	if err != nil {
		return res, err
	}

	// The local subnets are known even while the peer view is not
	// complete: other addresses go at once.
	added, removed, err := backend.SyncAddrs(b.nl, link, d.Local.DeviceAddrs(), true)
	for _, p := range added {
		b.log.WithField("address", p.String()).Info("device address added")
	}
	for _, p := range removed {
		b.log.WithField("address", p.String()).Info("stale device address removed")
	}
	res.Added += len(added)
	res.Removed += len(removed)
	if err != nil {
		return res, err
	}

	want, problems := desiredPeers(d, b.pub, subnet.DefaultListenPort)
	if len(problems) > 0 {
		res.Problems = problems
	}
	dev, err := b.wg.Device(b.cfg.Name)
	if err != nil {
		return res, fmt.Errorf("read wireguard device %s: %w", b.cfg.Name, err)
	}
	keepalive := time.Duration(b.cfg.PersistentKeepalive) * time.Second
	plan := planPeers(want, dev.Peers, b.lastEndpoint, b.psk, keepalive, d.Complete)
	if len(plan.configs) > 0 {
		if err := b.wg.ConfigureDevice(b.cfg.Name, wgtypes.Config{Peers: plan.configs}); err != nil {
			return res, fmt.Errorf("configure wireguard peers on %s: %w", b.cfg.Name, err)
		}
	}
	b.recordPeers(plan, want)
	res.Added += len(plan.added)
	res.Updated += len(plan.updated)
	res.Removed += len(plan.removed)

	if b.user != nil && len(plan.added) > 0 {
		var now, later []wgtypes.Key
		switch {
		case b.starting && b.restarted:
			now = plan.added
		case b.starting:
			now, later = splitInitiators(b.pub, plan.added)
		default:
			later = plan.added
		}
		if len(now) > 0 {
			if err := b.user.up(); err != nil {
				return res, fmt.Errorf("bring userspace device up: %w", err)
			}
			n := b.user.initiateHandshakes(now)
			b.log.WithField("peers", n).Debug("handshakes initiated with added peers")
		}
		if len(later) > 0 {
			b.user.initiateLater(later, silentPeerDelay)
		}
	}
	if d.Complete {
		b.starting = false
	}

	var routes []netlink.Route
	for _, key := range sortedKeys(want) {
		for _, p := range want[key].allowed {
			r := netlink.Route{
				LinkIndex: link.Attrs().Index,
				Dst:       &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
			}
			if p.Addr().Is4() {
				r.Scope = netlink.SCOPE_LINK
			}
			routes = append(routes, r)
		}
	}
	ra, ru, rr, err := backend.SyncRoutes(b.nl, routes, d.Complete)
	res.Added += ra
	res.Updated += ru
	res.Removed += rr
	if err != nil {
		return res, fmt.Errorf("sync routes: %w", err)
	}
	return res, nil
}

// recordPeers logs peer changes and remembers the endpoints written.
func (b *Backend) recordPeers(plan peerPlan, want map[wgtypes.Key]*wantPeer) {
	for _, pc := range plan.configs {
		if pc.Endpoint != nil {
			if ep, ok := addrPort(pc.Endpoint); ok {
				b.lastEndpoint[pc.PublicKey] = ep
			}
		}
	}
	for _, k := range plan.added {
		w := want[k]
		b.log.WithFields(logrus.Fields{"peer": w.name, "key": k.String(), "endpoint": w.endpoint.String(), "allowed": fmt.Sprint(w.allowed)}).
			Info("wireguard peer added")
	}
	for _, k := range plan.updated {
		w := want[k]
		b.log.WithFields(logrus.Fields{"peer": w.name, "key": k.String(), "endpoint": w.endpoint.String(), "allowed": fmt.Sprint(w.allowed)}).
			Info("wireguard peer updated")
	}
	for _, k := range plan.removed {
		delete(b.lastEndpoint, k)
		b.log.WithField("key", k.String()).Info("wireguard peer removed")
	}
}

// ensureLink finds the interface and keeps it usable: a kernel device that
// someone deleted is re-created (and re-keyed); a userspace device's UAPI
// socket that someone deleted is re-opened. The MTU is corrected and the
// link set up.
func (b *Backend) ensureLink() (netlink.Link, error) {
	var link netlink.Link
	var err error
	if b.kernel {
		var created bool
		link, created, err = ensureKernelLink(b.nl, b.cfg.Name, b.mtu)
		if err != nil {
			return nil, err
		}
		if created {
			b.log.Warn("kernel wireguard device was missing; re-created it")
			clear(b.lastEndpoint)
			if err := b.configureDevice(); err != nil {
				return nil, err
			}
		}
	} else {
		if err := b.user.ensureUAPI(); err != nil {
			return nil, err
		}
		link, err = backend.LinkByName(b.nl, b.cfg.Name)
		if err != nil {
			return nil, fmt.Errorf("userspace device %s is gone (restart weftd to re-create it): %w", b.cfg.Name, err)
		}
		if link.Attrs().MTU != b.mtu {
			if err := b.nl.LinkSetMTU(link, b.mtu); err != nil {
				return nil, fmt.Errorf("set mtu of %s to %d: %w", b.cfg.Name, b.mtu, err)
			}
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := b.nl.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("set %s up: %w", b.cfg.Name, err)
		}
	}
	return link, nil
}

// Close releases the backend. A kernel device is left in place with its
// peers, addresses and routes, so traffic keeps flowing while weftd is
// down. The userspace device cannot outlive the process: Close removes its
// UAPI socket and stops it, which deletes the interface and its routes.
// Close is idempotent.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	return b.releaseLocked()
}

func (b *Backend) releaseLocked() error {
	var errs []error
	if b.user != nil {
		b.user.close()
		b.log.Info("userspace wireguard device stopped")
	}
	if b.wg != nil {
		if err := b.wg.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close wgctrl client: %w", err))
		}
	}
	if b.nl != nil {
		b.nl.Close()
	}
	return errors.Join(errs...)
}
