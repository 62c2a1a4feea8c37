// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package cni

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/cni/antispoof"
	"github.com/weftnet/weft/cni/gate"
	"github.com/weftnet/weft/cni/ipam"
	"github.com/weftnet/weft/subnet"
)

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
		return nil, cniErr(types.ErrTryAgainLater, "subnet file unusable: %v", err)
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
	traceStep("skel")
	defer traceStep("cleanup")
	c, err := parseArgs(args)
	if err != nil {
		return err
	}
	pod, err := ParsePodIdentity(args.Args, c.Args)
	if err != nil {
		if ie := (*IdentityError)(nil); errors.As(err, &ie) && ie.Config {
			return types.NewError(types.ErrInvalidNetworkConfig, err.Error(), "")
		}
		return types.NewError(types.ErrInvalidEnvironmentVariables, err.Error(), "")
	}
	traceStep("parse")
	podNS, err := openNetNS(args.Netns)
	if err != nil {
		return cniErr(types.ErrInvalidEnvironmentVariables, "CNI_NETNS %q: %v", args.Netns, err)
	}
	defer unix.Close(podNS)
	sf, err := readSubnetFile(c)
	if err != nil {
		return err
	}
	mtu := mtuFor(c, sf)
	traceStep("subnet-file")

	// The address allocation (file I/O under a lock) runs while this
	// goroutine does the kernel work that does not need the address:
	// forwarding, bridge, the pod's netlink socket. The veth pair is made
	// only once the allocation's record is stored: a veth of this network
	// then never exists without a record, and GC, which deletes only veths
	// it can tie to a record of the network (another network's weft veths
	// may sit on the bridge), finds the veth of an ADD killed at any point.
	type allocation struct {
		rec     ipam.Record
		created bool
		err     error
	}
	allocated := make(chan allocation, 1)
	go func() {
		testHook("BEFORE_ALLOC")
		start := time.Now()
		var a allocation
		st, err := ipam.Open(c.StoreDir())
		if err != nil {
			a.err = err
			allocated <- a
			return
		}
		a.rec, a.created, a.err = st.Allocate(args.ContainerID, args.IfName, pools(sf))
		st.Close()
		traceDuration("ipam (parallel)", time.Since(start))
		if a.err == nil {
			testHook("AFTER_ALLOC")
		}
		allocated <- a
	}()
	host, err := p.prepareHost(c, sf, mtu, args, podNS)
	a := <-allocated
	traceStep("ipam wait")
	if err == nil && a.err != nil {
		host.close()
		err = allocError(a.err)
	}
	if err == nil {
		if err = p.createVeth(host, args, mtu, c.HairpinMode); err != nil {
			host.close()
		}
		traceStep("veth")
	}
	if err != nil {
		if a.created {
			p.release(c, args.ContainerID, args.IfName)
		}
		return err
	}
	defer host.close()
	rec := a.rec
	spoofAdded, held := false, false
	defer func() {
		if err != nil {
			if held {
				p.releaseHeld(host.veth, args.ContainerID)
			}
			if spoofAdded {
				p.undoSpoofEntries(c, args.ContainerID, args.IfName)
			}
			host.deleteVeth()
			if a.created {
				p.release(c, args.ContainerID, args.IfName)
			}
		}
	}()
	testHook("AFTER_VETH")

	// Network policy: the pod's addresses are held before its record is
	// written and before its interface has them (see package gate).
	if held, err = gate.Hold(host.veth, host.peer.String(), addrsOf(rec)); err != nil {
		return cniErr(CodeKernel, "%v", err)
	}
	traceStep("hold")

	// Anti-spoofing: the pod record, then its entries, before the pod's
	// interface comes up (see package antispoof).
	if !testNoAntispoof() {
		spoofAdded = true
		if err := addSpoofEntries(c, args, rec, host, pod); err != nil {
			return err
		}
	}
	traceStep("anti-spoofing entries")

	res, err := configureContainer(c, sf, rec, host, args.IfName)
	if err != nil {
		return err
	}
	traceStep("container")
	if held {
		forgetNeighbours(host, addrsOf(rec))
	}
	if held && c.PolicyWait > 0 {
		if err := gate.Wait(addrsOf(rec), c.PolicyWait); err != nil {
			return policyWaitError(err, c.PolicyWait)
		}
		traceStep("policy wait")
	}
	res.CNIVersion = current.ImplementedSpecVersion
	res.Interfaces[0] = &current.Interface{Name: host.veth, Mac: host.mac.String()}
	res.Interfaces[1].Sandbox = args.Netns
	res.DNS = c.DNS
	out, err := res.GetAsVersion(c.CNIVersion)
	if err != nil {
		return cniErr(types.ErrIncompatibleCNIVersion, "convert result to %s: %v", c.CNIVersion, err)
	}
	if r, ok := out.(*current.Result); ok {
		r.CNIVersion = c.CNIVersion // 1.0.0 and 1.1.0 share a type; Convert keeps the version
	}
	if err := out.Print(); err != nil {
		return cniErr(types.ErrInternal, "print result: %v", err)
	}
	traceStep("result")
	return nil
}

