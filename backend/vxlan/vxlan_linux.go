// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package vxlan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/subnet"
)

// Backend is the VXLAN backend. Create it with [New], then call
// [Backend.Setup] once (in the network namespace it is to program), then
// [Backend.Reconcile] as often as needed (never concurrently with itself).
type Backend struct {
	cfg Config
	log logrus.FieldLogger

	// mu guards the following; Setup sets them, Close clears them.
	mu       sync.Mutex
	h        *netlink.Handle
	dump     *backend.NeighDumper // reads the neighbour and FDB tables, in h's namespace
	ns       netns.NsHandle       // the namespace h works in
	underlay netlink.Link
	spec     deviceSpec
	devIndex int
	mac      net.HardwareAddr
	mtu      int
	// local and complete are those of the last Reconcile (synced once
	// one succeeded): what Update applies changes against.
	local    backend.Local
	complete bool
	synced   bool
}

var (
	_ backend.Backend = (*Backend)(nil)
	_ backend.Updater = (*Backend)(nil)
)

// addrGenModeNone is IN6_ADDR_GEN_MODE_NONE: no IPv6 link-local address.
const addrGenModeNone = 1

// New validates cfg, applies defaults and returns a backend. It touches
// neither the kernel nor the state dir.
func New(cfg Config) (*Backend, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("vxlan config: %w", err)
	}
	return &Backend{cfg: c, log: c.Log.WithField("component", "vxlan")}, nil
}

// Device returns the name of the VXLAN device.
func (b *Backend) Device() string { return b.cfg.Name }

// Setup binds the backend to the network namespace of the calling thread,
// creates the VXLAN device or adopts an existing compatible one untouched
// (re-creating an incompatible one and logging why), and returns the VTEP
// MAC to publish and the pod MTU.
func (b *Backend) Setup(ctx context.Context) (backend.Attrs, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return backend.Attrs{}, err
	}
	b.synced = false
	if b.h == nil {
		// Handle and namespace handle from one thread, so they agree.
		runtime.LockOSThread()
		ns, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			return backend.Attrs{}, fmt.Errorf("get network namespace: %w", err)
		}
		// NewHandle opens the handle's sockets in this thread's namespace
		// directly; NewHandleAt would setns(2) into it first, which needs
		// CAP_SYS_ADMIN, and weftd runs with CAP_NET_ADMIN and CAP_NET_RAW
		// only (systemd unit, DaemonSet).
		h, err := netlink.NewHandle()
		var dump *backend.NeighDumper
		if err == nil {
			if dump, err = backend.NewNeighDumper(); err != nil {
				h.Close()
			}
		}
		runtime.UnlockOSThread()
		if err != nil {
			ns.Close()
			return backend.Attrs{}, fmt.Errorf("open netlink handle: %w", err)
		}
		b.h, b.ns, b.dump = h, ns, dump
	}
	underlay, err := backend.UnderlayLink(b.h, b.cfg.Iface, b.cfg.PublicIP)
	if err != nil {
		return backend.Attrs{}, err
	}
	b.underlay = underlay
	b.spec = deviceSpec{
		name: b.cfg.Name, vni: b.cfg.VNI, port: b.cfg.Port,
		local: b.cfg.PublicIP, parentIndex: underlay.Attrs().Index,
	}
	b.mtu = b.cfg.MTU
	if b.mtu == 0 {
		over := overheadIPv4
		if b.cfg.PublicIP.Is6() {
			over = overheadIPv6
		}
		b.mtu = underlay.Attrs().MTU - over
	}
	if err := b.ensureDeviceLocked(); err != nil {
		return backend.Attrs{}, err
	}
	return backend.Attrs{MTU: b.mtu, Data: b.dataLocked()}, nil
}

func (b *Backend) dataLocked() subnet.BackendData {
	return subnet.BackendData{VTEPMAC: b.mac.String()}
}

