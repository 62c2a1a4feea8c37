// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package cni

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/cni/ipam"
	"github.com/weftnet/weft/subnet"
)

// Plugin implements the CNI verbs. Its methods are the funcs handed to
// skel.PluginMainFuncs; each runs once per process, in the namespace the
// plugin was started in (the node's).
type Plugin struct {
	// Log receives state changes worth a line (bridge created, bridge
	// address replaced, stale records removed). The plugin's stderr
	// reaches the runtime's log.
	Log logrus.FieldLogger
}

// Funcs returns the verbs for skel.PluginMainFuncs.
func (p *Plugin) Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: p.Add, Del: p.Del, Check: p.Check, GC: p.GC, Status: p.Status}
}

func (p *Plugin) log() logrus.FieldLogger {
	if p.Log == nil {
		l := logrus.New()
		l.SetOutput(os.Stderr)
		return l
	}
	return p.Log
}

func parseArgs(args *skel.CmdArgs) (*Config, error) {
	c, err := ParseConfig(args.StdinData)
	if err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			return nil, types.NewError(types.ErrInvalidNetworkConfig, ce.Error(), "")
		}
		return nil, types.NewError(types.ErrDecodingFailure, err.Error(), "")
	}
	return c, nil
}

// readSubnetFile reads the subnet file; a missing or unreadable one means
// weftd is not ready (code 11).
func readSubnetFile(c *Config) (*subnet.SubnetFile, error) {
	f, err := subnet.ReadSubnetFile(c.SubnetFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, cniErr(types.ErrTryAgainLater, "weftd is not ready: subnet file %s does not exist (is weftd running on this node?)", c.SubnetFile)
	}
	if err != nil {
		return nil, cniErr(types.ErrTryAgainLater, "weftd is not ready: read subnet file: %v", err)
	}
	return f, nil
}

// pools returns the address pools for f.
func pools(f *subnet.SubnetFile) ipam.Pools {
	return ipam.Pools{V4: f.Subnet, V6: f.IPv6Subnet}
}

func mtuFor(c *Config, f *subnet.SubnetFile) int {
	if c.MTU != 0 {
		return c.MTU
	}
	return f.MTU
}

// Add implements CNI ADD.
func (p *Plugin) Add(args *skel.CmdArgs) (err error) {
	c, err := parseArgs(args)
	if err != nil {
		return err
	}
	traceStep("parse")
	podNS, err := ns.GetNS(args.Netns)
	if err != nil {
		return cniErr(types.ErrInvalidEnvironmentVariables, "CNI_NETNS %q: %v", args.Netns, err)
	}
	defer podNS.Close()
	sf, err := readSubnetFile(c)
	if err != nil {
		return err
	}
	mtu := mtuFor(c, sf)
	traceStep("subnet-file")

	// The address allocation (file I/O under a lock) runs while this
	// goroutine does the kernel work that does not need the address:
	// forwarding, bridge, veth pair.
	type allocation struct {
		rec     ipam.Record
		created bool
		err     error
	}
	allocated := make(chan allocation, 1)
	go func() {
		start := time.Now()
		var a allocation
		st, err := ipam.Open(c.StoreDir())
		if err == nil {
			a.rec, a.created, a.err = st.Allocate(args.ContainerID, args.IfName, pools(sf))
			st.Close()
		} else {
			a.err = err
		}
		traceDuration("ipam (parallel)", time.Since(start))
		if a.err == nil {
			testHook("AFTER_ALLOC")
		}
		allocated <- a
	}()
	host, err := p.prepareHost(c, sf, mtu, args, podNS)
	a := <-allocated
	traceStep("ipam wait")
	if a.created && (err != nil || a.err != nil) {
		p.release(c, args.ContainerID, args.IfName)
	}
	if err != nil {
		return err
	}
	h := host.h
	defer h.Close()
	if a.err != nil {
		_ = h.LinkDel(host.veth)
		if errors.Is(a.err, ipam.ErrExhausted) {
			return cniErr(CodeNoAddress, "%v: delete pods or give the node a larger subnet", a.err)
		}
		return cniErr(types.ErrIOFailure, "%v", a.err)
	}
	rec := a.rec
	defer func() {
		if err != nil {
			_ = h.LinkDel(host.veth)
			if a.created {
				p.release(c, args.ContainerID, args.IfName)
			}
		}
	}()
	testHook("AFTER_VETH")

	res, err := configureContainer(c, sf, rec, podNS, args.IfName)
	if err != nil {
		return err
	}
	traceStep("container")
	res.CNIVersion = current.ImplementedSpecVersion
	res.Interfaces[0] = &current.Interface{Name: host.veth.Attrs().Name, Mac: host.veth.Attrs().HardwareAddr.String()}
	res.Interfaces[1].Sandbox = args.Netns
	res.DNS = c.DNS
	out, err := res.GetAsVersion(c.CNIVersion)
	if err != nil {
		return cniErr(types.ErrIncompatibleCNIVersion, "convert result to %s: %v", c.CNIVersion, err)
	}
	if r, ok := out.(*current.Result); ok {
		r.CNIVersion = c.CNIVersion // 1.0.0 and 1.1.0 share a type; Convert keeps the version
	}
	err = out.Print()
	traceStep("result")
	return err
}