// policyWaitError is the CNI error for a pod weftd did not release in
// time. ADD fails rather than succeed with the pod held: a held pod would
// run reachable by nothing, failing its probes with no reason shown,
// until weftd came back; a failed ADD is retried by the runtime, and its
// reason shows in the pod's events.
func policyWaitError(err error, wait time.Duration) error {
	if errors.Is(err, gate.ErrTimeout) {
		return cniErr(types.ErrTryAgainLater, "network policy: weftd did not apply the policy state of the new pod within %s (policyWait): %v; "+
			"is weftd running, with --cni-data-dir set to the plugin's dataDir, and reading its policies (weftctl status)? "+
			"ADD fails rather than start a pod nothing can reach", wait, err)
	}
	return cniErr(CodeKernel, "network policy: wait for weftd: %v", err)
}

// forgetNeighbours deletes the node's neighbour entries for the new pod's
// addresses on the bridge, with the packets queued on them. A packet
// routed to an address before its pod existed passed the policy table
// then (nothing isolated the address) and waits there for address
// resolution; left alone it would be sent whenever resolution completed,
// possibly after the pod's release. Deleted now, while the pod is held and
// answers ARP and neighbour solicitation, any packet routed to it from
// here on is resolved at once and meets the gate (see package gate).
// Best effort: an entry that does not exist is the common case.
func forgetNeighbours(hs *hostSide, addrs []netip.Addr) {
	for _, a := range addrs {
		_ = hs.h.NeighDel(&netlink.Neigh{LinkIndex: hs.bridge, IP: a.AsSlice()})
	}
}

// addrsOf returns the addresses of an allocation.
func addrsOf(rec ipam.Record) []netip.Addr {
	var out []netip.Addr
	for _, a := range []netip.Addr{rec.IPv4, rec.IPv6} {
		if a.IsValid() {
			out = append(out, a)
		}
	}
	return out
}

// allocError is the CNI error for a failed allocation.
func allocError(err error) error {
	if errors.Is(err, ipam.ErrExhausted) {
		return cniErr(CodeNoAddress, "%v: delete pods or give the node a larger subnet", err)
	}
	if errors.As(err, new(*ipam.HeldError)) {
		return cniErr(CodeIfExists, "%v: DEL it before adding it again", err)
	}
	return cniErr(types.ErrIOFailure, "%v", err)
}

// openNetNS opens a network namespace file (CNI_NETNS) and checks that it
// is one.
func openNetNS(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("statfs: %w", err)
	}
	// nsfs; procfs for /proc/<pid>/ns/net on kernels before 3.19.
	if st.Type != unix.NSFS_MAGIC && st.Type != unix.PROC_SUPER_MAGIC {
		unix.Close(fd)
		return -1, fmt.Errorf("%s is not a network namespace", path)
	}
	return fd, nil
}

// hostSide is what prepareHost made ready in the node's namespace, and
// the veth pair createVeth adds to it.
type hostSide struct {
	h      *netlink.Handle // for the bridge (its lookups go through backend)
	rt     *rtnl           // for the veth
	bridge int             // the bridge's ifindex
	veth   string
	mac    net.HardwareAddr
	peer   net.HardwareAddr
	podNS  int   // fd of the pod's namespace
	peerIx int32 // the pod end's ifindex
	podRt  *rtnl // netlink socket in the pod's namespace
}