// ensureDeviceLocked makes sure the device exists as b.spec describes,
// adopting a compatible one as it is. It sets b.devIndex and b.mac.
func (b *Backend) ensureDeviceLocked() error {
	persisted, err := loadMAC(b.cfg.StateDir, b.cfg.Name)
	if err != nil {
		return err
	}
	log := b.log.WithField("device", b.cfg.Name)
	l, err := backend.LinkByName(b.h, b.cfg.Name)
	switch {
	case err == nil:
		reason := incompatibility(l, b.spec)
		if reason == "" {
			return b.adoptLocked(l, persisted)
		}
		log.WithField("reason", reason).Warn("re-creating incompatible vxlan device")
		if err := b.h.LinkDel(l); err != nil {
			return fmt.Errorf("delete incompatible device %s (%s): %w", b.cfg.Name, reason, err)
		}
	case !isNotFound(err):
		return fmt.Errorf("look up device %s: %w", b.cfg.Name, err)
	}

	mac := persisted
	if mac == nil {
		mac = randomMAC()
		// Persist first: if weftd dies right after creating the device,
		// the next start adopts it with the MAC on record.
		if err := saveMAC(b.cfg.StateDir, b.cfg.Name, mac); err != nil {
			return err
		}
	}
	vx := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{
			Name:         b.cfg.Name,
			MTU:          b.mtu,
			HardwareAddr: mac,
		},
		VxlanId:      b.spec.vni,
		VtepDevIndex: b.spec.parentIndex,
		SrcAddr:      ipOf(b.spec.local),
		Port:         b.spec.port,
		Learning:     false,
	}
	if err := b.h.LinkAdd(vx); err != nil {
		return fmt.Errorf("create vxlan device %s: %w", b.cfg.Name, err)
	}
	l, err = backend.LinkByName(b.h, b.cfg.Name)
	if err != nil {
		return fmt.Errorf("look up created device %s: %w", b.cfg.Name, err)
	}
	// No IPv6 link-local address and no autoconfiguration on the overlay
	// device: set before it goes up, which is when the kernel would
	// generate one.
	if err := b.h.LinkSetIP6AddrGenMode(l, addrGenModeNone); err != nil {
		return fmt.Errorf("set addrgenmode none on %s: %w", b.cfg.Name, err)
	}
	b.disableRA()
	if err := b.h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", b.cfg.Name, err)
	}
	b.devIndex = l.Attrs().Index
	b.mac = mac
	log.WithFields(logrus.Fields{"vni": b.spec.vni, "port": b.spec.port, "local": b.spec.local,
		"parent": b.underlay.Attrs().Name, "mac": mac, "mtu": b.mtu}).Info("created vxlan device")
	return nil
}

// adoptLocked takes over a compatible existing device. It changes only
// what can be changed without disturbing traffic: the MTU and the up
// state.
func (b *Backend) adoptLocked(l netlink.Link, persisted net.HardwareAddr) error {
	log := b.log.WithField("device", b.cfg.Name)
	a := l.Attrs()
	if a.MTU != b.mtu {
		if err := b.h.LinkSetMTU(l, b.mtu); err != nil {
			return fmt.Errorf("set MTU of %s to %d: %w", b.cfg.Name, b.mtu, err)
		}
		log.WithFields(logrus.Fields{"from": a.MTU, "to": b.mtu}).Info("changed vxlan device MTU")
	}
	if a.Flags&net.FlagUp == 0 {
		if err := b.h.LinkSetUp(l); err != nil {
			return fmt.Errorf("set %s up: %w", b.cfg.Name, err)
		}
		log.Info("set vxlan device up")
	}
	// The device's MAC is what peers reach: keep it, and keep the record
	// in line with it.
	mac := a.HardwareAddr
	if !bytes.Equal(mac, persisted) {
		if persisted != nil {
			log.WithFields(logrus.Fields{"device_mac": mac, "recorded_mac": persisted}).
				Warn("vxlan device MAC differs from the recorded one; keeping the device's")
		}
		if err := saveMAC(b.cfg.StateDir, b.cfg.Name, mac); err != nil {
			return err
		}
	}
	b.devIndex = a.Index
	b.mac = mac
	log.WithFields(logrus.Fields{"index": a.Index, "mac": mac}).Info("adopted existing vxlan device")
	return nil
}

