// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package cni

import (
	"fmt"
	"net/netip"
	"time"
)

// KernelAdd sends, from the calling (warm) process and with the plugin's
// own netlink client, the kernel requests that any bridge plugin's ADD
// needs at the least: look up the bridge, create the veth pair (host end
// hostName up on the bridge, peer ifname in the namespace podNS), set the
// port's hairpin mode, open a socket in the pod's namespace, and bring the
// pod end up with each address and a default route via its gateway. It
// returns how long that took; the caller deletes the pair.
//
// The CNI benchmark uses it for the kernel half of the floor of an ADD.
func KernelAdd(bridge, hostName, ifname string, podNS int, mtu int, addrs []netip.Prefix, gws []netip.Addr) (time.Duration, error) {
	start := time.Now()
	rt, err := openRtnl()
	if err != nil {
		return 0, err
	}
	defer rt.close()
	br, err := rt.linkIndex(bridge)
	if err != nil {
		return 0, err
	}
	peerIx, err := rt.createVeth(vethSpec{
		name: hostName, mac: randomMAC(), mtu: mtu, master: int(br),
		peerName: ifname, peerMAC: randomMAC(), peerNS: podNS,
	})
	if err != nil {
		return 0, err
	}
	if err := rt.setPort(hostName, "", true); err != nil {
		return 0, err
	}
	prt, err := openRtnlIn(podNS)
	if err != nil {
		return 0, err
	}
	defer prt.close()
	if peerIx == 0 {
		if peerIx, err = prt.linkIndex(ifname); err != nil {
			return 0, err
		}
	}
	bt := prt.batch()
	bt.setUp(peerIx, "set "+ifname+" up")
	for i, a := range addrs {
		def := netip.MustParsePrefix("0.0.0.0/0")
		if a.Addr().Is6() {
			def = netip.MustParsePrefix("::/0")
		}
		bt.addAddr(peerIx, a, fmt.Sprint("add ", a))
		bt.addRoute(peerIx, def, gws[i], fmt.Sprint("add default route via ", gws[i]))
	}
	if err := bt.exec(); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}
