// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package cni

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/cni/antispoof"
	"github.com/weftnet/weft/cni/gate"
	"github.com/weftnet/weft/cni/ipam"
)

// Check implements CNI CHECK: the container interface, its addresses and
// routes must match prevResult, prevResult's addresses must be the IPAM
// record's, and the host veth must be on the bridge.
func (p *Plugin) Check(args *skel.CmdArgs) error {
	c, err := parseArgs(args)
	if err != nil {
		return err
	}
	if c.RawPrevResult == nil {
		return cniErr(types.ErrInvalidNetworkConfig, "CHECK needs prevResult in the network config")
	}
	if err := version.ParsePrevResult(&c.PluginConf); err != nil {
		return cniErr(types.ErrDecodingFailure, "decode prevResult: %v", err)
	}
	prev, err := current.NewResultFromResult(c.PrevResult)
	if err != nil {
		return cniErr(types.ErrDecodingFailure, "convert prevResult: %v", err)
	}
	sf, err := readSubnetFile(c)
	if err != nil {
		return err
	}
	fail := func(format string, a ...any) error { return cniErr(CodeCheckFailed, format, a...) }

	st, err := ipam.Open(c.StoreDir())
	if err != nil {
		return cniErr(types.ErrIOFailure, "%v", err)
	}
	rec, ok, err := st.Get(args.ContainerID, args.IfName)
	st.Close()
	if err != nil {
		return cniErr(types.ErrIOFailure, "%v", err)
	}
	if !ok {
		return fail("no address record for container %s interface %s", args.ContainerID, args.IfName)
	}
	var recIPs, prevIPs []netip.Prefix
	for _, a := range []struct {
		ip   netip.Addr
		pool netip.Prefix
	}{{rec.IPv4, sf.Subnet}, {rec.IPv6, sf.IPv6Subnet}} {
		if !a.ip.IsValid() {
			continue
		}
		if !a.pool.IsValid() {
			return fail("recorded address %s is of a family the node's subnet file no longer has", a.ip)
		}
		if !a.pool.Contains(a.ip) {
			return fail("recorded address %s is outside the node's subnet %s", a.ip, a.pool.Masked())
		}
		recIPs = append(recIPs, netip.PrefixFrom(a.ip, a.pool.Bits()))
	}
	for _, ipc := range prev.IPs {
		pfx, ok := prefixOf(&ipc.Address)
		if !ok {
			return fail("prevResult has a bad address %v", ipc.Address)
		}
		prevIPs = append(prevIPs, pfx)
	}
	sortPrefixes(recIPs)
	sortPrefixes(prevIPs)
	if !slices.Equal(recIPs, prevIPs) {
		return fail("prevResult addresses %v differ from the recorded %v", prevIPs, recIPs)
	}

	// Host side.
	hostName := HostVethName(args.ContainerID, args.IfName)
	host, err := backend.LinkByName(nil, hostName)
	if err != nil {
		return fail("host veth %s: %v", hostName, err)
	}
	br, err := backend.LinkByName(nil, c.Bridge)
	if err != nil {
		return fail("bridge %s: %v", c.Bridge, err)
	}
	if host.Attrs().MasterIndex != br.Attrs().Index {
		return fail("host veth %s is not attached to bridge %s", hostName, c.Bridge)
	}
	if host.Attrs().Flags&net.FlagUp == 0 {
		return fail("host veth %s is down", hostName)
	}

	// Container side.
	podNS, err := openNetNS(args.Netns)
	if err != nil {
		return cniErr(types.ErrInvalidEnvironmentVariables, "CNI_NETNS %q: %v", args.Netns, err)
	}
	defer unix.Close(podNS)
	ch, err := netlink.NewHandleAt(vns.NsHandle(podNS), unix.NETLINK_ROUTE)
	if err != nil {
		return cniErr(CodeKernel, "netlink in %s: %v", args.Netns, err)
	}
	defer ch.Close()
	l, err := backend.LinkByName(ch, args.IfName)
	if err != nil {
		return fail("interface %s in the container: %v", args.IfName, err)
	}
	if _, ok := l.(*netlink.Veth); !ok {
		return fail("interface %s in the container is a %s, not a veth", args.IfName, l.Type())
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		return fail("interface %s in the container is down", args.IfName)
	}
	for _, i := range prev.Interfaces {
		if i.Name == args.IfName && i.Sandbox != "" && i.Mac != "" && !strings.EqualFold(i.Mac, l.Attrs().HardwareAddr.String()) {
			return fail("interface %s has MAC %s, prevResult says %s", args.IfName, l.Attrs().HardwareAddr, i.Mac)
		}
	}
	if err := checkSpoofEntries(c, args, rec, hostName, l.Attrs().HardwareAddr); err != nil {
		return err
	}
	// ADD returned, so weftd released the pod at the gate; a pod held
	// again (its addresses added by hand, or a stale element) is dropped.
	held, err := gate.Held(addrsOf(rec))
	if err != nil {
		return cniErr(CodeKernel, "network policy: %v", err)
	}
	if len(held) > 0 {
		return fail("network policy: %v held at the pod gate (nftables table %s): all of the pod's traffic is dropped until weftd releases it", held, gate.Table)
	}
	addrs, err := backend.AddrList(ch, l, netlink.FAMILY_ALL)
	if err != nil {
		return cniErr(CodeKernel, "list addresses of %s: %v", args.IfName, err)
	}
	for _, want := range recIPs {
		found := false
		for _, a := range addrs {
			if got, ok := prefixOf(a.IPNet); ok && got == want {
				found = true
			}
		}
		if !found {
			return fail("interface %s lacks address %s", args.IfName, want)
		}
	}
	routes, err := backend.RouteList(ch, l, netlink.FAMILY_ALL)
	if err != nil {
		return cniErr(CodeKernel, "list routes of %s: %v", args.IfName, err)
	}
	for _, want := range prev.Routes {
		found := false
		for _, r := range routes {
			if sameRoute(r, want) {
				found = true
			}
		}
		if !found {
			return fail("the container lacks route %s via %s on %s", want.Dst.String(), want.GW, args.IfName)
		}
	}
	return nil
}