// disableRA turns off router advertisement processing on the device. The
// sysctl tree belongs to the calling thread's network namespace, which is
// the one Setup binds to. Without a link-local address (addrgenmode none)
// RAs are not processed anyway, so failing here (a read-only /proc/sys in
// a container) is only worth a debug line.
//
// The write happens only from a thread in the backend's namespace, so a
// Reconcile that re-creates the device from another thread never touches
// another namespace's sysctls.
func (b *Backend) disableRA() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cur, err := netns.Get()
	if err != nil {
		return
	}
	defer cur.Close()
	if !cur.Equal(b.ns) {
		b.log.Debug("not in the device's namespace; leaving accept_ra as it is")
		return
	}
	p := filepath.Join("/proc/sys/net/ipv6/conf", b.cfg.Name, "accept_ra")
	if err := os.WriteFile(p, []byte("0\n"), 0o644); err != nil {
		b.log.WithError(err).Debug("could not disable accept_ra")
	}
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

// Reconcile makes the device's addresses, neighbours and FDB entries and
// weft's routes match d (see the package doc). It carries on past
// individual failures and returns them joined; the Result counts what was
// done.
func (b *Backend) Reconcile(ctx context.Context, d backend.Desired) (backend.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h == nil {
		return backend.Result{}, errors.New("vxlan: Reconcile before Setup (or after Close)")
	}
	if err := ctx.Err(); err != nil {
		return backend.Result{}, err
	}
	if err := b.checkDeviceLocked(); err != nil {
		return backend.Result{}, err
	}
	p := buildPlan(d, planInput{
		publicIP:      b.cfg.PublicIP,
		vxIndex:       b.devIndex,
		directRouting: b.cfg.DirectRouting,
		direct:        func(a netip.Addr) (int, error) { return backend.DirectLink(b.h, a) },
	})
	for _, w := range p.warnings {
		b.log.WithError(w).Warn("direct routing check failed; using the tunnel")
	}
	res := backend.Result{Problems: p.problems}
	var errs []error
	step := func(f func(*backend.Result) error) {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			return
		}
		if err := f(&res); err != nil {
			errs = append(errs, err)
		}
	}
	// Adds and updates in dependency order (neighbour, FDB, route), then
	// deletions in reverse order (route, FDB, neighbour).
	var nd neighDiff
	var fd fdbDiff
	step(func(r *backend.Result) error { return b.syncAddrsLocked(p.addrs, d.Complete, r) })
	step(func(r *backend.Result) (err error) { nd, err = b.applyNeighsLocked(p.neighs, r); return err })
	step(func(r *backend.Result) (err error) { fd, err = b.applyFDBLocked(p.fdb, r); return err })
	step(func(r *backend.Result) error {
		a, u, rm, err := backend.SyncRoutes(b.h, p.routes, d.Complete)
		r.Added += a
		r.Updated += u
		r.Removed += rm
		return err
	})
	if d.Complete {
		step(func(r *backend.Result) error { return b.deleteFDBLocked(fd.stale, r) })
		step(func(r *backend.Result) error { return b.deleteNeighsLocked(nd.stale, r) })
	}
	err := errors.Join(errs...)
	b.local, b.complete, b.synced = d.Local, d.Complete, err == nil
	return res, err
}