func (hs *hostSide) close() {
	hs.h.Close()
	hs.rt.close()
	if hs.podRt != nil {
		hs.podRt.close()
	}
}

// deleteVeth removes the pair made by createVeth (best effort: ADD is
// failing already).
func (hs *hostSide) deleteVeth() {
	_ = hs.h.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hs.veth}})
}

// prepareHost does the part of ADD's work that needs no address:
// forwarding, the bridge, and a netlink socket in the pod's namespace. On
// error nothing it opened is left.
func (p *Plugin) prepareHost(c *Config, sf *subnet.SubnetFile, mtu int, args *skel.CmdArgs, podNS int) (*hostSide, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, cniErr(CodeKernel, "open netlink: %v", err)
	}
	rt, err := openRtnl()
	if err != nil {
		h.Close()
		return nil, cniErr(CodeKernel, "%v", err)
	}
	hs := &hostSide{h: h, rt: rt, podNS: podNS}
	fail := func(err error) (*hostSide, error) {
		hs.close()
		return nil, err
	}
	if err := enableForwarding(sf); err != nil {
		return fail(cniErr(CodeKernel, "%v", err))
	}
	br, err := p.ensureBridge(h, c, mtu, sf)
	if err != nil {
		var ce *types.Error
		if errors.As(err, &ce) {
			return fail(ce)
		}
		return fail(cniErr(CodeKernel, "%v", err))
	}
	hs.bridge = br.Attrs().Index
	traceStep("bridge")
	if hs.podRt, err = openRtnlIn(podNS); err != nil {
		return fail(cniErr(CodeKernel, "netlink in %s: %v", args.Netns, err))
	}
	traceStep("pod socket")
	return hs, nil
}

// bridgeSysctlDir holds br_netfilter's sysctls; it exists only while the
// module is loaded (or built in).
const bridgeSysctlDir = "/proc/sys/net/bridge"

// enableForwarding turns on forwarding in the plugin's namespace for the
// families the node uses, and br_netfilter's calls into the IP hooks for
// bridged packets (net.bridge.bridge-nf-call-iptables, -ip6tables), so that
// packets between pods on the node's bridge meet kube-proxy's Service rules
// and the network policy table (writes only when a value is off). Without
// br_netfilter (no /proc/sys/net/bridge) the bridge settings are left: weftd
// reports the missing module, and the plugin cannot load one.
func enableForwarding(sf *subnet.SubnetFile) error {
	_, err := os.Stat(bridgeSysctlDir)
	bridgeNF := err == nil
	for _, f := range []struct {
		on   bool
		path string
	}{
		{sf.Subnet.IsValid(), "/proc/sys/net/ipv4/ip_forward"},
		{sf.IPv6Subnet.IsValid(), "/proc/sys/net/ipv6/conf/all/forwarding"},
		{bridgeNF && sf.Subnet.IsValid(), bridgeSysctlDir + "/bridge-nf-call-iptables"},
		{bridgeNF && sf.IPv6Subnet.IsValid(), bridgeSysctlDir + "/bridge-nf-call-ip6tables"},
	} {
		if !f.on || sysctlIsOne(f.path) {
			continue
		}
		if err := os.WriteFile(f.path, []byte("1"), 0o644); err != nil {
			return fmt.Errorf("set %s to 1: %w", strings.TrimPrefix(f.path, "/proc/sys/"), err)
		}
	}
	return nil
}

// sysctlIsOne reports whether the sysctl file at path reads "1". Plain
// system calls: this runs on every ADD, and os.File registers every file
// with the poller first.
func sysctlIsOne(path string) bool {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var b [8]byte
	n, err := unix.Read(fd, b[:])
	return err == nil && n > 0 && strings.TrimSpace(string(b[:n])) == "1"
}