// hostSide is what prepareHost made in the node's namespace.
type hostSide struct {
	h    *netlink.Handle
	veth netlink.Link
}

// prepareHost does ADD's work in the node's namespace: forwarding, the
// bridge, and the veth pair with its far end in the pod. On error nothing
// it created is left.
func (p *Plugin) prepareHost(c *Config, sf *subnet.SubnetFile, mtu int, args *skel.CmdArgs, podNS ns.NetNS) (*hostSide, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, cniErr(CodeKernel, "open netlink: %v", err)
	}
	fail := func(err error) (*hostSide, error) {
		h.Close()
		return nil, err
	}
	if err := enableForwarding(sf); err != nil {
		return fail(cniErr(CodeKernel, "%v", err))
	}
	br, err := p.ensureBridge(h, c.Bridge, mtu, sf)
	if err != nil {
		return fail(cniErr(CodeKernel, "%v", err))
	}
	traceStep("bridge")
	hostName := HostVethName(args.ContainerID, args.IfName)
	v, err := p.createVeth(h, br, hostName, VethAlias(args.ContainerID, args.IfName), args.IfName, mtu, c.HairpinMode, podNS)
	if err != nil {
		return fail(err)
	}
	traceStep("veth")
	return &hostSide{h: h, veth: v}, nil
}

// enableForwarding turns on forwarding in the plugin's namespace for the
// families the node uses (writes only when it is off).
func enableForwarding(sf *subnet.SubnetFile) error {
	var paths []string
	if sf.Subnet.IsValid() {
		paths = append(paths, "/proc/sys/net/ipv4/ip_forward")
	}
	if sf.IPv6Subnet.IsValid() {
		paths = append(paths, "/proc/sys/net/ipv6/conf/all/forwarding")
	}
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err == nil && strings.TrimSpace(string(b)) == "1" {
			continue
		}
		if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
			return fmt.Errorf("enable forwarding: %w", err)
		}
	}
	return nil
}

// ensureBridge creates the bridge if missing, and makes sure it is up, has
// the MTU and carries exactly the gateway addresses of the current subnet
// (addresses of a previous subnet are replaced).
func (p *Plugin) ensureBridge(h *netlink.Handle, name string, mtu int, sf *subnet.SubnetFile) (netlink.Link, error) {
	log := p.log().WithField("bridge", name)
	l, err := backend.LinkByName(h, name)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu, TxQLen: -1, Flags: net.FlagUp, HardwareAddr: randomMAC()}}
		err = h.LinkAdd(br)
		if err != nil && !errors.Is(err, unix.EEXIST) { // EEXIST: a concurrent ADD won
			return nil, fmt.Errorf("create bridge %s: %w", name, err)
		}
		if err == nil {
			log.Info("created bridge")
		}
		l, err = backend.LinkByName(h, name)
	}
	if err != nil {
		return nil, fmt.Errorf("look up bridge %s: %w", name, err)
	}
	if _, ok := l.(*netlink.Bridge); !ok {
		return nil, fmt.Errorf("%s exists and is a %s, not a bridge: remove it or set \"bridge\" in the network config", name, l.Type())
	}
	if l.Attrs().MTU != mtu {
		if err := h.LinkSetMTU(l, mtu); err != nil {
			return nil, fmt.Errorf("set mtu of bridge %s: %w", name, err)
		}
		log.WithField("old", l.Attrs().MTU).WithField("mtu", mtu).Info("bridge mtu changed")
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(l); err != nil {
			return nil, fmt.Errorf("set bridge %s up: %w", name, err)
		}
	}
	addrs, err := backend.AddrList(h, l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses of bridge %s: %w", name, err)
	}
	for _, want := range []netip.Prefix{sf.Subnet, sf.IPv6Subnet} {
		if !want.IsValid() {
			continue
		}
		want = netip.PrefixFrom(ipam.Gateway(want), want.Bits())
		have := false
		for _, a := range addrs {
			got, ok := prefixOf(a.IPNet)
			if !ok || got.Addr().Is4() != want.Addr().Is4() || got.Addr().IsLinkLocalUnicast() {
				continue
			}
			if got == want {
				have = true
				continue
			}
			if err := h.AddrDel(l, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
				return nil, fmt.Errorf("remove old address %s from bridge %s: %w", got, name, err)
			}
			log.WithField("old", got).WithField("new", want).Info("bridge carried an address of another subnet (the node's subnet changed): replaced it")
		}
		if have {
			continue
		}
		a := &netlink.Addr{IPNet: ipNet(want)}
		if want.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(l, a); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("add gateway address %s to bridge %s: %w", want, name, err)
		}
	}
	return l, nil
}