// Update applies the changes of a few peers against the state the last
// Reconcile left (see [backend.Updater]), without reading the kernel's
// tables: it writes the changed peers' neighbour, FDB entry and route
// (replacing what is there) and deletes what their old entries needed and
// the new ones do not, in the same order as Reconcile. Entries of other
// peers are not looked at; drift is Reconcile's to repair. Before the
// caller's view is complete it deletes nothing.
func (b *Backend) Update(ctx context.Context, changes []backend.Change) (backend.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h == nil {
		return backend.Result{}, errors.New("vxlan: Update before Setup (or after Close)")
	}
	if !b.synced {
		return backend.Result{}, errors.New("vxlan: Update before a successful Reconcile")
	}
	if err := ctx.Err(); err != nil {
		return backend.Result{}, err
	}
	var olds, news []backend.Peer
	for _, c := range changes {
		if c.Old != nil {
			olds = append(olds, *c.Old)
		}
		if c.New != nil {
			news = append(news, *c.New)
		}
	}
	in := planInput{
		publicIP:      b.cfg.PublicIP,
		vxIndex:       b.devIndex,
		directRouting: b.cfg.DirectRouting,
		direct:        func(a netip.Addr) (int, error) { return backend.DirectLink(b.h, a) },
	}
	// The old plan asks the kernel about direct reachability again; an
	// old direct route whose link changed is replaced by the new plan's.
	was := buildPlan(backend.Desired{Local: b.local, Peers: olds}, in)
	now := buildPlan(backend.Desired{Local: b.local, Peers: news}, in)
	for _, w := range now.warnings {
		b.log.WithError(w).Warn("direct routing check failed; using the tunnel")
	}
	res := backend.Result{Problems: now.problems}
	var errs []error
	// Adds and updates: neighbour, FDB, route.
	for _, ip := range sortedKeys(now.neighs, netip.Addr.Compare) {
		mac := now.neighs[ip]
		old, had := was.neighs[ip]
		if had && old == mac {
			continue
		}
		if err := b.h.NeighSet(b.neigh(neighEntry{ip: ip, mac: mac})); err != nil {
			errs = append(errs, fmt.Errorf("set neighbour %s: %w", ip, err))
			continue
		}
		count(&res, had)
	}
	for _, mac := range sortedKeys(now.fdb, strings.Compare) {
		dst := now.fdb[mac]
		old, had := was.fdb[mac]
		if had && old == dst {
			continue
		}
		if err := b.h.NeighSet(b.fdb(fdbEntry{mac: mac, dst: dst})); err != nil {
			errs = append(errs, fmt.Errorf("set fdb entry %s dst %s: %w", mac, dst, err))
			continue
		}
		count(&res, had)
	}
	oldRoutes := routesByDst(was.routes)
	newRoutes := routesByDst(now.routes)
	for _, r := range now.routes {
		o, had := oldRoutes[routeDst(r)]
		if had && sameRoute(o, r) {
			continue
		}
		r := ownRoute(r)
		if err := b.h.RouteReplace(&r); err != nil {
			errs = append(errs, fmt.Errorf("replace route %s: %w", r.Dst, err))
			continue
		}
		count(&res, had)
	}
	if b.complete {
		// Deletions: route, FDB, neighbour.
		for _, r := range was.routes {
			if _, keep := newRoutes[routeDst(r)]; keep {
				continue
			}
			r := ownRoute(r)
			if err := b.h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("delete route %s: %w", r.Dst, err))
				continue
			}
			res.Removed++
		}
		var fdbGone []fdbEntry
		for mac, dst := range was.fdb {
			if _, keep := now.fdb[mac]; !keep {
				fdbGone = append(fdbGone, fdbEntry{mac: mac, dst: dst})
			}
		}
		if err := b.deleteFDBLocked(fdbGone, &res); err != nil {
			errs = append(errs, err)
		}
		var neighGone []neighEntry
		for ip, mac := range was.neighs {
			if _, keep := now.neighs[ip]; !keep {
				neighGone = append(neighGone, neighEntry{ip: ip, mac: mac})
			}
		}
		if err := b.deleteNeighsLocked(neighGone, &res); err != nil {
			errs = append(errs, err)
		}
	}
	err := errors.Join(errs...)
	if err != nil {
		// The kernel may hold anything of these peers now: only a full
		// comparison can tell.
		b.synced = false
	}
	return res, err
}