// ensureBridge creates the bridge if missing, and makes sure it is this
// network's, up, has the MTU and carries the gateway addresses of the
// current subnet.
//
// The plugin manages only its own bridge: one it created, which it marks
// with the alias [BridgeAlias] of the network, or an unmarked bridge with
// no alias, no address outside the cluster network and no port but weft's
// veths (a bridge made by an earlier version of the plugin), which it marks
// on first use. It refuses, naming the bridge, a bridge another weft
// network has marked (two networks on one bridge would share its address
// pool and GC each other's pods) and any other bridge (br0 with the host's
// address). On its own bridge it replaces addresses of an earlier subnet of
// the cluster network with the current gateway, and leaves every other
// address alone.
func (p *Plugin) ensureBridge(h *netlink.Handle, c *Config, mtu int, sf *subnet.SubnetFile) (netlink.Link, error) {
	name := c.Bridge
	log := p.log().WithField("bridge", name)
	mark := BridgeAlias(c.Name)
	l, err := backend.LinkByName(h, name)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu, TxQLen: -1, Flags: net.FlagUp, HardwareAddr: randomMAC()}}
		err = h.LinkAdd(br)
		if err != nil && !errors.Is(err, unix.EEXIST) { // EEXIST: a concurrent ADD won
			return nil, fmt.Errorf("create bridge %s: %w", name, err)
		}
		if err == nil {
			// The kernel ignores an alias given at creation.
			if err := h.LinkSetAlias(br, mark); err != nil {
				return nil, fmt.Errorf("mark bridge %s: %w", name, err)
			}
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
	addrs, err := backend.AddrList(h, l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses of bridge %s: %w", name, err)
	}
	// ours reports whether a is an address of the cluster network: this
	// node's gateway, or that of an earlier subnet of the node.
	ours := func(a netip.Prefix) bool {
		return (sf.Network.IsValid() && sf.Network.Contains(a.Addr())) || (sf.IPv6Network.IsValid() && sf.IPv6Network.Contains(a.Addr()))
	}
	if alias := l.Attrs().Alias; alias != mark {
		if err := p.adoptBridge(h, l, c, addrs, ours); err != nil {
			return nil, err
		}
		log.WithField("network", c.Name).Info("marked the bridge as this network's (it was unmarked and held nothing of another's)")
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
			if !ours(got) {
				continue // someone else's address: not ours to remove
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

// adoptBridge marks the unmarked bridge l as network c.Name's, or refuses
// it (code 7, naming the bridge) when it is another's: marked by another
// weft network, carrying an alias of someone else, an address outside the
// cluster network, or a port that is not a weft veth.
func (p *Plugin) adoptBridge(h *netlink.Handle, l netlink.Link, c *Config, addrs []netlink.Addr, ours func(netip.Prefix) bool) error {
	name, alias := l.Attrs().Name, l.Attrs().Alias
	refuse := func(format string, a ...any) error {
		return cniErr(types.ErrInvalidNetworkConfig, "bridge %s %s: the plugin manages only a bridge it created, and never strips another's addresses; set \"bridge\" of network %q to another name", name, fmt.Sprintf(format, a...), c.Name)
	}
	if other, ok := strings.CutPrefix(alias, bridgeAliasPrefix); ok {
		return cniErr(types.ErrInvalidNetworkConfig, "bridge %s belongs to weft network %q, so network %q cannot use it (networks sharing a bridge would share its addresses and GC each other's pods): give network %q its own \"bridge\"", name, other, c.Name, c.Name)
	}
	if alias != "" {
		return refuse("is not weft's (its alias is %q)", alias)
	}
	for _, a := range addrs {
		got, ok := prefixOf(a.IPNet)
		if ok && !got.Addr().IsLinkLocalUnicast() && !ours(got) {
			return refuse("is not weft's (it carries %s, outside the cluster network)", got)
		}
	}
	links, err := backend.LinkList(h)
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	for _, port := range links {
		if a := port.Attrs(); a.MasterIndex == l.Attrs().Index && !isHostVethName(a.Name) {
			return refuse("is not weft's (%s is one of its ports)", a.Name)
		}
	}
	if err := h.LinkSetAlias(l, BridgeAlias(c.Name)); err != nil {
		return fmt.Errorf("mark bridge %s: %w", name, err)
	}
	return nil
}

// createVeth creates the veth pair: the host end named after the
// attachment, up, enslaved to the bridge, tagged with the attachment's
// alias, hairpin as configured; the other end named ifname directly in the
// container's namespace. An existing host end fails the ADD: its peer is in
// the pod. On error the pair is gone. ADD calls it only once the
// attachment's address record is stored (see Add).
func (p *Plugin) createVeth(hs *hostSide, args *skel.CmdArgs, mtu int, hairpin bool) error {
	hs.veth = HostVethName(args.ContainerID, args.IfName)
	hs.mac, hs.peer = randomMAC(), randomMAC()
	alias := VethAlias(args.ContainerID, args.IfName)
	peerIx, err := hs.rt.createVeth(vethSpec{
		name: hs.veth, mac: hs.mac, mtu: mtu, master: hs.bridge,
		peerName: args.IfName, peerMAC: hs.peer, peerNS: hs.podNS,
	})
	if err != nil {
		if !errors.Is(err, unix.EEXIST) {
			// One request: the kernel made the whole pair or nothing.
			return cniErr(CodeKernel, "%v", err)
		}
		old, lerr := backend.LinkByName(hs.h, hs.veth)
		if lerr != nil {
			return cniErr(CodeIfExists, "interface %s already exists in the container's network namespace %s", args.IfName, args.Netns)
		}
		if ownedBy(old, alias) {
			// Its peer lives in the pod: an earlier ADD of this attachment
			// (complete or interrupted) made it. The runtime must DEL first.
			return cniErr(CodeIfExists, "interface %s already exists for this container (host end %s): DEL it before adding it again", args.IfName, hs.veth)
		}
		return cniErr(CodeKernel, "host interface %s already exists and belongs to %q", hs.veth, old.Attrs().Alias)
	}
	testHook("BEFORE_ALIAS")
	if err := hs.rt.setPort(hs.veth, alias, hairpin); err != nil {
		hs.deleteVeth()
		return cniErr(CodeKernel, "%v", err)
	}
	if peerIx == 0 { // kernels before 6.3 do not echo the new link
		if peerIx, err = hs.podRt.linkIndex(args.IfName); err != nil {
			hs.deleteVeth()
			return cniErr(CodeKernel, "look up %s in the container: %v", args.IfName, err)
		}
	}
	hs.peerIx = peerIx
	return nil
}

// ownedBy reports whether host veth l belongs to the attachment with alias:
// it carries that alias, or none yet (an ADD killed before it set it).
func ownedBy(l netlink.Link, alias string) bool {
	return l.Attrs().Alias == alias || l.Attrs().Alias == ""
}

// configureContainer brings the container end up with its addresses and
// routes, in one batch on the socket prepareHost opened in the pod's
// namespace, and returns a result whose Interfaces[1] is that end
// (Interfaces[0] is left for the caller).
func configureContainer(c *Config, sf *subnet.SubnetFile, rec ipam.Record, hs *hostSide, ifname string) (*current.Result, error) {
	rt, idx := hs.podRt, hs.peerIx
	res := &current.Result{Interfaces: []*current.Interface{nil, {Name: ifname, Mac: hs.peer.String()}}}
	ifc := 1
	bt := rt.batch()
	bt.setUp(idx, "set "+ifname+" up")
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
		bt.addAddr(idx, addr, fmt.Sprintf("add address %s to %s", addr, ifname))
		res.IPs = append(res.IPs, &current.IPConfig{Interface: &ifc, Address: *ipNet(addr), Gateway: gw.AsSlice()})
		dst := fam.def
		if !c.IsDefaultGateway {
			if !fam.network.IsValid() || fam.network.Bits() >= fam.pool.Bits() {
				continue
			}
			dst = fam.network.Masked()
		}
		bt.addRoute(idx, dst, gw, fmt.Sprintf("add route %s via %s in the container", dst, gw))
		res.Routes = append(res.Routes, &types.Route{Dst: *ipNet(dst), GW: gw.AsSlice()})
	}
	// The kernel runs the messages in order: each route comes after the
	// address that makes its gateway reachable.
	if err := bt.exec(); err != nil {
		return nil, cniErr(CodeKernel, "%v", err)
	}
	return res, nil
}

// addSpoofEntries writes the pod record of the attachment (with the pod's
// identity, when the runtime gave one) and adds its
// anti-spoofing entries, in that order (see package antispoof).
func addSpoofEntries(c *Config, args *skel.CmdArgs, rec ipam.Record, hs *hostSide, pod subnet.PodIdentity) error {
	r := antispoof.Record{
		ContainerID: args.ContainerID, IfName: args.IfName, Port: hs.veth,
		MAC: hs.peer.String(), IPv4: rec.IPv4, IPv6: rec.IPv6, Pod: pod,
	}
	if err := antispoof.WriteRecord(c.DataDir, r); err != nil {
		return cniErr(types.ErrIOFailure, "%v", err)
	}
	traceStep("anti-spoofing record")
	if err := antispoof.AddPod(r); err != nil {
		return cniErr(CodeKernel, "%v", err)
	}
	return nil
}

// removeSpoofEntries removes the pod record of the attachment's port and
// then the port's anti-spoofing entries; none is no error. A record of
// another attachment (the port names collided) is left alone, with its
// entries. The caller closes the Removal (see [antispoof.Removal]).
func removeSpoofEntries(c *Config, containerID, ifname string) (*antispoof.Removal, error) {
	port := HostVethName(containerID, ifname)
	r, err := antispoof.ReadRecord(c.DataDir, port)
	known := &r
	switch {
	case err == nil && (r.ContainerID != containerID || r.IfName != ifname):
		return nil, nil
	case err != nil:
		known = nil
	}
	if err := antispoof.RemoveRecord(c.DataDir, port); err != nil {
		return nil, err
	}
	return antispoof.RemovePod(port, known)
}

// releaseHeld releases what a failing ADD held at the gate, logging a
// failure.
func (p *Plugin) releaseHeld(port, containerID string) {
	if _, err := gate.Release(port); err != nil {
		p.log().WithError(err).WithField("container", containerID).Warn("release the held addresses after a failed ADD")
	}
}

// undoSpoofEntries undoes addSpoofEntries of a failing ADD, logging a
// failure.
func (p *Plugin) undoSpoofEntries(c *Config, containerID, ifname string) {
	rm, err := removeSpoofEntries(c, containerID, ifname)
	rm.Close()
	if err != nil {
		p.log().WithError(err).WithField("container", containerID).Warn("remove anti-spoofing entries after a failed ADD")
	}
}

// release deletes the IPAM record of an attachment, logging a failure (the
// caller is already returning an error).
func (p *Plugin) release(c *Config, containerID, ifname string) {
	if err := releaseRecord(c, containerID, ifname); err != nil {
		p.log().WithError(err).WithField("container", containerID).Warn("release address after a failed ADD")
	}
}

// releaseRecord deletes the IPAM record of an attachment; none is no error.
func releaseRecord(c *Config, containerID, ifname string) error {
	st, err := ipam.Open(c.StoreDir())
	if err != nil {
		return err
	}
	defer st.Close()
	_, _, err = st.Release(containerID, ifname)
	return err
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
	// The port goes down first, so that nothing its pod sends passes
	// while its anti-spoofing entries are gone and it is not yet deleted.
	// The entries go before the veth, and the netlink socket is closed
	// after it, so that the kernel's release of the entries overlaps the
	// veth's delete (see antispoof.Removal).
	var rm *antispoof.Removal
	if !testNoAntispoof() {
		setHostVethDown(args.ContainerID, args.IfName)
		if rm, err = removeSpoofEntries(c, args.ContainerID, args.IfName); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if err := deleteHostVeth(args.ContainerID, args.IfName); err != nil {
		errs = append(errs, err.Error())
	}
	rm.Close()
	// Before the address goes back to the pool: a held element never
	// outlives its address's attachment.
	if _, err := gate.Release(HostVethName(args.ContainerID, args.IfName)); err != nil {
		errs = append(errs, err.Error())
	}
	if err := releaseRecord(c, args.ContainerID, args.IfName); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return cniErr(CodeKernel, "%s", strings.Join(errs, "; "))
	}
	return nil
}

// setHostVethDown sets the host end of the attachment's veth down, if it
// exists and is the attachment's (best effort: DEL deletes it next).
func setHostVethDown(containerID, ifname string) {
	l, err := backend.LinkByName(nil, HostVethName(containerID, ifname))
	if err == nil && ownedBy(l, VethAlias(containerID, ifname)) {
		_ = netlink.LinkSetDown(l)
	}
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
	// math/rand/v2's generator is seeded by the runtime: unique enough
	// for a MAC, and cheaper to start than crypto/rand.
	m := make(net.HardwareAddr, 6)
	v := rand.Uint64()
	for i := range m {
		m[i] = byte(v >> (8 * i))
	}
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