// checkSpoofEntries checks the attachment's pod record against its IPAM
// record and the container's MAC, and that the kernel holds every
// anti-spoofing entry of it.
func checkSpoofEntries(c *Config, args *skel.CmdArgs, rec ipam.Record, port string, mac net.HardwareAddr) error {
	fail := func(format string, a ...any) error { return cniErr(CodeCheckFailed, format, a...) }
	pr, err := antispoof.ReadRecord(c.DataDir, port)
	if errors.Is(err, fs.ErrNotExist) {
		// Attached by a release without anti-spoofing (an upgrade): such
		// a pod has no record and its port is in no set, so its frames
		// are not checked and nothing of it can be missing. A record
		// removed by hand leaves the port unlisted at weftd's next resync.
		return nil
	}
	if err != nil {
		return fail("anti-spoofing: %v", err)
	}
	if pr.ContainerID != args.ContainerID || pr.IfName != args.IfName || pr.IPv4 != rec.IPv4 || pr.IPv6 != rec.IPv6 || !strings.EqualFold(pr.MAC, mac.String()) {
		return fail("anti-spoofing: pod record of %s (container %s/%s, MAC %s, %v %v) differs from the attachment (container %s/%s, MAC %s, %v %v)",
			port, pr.ContainerID, pr.IfName, pr.MAC, pr.IPv4, pr.IPv6, args.ContainerID, args.IfName, mac, rec.IPv4, rec.IPv6)
	}
	missing, intact, err := antispoof.Missing(pr)
	if err != nil {
		return cniErr(CodeKernel, "anti-spoofing: %v", err)
	}
	if len(missing) > 0 {
		return fail("anti-spoofing: nftables table bridge %s lacks %d entries of this pod, the first %s", antispoof.TableName, len(missing), missing[0])
	}
	if !intact {
		return fail("anti-spoofing: nftables table bridge %s lacks some of its chains or rules", antispoof.TableName)
	}
	return nil
}