func count(r *backend.Result, had bool) {
	if had {
		r.Updated++
	} else {
		r.Added++
	}
}

func routeDst(r netlink.Route) netip.Prefix {
	a, _ := netip.AddrFromSlice(r.Dst.IP)
	ones, _ := r.Dst.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}

func routesByDst(rs []netlink.Route) map[netip.Prefix]netlink.Route {
	m := make(map[netip.Prefix]netlink.Route, len(rs))
	for _, r := range rs {
		m[routeDst(r)] = r
	}
	return m
}

// sameRoute compares two planned routes.
func sameRoute(a, b netlink.Route) bool {
	return a.LinkIndex == b.LinkIndex && a.Flags == b.Flags && a.Gw.Equal(b.Gw)
}

// ownRoute is a planned route as weft installs it (SyncRoutes sets the
// same): weft's protocol, the main table.
func ownRoute(r netlink.Route) netlink.Route {
	r.Protocol = backend.RouteProtocol
	r.Table = unix.RT_TABLE_MAIN
	return r
}

// checkDeviceLocked re-creates the device if it vanished or was replaced
// by an incompatible one since Setup (drift repair).
func (b *Backend) checkDeviceLocked() error {
	l, err := backend.LinkByName(b.h, b.cfg.Name)
	if err == nil && l.Attrs().Index == b.devIndex && incompatibility(l, b.spec) == "" {
		if l.Attrs().Flags&net.FlagUp == 0 {
			if err := b.h.LinkSetUp(l); err != nil {
				return fmt.Errorf("set %s up: %w", b.cfg.Name, err)
			}
			b.log.WithField("device", b.cfg.Name).Warn("vxlan device was down; set it up")
		}
		return nil
	}
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("look up device %s: %w", b.cfg.Name, err)
	}
	b.log.WithField("device", b.cfg.Name).Warn("vxlan device missing or replaced since setup; re-creating it")
	// The underlay may have been re-created too (which takes the VXLAN
	// device with it): look it up again.
	underlay, err := backend.UnderlayLink(b.h, b.cfg.Iface, b.cfg.PublicIP)
	if err != nil {
		return err
	}
	b.underlay = underlay
	b.spec.parentIndex = underlay.Attrs().Index
	return b.ensureDeviceLocked()
}

func (b *Backend) devLink() netlink.Link {
	return &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Index: b.devIndex, Name: b.cfg.Name}}
}

func (b *Backend) syncAddrsLocked(want []netip.Prefix, complete bool, r *backend.Result) error {
	added, removed, err := backend.SyncAddrs(b.h, b.devLink(), want, complete)
	r.Added += len(added)
	r.Removed += len(removed)
	if len(added)+len(removed) > 0 {
		b.log.WithFields(logrus.Fields{"added": added, "removed": removed}).Debug("synced device addresses")
	}
	return err
}

func (b *Backend) applyNeighsLocked(want map[netip.Addr]string, r *backend.Result) (neighDiff, error) {
	nd := newNeighDiffer(want)
	// One dump holds both families (the ARP and the IPv6 neighbour table).
	err := b.dump.Each(b.devIndex, netlink.FAMILY_ALL, nd.reset, func(e *backend.NeighEntry) {
		if e.Family == netlink.FAMILY_V4 || e.Family == netlink.FAMILY_V6 {
			nd.see(e.IP, e.MAC, e.State&netlink.NUD_PERMANENT != 0)
		}
	})
	if err != nil {
		return neighDiff{}, fmt.Errorf("list neighbours of %s: %w", b.cfg.Name, err)
	}
	d := nd.diff()
	var errs []error
	set := func(e neighEntry, count *int, what string) {
		if err := b.h.NeighSet(b.neigh(e)); err != nil {
			errs = append(errs, fmt.Errorf("%s neighbour %s: %w", what, e.ip, err))
			return
		}
		*count++
		b.log.WithFields(logrus.Fields{"ip": e.ip, "mac": e.mac}).Debugf("%s neighbour", what)
	}
	for _, e := range d.add {
		set(e, &r.Added, "add")
	}
	for _, e := range d.update {
		set(e, &r.Updated, "update")
	}
	return d, errors.Join(errs...)
}