// createVeth creates the veth pair: the host end named hostName, up,
// enslaved to br, tagged with the attachment's alias; the other end named
// ifname directly in the container's namespace (one request creates both).
// An existing host end fails the ADD: its peer is in the pod.
func (p *Plugin) createVeth(h *netlink.Handle, br netlink.Link, hostName, alias, ifname string, mtu int, hairpin bool, podNS ns.NetNS) (netlink.Link, error) {
	v := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name: hostName, MTU: mtu, TxQLen: -1, Flags: net.FlagUp,
			MasterIndex: br.Attrs().Index, HardwareAddr: randomMAC(),
		},
		PeerName:      ifname,
		PeerTxQLen:    -1,
		PeerNamespace: netlink.NsFd(int(podNS.Fd())),
	}
	if err := h.LinkAdd(v); err != nil {
		if !errors.Is(err, unix.EEXIST) {
			// LinkAdd creates the pair, then enslaves it: undo half-made.
			if l, lerr := backend.LinkByName(h, hostName); lerr == nil && l.Attrs().Alias == "" {
				_ = h.LinkDel(l)
			}
			return nil, cniErr(CodeKernel, "create veth %s: %v", hostName, err)
		}
		old, lerr := backend.LinkByName(h, hostName)
		if lerr != nil {
			return nil, cniErr(CodeIfExists, "interface %s already exists in the container's network namespace %s", ifname, podNS.Path())
		}
		if ownedBy(old, alias) {
			// Its peer lives in the pod: an earlier ADD of this attachment
			// (complete or interrupted) made it. The runtime must DEL first.
			return nil, cniErr(CodeIfExists, "interface %s already exists for this container (host end %s): DEL it before adding it again", ifname, hostName)
		}
		return nil, cniErr(CodeKernel, "host interface %s already exists and belongs to %q", hostName, old.Attrs().Alias)
	}
	// The kernel ignores IFLA_IFALIAS when it creates a link: set it now.
	if err := h.LinkSetAlias(v, alias); err != nil {
		_ = h.LinkDel(v)
		return nil, cniErr(CodeKernel, "set alias of %s: %v", hostName, err)
	}
	if !hairpin {
		return v, nil
	}
	if err := h.LinkSetHairpin(v, true); err != nil {
		_ = h.LinkDel(v)
		return nil, cniErr(CodeKernel, "set hairpin on %s: %v", hostName, err)
	}
	return v, nil
}

// ownedBy reports whether host veth l belongs to the attachment with alias:
// it carries that alias, or none yet (an ADD killed before it set it).
func ownedBy(l netlink.Link, alias string) bool {
	return l.Attrs().Alias == alias || l.Attrs().Alias == ""
}