func sameRoute(r netlink.Route, want *types.Route) bool {
	wd, ok := prefixOf(&want.Dst)
	if !ok {
		return false
	}
	var rd netip.Prefix
	if r.Dst == nil {
		rd = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if r.Family == netlink.FAMILY_V6 {
			rd = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
	} else if rd, ok = prefixOf(r.Dst); !ok {
		return false
	}
	if rd.Masked() != wd.Masked() {
		return false
	}
	if want.GW == nil {
		return true
	}
	return r.Gw != nil && r.Gw.Equal(want.GW)
}

func sortPrefixes(ps []netip.Prefix) {
	slices.SortFunc(ps, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
}

// GC implements CNI GC: every record of the network, and every weft host
// veth on the bridge that belongs to one of the network's attachments,
// whose attachment is not listed in cni.dev/valid-attachments (or the older
// cni.dev/attachments) is removed. A veth belongs to the network when its
// alias or its name is that of an attachment the network's store holds a
// record of: a weft-named veth of another network on the same bridge is
// left alone. ADD stores an attachment's record before it makes the veth,
// so the veth of an ADD killed at any point has one and goes here too.
// A record is removed only once its veth is gone; when the
// veth could not be deleted the record stays (its address is still in
// use) and the next GC tries again. GC carries on past failures and
// reports them all.
func (p *Plugin) GC(args *skel.CmdArgs) error {
	c, err := parseArgs(args)
	if err != nil {
		return err
	}
	validKey := map[string]bool{}
	for _, a := range c.Attachments {
		validKey[ipam.Key(a.ContainerID, a.IfName)] = true
	}
	var errs []error
	log := p.log().WithField("network", c.Name)

	// The store stays locked throughout: runtimes never run GC beside
	// ADD or DEL, and a record must not change while its veth goes.
	st, err := ipam.Open(c.StoreDir())
	if err != nil {
		return cniErr(CodeGC, "gc: %v", err)
	}
	defer st.Close()
	recs, err := st.List()
	if err != nil {
		return cniErr(CodeGC, "gc: %v", err)
	}
	haveKey := map[string]bool{}     // attachment keys of the records
	keyOfVeth := map[string]string{} // host veth name -> key, from readable records
	for _, r := range recs {
		k := ipam.KeyOfName(r.Name)
		haveKey[k] = true
		if r.Err == nil {
			keyOfVeth[HostVethName(r.Record.ContainerID, r.Record.IfName)] = k
		}
	}

	// Veths first: an address is released only once its veth is gone.
	kept := map[string]bool{} // keys whose veth could not be deleted
	br, err := backend.LinkByName(nil, c.Bridge)
	switch {
	case errors.As(err, new(netlink.LinkNotFoundError)):
	case err != nil:
		errs = append(errs, fmt.Errorf("look up bridge %s: %w", c.Bridge, err))
	default:
		links, err := backend.LinkList(nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("list links: %w", err))
		}
		for _, l := range links {
			a := l.Attrs()
			if _, ok := l.(*netlink.Veth); !ok || a.MasterIndex != br.Attrs().Index || !isHostVethName(a.Name) {
				continue
			}
			key, ok := keyOfVeth[a.Name]
			if i := strings.LastIndexByte(a.Alias, '/'); i > 0 { // <containerID>/<ifname>
				if k := ipam.Key(a.Alias[:i], a.Alias[i+1:]); haveKey[k] {
					key, ok = k, true
				}
			}
			if !ok || validKey[key] {
				continue // another network's, or valid
			}
			if err := netlink.LinkDel(l); err != nil && !errors.As(err, new(netlink.LinkNotFoundError)) && !errors.Is(err, unix.ENODEV) {
				errs = append(errs, fmt.Errorf("delete veth %s (its address record is kept for the next GC): %w", a.Name, err))
				kept[key] = true
				continue
			}
			log.WithField("veth", a.Name).WithField("attachment", a.Alias).Info("gc: removed stale veth")
		}
	}

	errs = append(errs, p.gcSpoofEntries(c, recs, validKey, kept)...)
	for _, r := range recs {
		k := ipam.KeyOfName(r.Name)
		if validKey[k] || kept[k] {
			continue
		}
		if err := st.Remove(r.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		log.WithField("record", r.Name).Info("gc: released stale address record")
	}
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return cniErr(CodeGC, "gc: %d failures: %s", len(errs), strings.Join(msgs, "; "))
	}
	return nil
}

// gcSpoofEntries removes the pod records and anti-spoofing entries of the
// stale attachments of recs (the network's IPAM records; those in kept
// still have their veth), and those of every port that no longer exists
// (whatever network it was of: a port that is gone carries no traffic).
// Records go before entries, as in DEL.
func (p *Plugin) gcSpoofEntries(c *Config, recs []ipam.Stored, validKey, kept map[string]bool) []error {
	var errs []error
	stale := map[string]bool{}
	for _, r := range recs {
		k := ipam.KeyOfName(r.Name)
		if r.Err != nil || validKey[k] || kept[k] {
			continue
		}
		stale[HostVethName(r.Record.ContainerID, r.Record.IfName)] = true
	}
	links, err := backend.LinkList(nil)
	if err != nil {
		return append(errs, fmt.Errorf("list links: %w", err))
	}
	exists := map[string]bool{}
	for _, l := range links {
		exists[l.Attrs().Name] = true
	}
	gone := func(port string) bool { return stale[port] || !exists[port] }
	podRecs, err := antispoof.ReadRecords(antispoof.RecordDir(c.DataDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	ports := map[string]bool{}
	for _, r := range podRecs.Good {
		ports[r.Port] = true
	}
	for port := range podRecs.Bad {
		ports[port] = true
	}
	for port := range ports {
		if !gone(port) {
			continue
		}
		if err := antispoof.RemoveRecord(c.DataDir, port); err != nil {
			errs = append(errs, err)
		}
	}
	removed, err := antispoof.RemoveStale(gone)
	if err != nil {
		errs = append(errs, err)
	}
	released, err := gate.ReleaseWhere(gone)
	if err != nil {
		errs = append(errs, err)
	}
	if len(released) > 0 {
		p.log().WithField("network", c.Name).WithField("addresses", len(released)).Info("gc: released addresses held for stale pods")
	}
	if len(removed) > 0 {
		p.log().WithField("network", c.Name).WithField("entries", len(removed)).Info("gc: removed stale anti-spoofing entries")
	}
	return errs
}