func (b *Backend) neigh(e neighEntry) *netlink.Neigh {
	fam := netlink.FAMILY_V4
	if e.ip.Is6() {
		fam = netlink.FAMILY_V6
	}
	mac, _ := net.ParseMAC(e.mac)
	return &netlink.Neigh{
		LinkIndex:    b.devIndex,
		Family:       fam,
		State:        netlink.NUD_PERMANENT,
		Type:         unix.RTN_UNICAST,
		IP:           ipOf(e.ip),
		HardwareAddr: mac,
	}
}

func (b *Backend) deleteNeighsLocked(stale []neighEntry, r *backend.Result) error {
	var errs []error
	for _, e := range stale {
		if err := b.h.NeighDel(b.neigh(e)); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("delete neighbour %s: %w", e.ip, err))
			continue
		}
		r.Removed++
		b.log.WithFields(logrus.Fields{"ip": e.ip, "mac": e.mac}).Debug("removed stale neighbour")
	}
	return errors.Join(errs...)
}

func (b *Backend) fdb(e fdbEntry) *netlink.Neigh {
	mac, _ := net.ParseMAC(e.mac)
	return &netlink.Neigh{
		LinkIndex:    b.devIndex,
		Family:       unix.AF_BRIDGE,
		Flags:        netlink.NTF_SELF,
		State:        netlink.NUD_PERMANENT,
		IP:           ipOf(e.dst),
		HardwareAddr: mac,
	}
}

func (b *Backend) applyFDBLocked(want map[string]netip.Addr, r *backend.Result) (fdbDiff, error) {
	fd := newFDBDiffer(want)
	err := b.dump.Each(b.devIndex, unix.AF_BRIDGE, fd.reset, func(e *backend.NeighEntry) {
		fd.see(e.MAC, e.IP, e.State&netlink.NUD_PERMANENT != 0)
	})
	if err != nil {
		return fdbDiff{}, fmt.Errorf("list fdb of %s: %w", b.cfg.Name, err)
	}
	d := fd.diff()
	var errs []error
	// Wrong destinations of MACs in use go first (they are not stale:
	// they are the old data of a current peer).
	if err := b.deleteFDBLocked(d.wrong, r); err != nil {
		errs = append(errs, err)
	}
	set := func(e fdbEntry, count *int, what string) {
		if err := b.h.NeighSet(b.fdb(e)); err != nil {
			errs = append(errs, fmt.Errorf("%s fdb entry %s dst %s: %w", what, e.mac, e.dst, err))
			return
		}
		*count++
		b.log.WithFields(logrus.Fields{"mac": e.mac, "dst": e.dst}).Debugf("%s fdb entry", what)
	}
	for _, e := range d.add {
		set(e, &r.Added, "add")
	}
	for _, e := range d.update {
		set(e, &r.Updated, "update")
	}
	return d, errors.Join(errs...)
}

func (b *Backend) deleteFDBLocked(entries []fdbEntry, r *backend.Result) error {
	var errs []error
	for _, e := range entries {
		if err := b.h.NeighDel(b.fdb(e)); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("delete fdb entry %s dst %s: %w", e.mac, e.dst, err))
			continue
		}
		r.Removed++
		b.log.WithFields(logrus.Fields{"mac": e.mac, "dst": e.dst}).Debug("removed fdb entry")
	}
	return errors.Join(errs...)
}

// Close releases the netlink handle. The device and every entry stay in
// the kernel, so traffic keeps flowing until the next weftd adopts them.
// It is idempotent.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h != nil {
		b.h.Close()
		b.dump.Close()
		b.ns.Close()
		b.h, b.dump, b.ns = nil, nil, netns.None()
	}
	return nil
}