// configureContainer brings the container end up with its addresses and
// routes, and returns a result whose Interfaces[1] is that end
// (Interfaces[0] is left for the caller).
func configureContainer(c *Config, sf *subnet.SubnetFile, rec ipam.Record, podNS ns.NetNS, ifname string) (*current.Result, error) {
	ch, err := netlink.NewHandleAt(vns.NsHandle(int(podNS.Fd())))
	if err != nil {
		return nil, cniErr(CodeKernel, "netlink in %s: %v", podNS.Path(), err)
	}
	defer ch.Close()
	l, err := backend.LinkByName(ch, ifname)
	if err != nil {
		return nil, cniErr(CodeKernel, "look up %s in the container: %v", ifname, err)
	}
	if err := ch.LinkSetUp(l); err != nil {
		return nil, cniErr(CodeKernel, "set %s up: %v", ifname, err)
	}
	res := &current.Result{Interfaces: []*current.Interface{nil, {Name: ifname, Mac: l.Attrs().HardwareAddr.String()}}}
	idx := 1
	for _, fam := range []struct {
		ip      netip.Addr
		pool    netip.Prefix
		network netip.Prefix
		def     netip.Prefix
	}{
		{rec.IPv4, sf.Subnet, sf.Network, netip.MustParsePrefix("0.0.0.0/0")},
		{rec.IPv6, sf.IPv6Subnet, sf.IPv6Network, netip.MustParsePrefix("::/0")},
	} {
		if !fam.ip.IsValid() {
			continue
		}
		addr := netip.PrefixFrom(fam.ip, fam.pool.Bits())
		gw := ipam.Gateway(fam.pool)
		a := &netlink.Addr{IPNet: ipNet(addr)}
		if fam.ip.Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := ch.AddrAdd(l, a); err != nil {
			return nil, cniErr(CodeKernel, "add address %s to %s: %v", addr, ifname, err)
		}
		res.IPs = append(res.IPs, &current.IPConfig{Interface: &idx, Address: *ipNet(addr), Gateway: gw.AsSlice()})
		dst := fam.def
		if !c.IsDefaultGateway {
			if !fam.network.IsValid() || fam.network.Bits() >= fam.pool.Bits() {
				continue
			}
			dst = fam.network.Masked()
		}
		r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipNet(dst), Gw: gw.AsSlice()}
		if err := ch.RouteAdd(r); err != nil {
			return nil, cniErr(CodeKernel, "add route %s via %s in the container: %v", dst, gw, err)
		}
		res.Routes = append(res.Routes, &types.Route{Dst: *ipNet(dst), GW: gw.AsSlice()})
	}
	return res, nil
}

// release deletes the IPAM record of an attachment, logging a failure (the
// caller is already returning an error).
func (p *Plugin) release(c *Config, containerID, ifname string) {
	st, err := ipam.Open(c.StoreDir())
	if err == nil {
		_, _, err = st.Release(containerID, ifname)
		st.Close()
	}
	if err != nil {
		p.log().WithError(err).WithField("container", containerID).Warn("release address after a failed ADD")
	}
}

// Del implements CNI DEL: remove the host veth (which removes its peer in
// the container) and release the addresses. Everything already gone is
// success; the addresses are released even when removing the veth fails.
func (p *Plugin) Del(args *skel.CmdArgs) error {
	c, err := parseArgs(args)
	if err != nil {
		return err
	}
	var errs []string
	if err := deleteHostVeth(args.ContainerID, args.IfName); err != nil {
		errs = append(errs, err.Error())
	}
	st, err := ipam.Open(c.StoreDir())
	if err == nil {
		_, _, err = st.Release(args.ContainerID, args.IfName)
		st.Close()
	}
	if err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return cniErr(CodeKernel, "%s", strings.Join(errs, "; "))
	}
	return nil
}

// deleteHostVeth removes the host end of the attachment's veth, if it
// exists and carries the attachment's alias.
func deleteHostVeth(containerID, ifname string) error {
	name := HostVethName(containerID, ifname)
	l, err := backend.LinkByName(nil, name)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up veth %s: %w", name, err)
	}
	if !ownedBy(l, VethAlias(containerID, ifname)) {
		return nil // another attachment's (hash collision): not ours to remove
	}
	if err := netlink.LinkDel(l); err != nil && !errors.As(err, new(netlink.LinkNotFoundError)) && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete veth %s: %w", name, err)
	}
	return nil
}

// Status implements CNI STATUS: ready when the subnet file is readable and
// the data directory is usable.
func (p *Plugin) Status(args *skel.CmdArgs) error {
	c, err := parseArgs(args)
	if err != nil {
		return err
	}
	if _, err := subnet.ReadSubnetFile(c.SubnetFile); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return cniErr(types.ErrPluginNotAvailable, "subnet file %s does not exist: weftd has not written it yet", c.SubnetFile)
		}
		return cniErr(types.ErrPluginNotAvailable, "subnet file unusable: %v", err)
	}
	st, err := ipam.Open(c.StoreDir())
	if err != nil {
		return cniErr(types.ErrPluginNotAvailable, "data directory unusable: %v", err)
	}
	st.Close()
	if err := unix.Access(c.StoreDir(), unix.W_OK); err != nil {
		return cniErr(types.ErrPluginNotAvailable, "data directory %s is not writable: %v", c.StoreDir(), err)
	}
	return nil
}

func randomMAC() net.HardwareAddr {
	m := make(net.HardwareAddr, 6)
	_, _ = rand.Read(m)
	m[0] = m[0]&^1 | 2 // unicast, locally administered
	return m
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}
