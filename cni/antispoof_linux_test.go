// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package cni_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/cni"
	"github.com/weftnet/weft/cni/antispoof"
	"github.com/weftnet/weft/e2e/netnstest"
)

// The anti-spoofing tests send real frames. Three pods on one node:
//
//	      node namespace
//	  wbXXXXXX bridge 10.244.3.1/24 fd10:244:0:3::1/64   (sniffer: bridge)
//	     ├── weftAAAAAAAA ─── eth0 attacker  (raw AF_PACKET socket)
//	     ├── weftBBBBBBBB ─── eth0 other     (whose addresses it forges)
//	     └── weftCCCCCCCC ─── eth0 victim    (sniffer: eth0)
//
// A fourth port, not made by the plugin (an uplink), is not checked.
// The attacker writes whole Ethernet frames (so the kernel's own source
// selection plays no part) to the victim and to the node. A packet
// socket on the victim's eth0 and one on the bridge see every frame that
// gets through; each frame carries a random marker. Each forged frame is
// paired with a control frame of the same shape and the attacker's own
// addresses, which must arrive: a sniffer that saw nothing proves nothing.

// podInfo is what the test needs of an added pod.
type podInfo struct {
	ns   *netnstest.NS
	id   string
	port string
	mac  net.HardwareAddr
	ip4  netip.Addr
	ip6  netip.Addr
	ll   netip.Addr
}

func podOf(t *testing.T, ns *netnstest.NS, id string, res *current.Result) podInfo {
	t.Helper()
	p := podInfo{ns: ns, id: id, port: cni.HostVethName(id, "eth0")}
	mac, err := net.ParseMAC(res.Interfaces[1].Mac)
	if err != nil {
		t.Fatal(err)
	}
	p.mac = mac
	for _, ipc := range res.IPs {
		a, _ := netip.AddrFromSlice(ipc.Address.IP)
		if a.Unmap().Is4() {
			p.ip4 = a.Unmap()
		} else {
			p.ip6 = a
		}
	}
	p.ll = antispoof.LinkLocal([6]byte(mac))
	return p
}

// frame is a crafted Ethernet frame and what should become of it.
type frame struct {
	name   string
	data   []byte
	reason string // the drop counter it must raise; "" for a control frame
	at     string // "victim" or "node": where it would arrive
}

func TestAntiSpoofing(t *testing.T) {
	e := newEnv(t)
	l := e.confList("1.1.0", e.weftConf(nil))
	var pods []podInfo
	for _, name := range []string{"attacker", "other", "victim"} {
		ns := netnstest.NewNS(t, "weftcni-"+name[:3])
		id := "ctr-" + name
		res, err := e.add(l, runtimeConf(id, ns))
		if err != nil {
			t.Fatalf("ADD %s: %v", name, err)
		}
		pods = append(pods, podOf(t, ns, id, res))
	}
	att, oth, vic := pods[0], pods[1], pods[2]
	br, err := backend.LinkByName(e.nl, e.bridge)
	if err != nil {
		t.Fatal(err)
	}
	brMAC := br.Attrs().HardwareAddr
	gw4, gw6 := netip.MustParseAddr("10.244.3.1"), netip.MustParseAddr("fd10:244:0:3::1")

	// Let IPv6 settle (DAD of the link-local addresses) so that no frame
	// of the pods' own start-up lands in a counter the test reads.
	waitLinkLocal(t, pods)

	// The elements the plugin added: per pod its port, its MAC, its
	// IPv4, its IPv6 and its link-local address.
	var elems []antispoof.Element
	if err := e.inNode(func() (err error) { elems, err = antispoof.Elements(); return err }); err != nil {
		t.Fatal(err)
	}
	if len(elems) != 15 {
		t.Errorf("the table holds %d elements, want 15 (5 per pod): %v", len(elems), elems)
	}

	randomIP := netip.AddrFrom4([4]byte{172, 16 + byte(randByte()%16), randByte(), randByte() | 1})
	otherNode := netip.MustParseAddr("10.244.7.9")
	forgedMAC := net.HardwareAddr{0x02, 0x42, randByte(), randByte(), randByte(), randByte()}
	frames := []frame{
		{"udp4 control", udp4(att.mac, vic.mac, att.ip4, vic.ip4), "", "victim"},
		{"udp4 from another local pod's address", udp4(att.mac, vic.mac, oth.ip4, vic.ip4), "ipv4-saddr", "victim"},
		{"udp4 from another node's pod address", udp4(att.mac, vic.mac, otherNode, vic.ip4), "ipv4-saddr", "victim"},
		{"udp4 from a random address " + randomIP.String(), udp4(att.mac, vic.mac, randomIP, vic.ip4), "ipv4-saddr", "victim"},
		{"udp4 from a forged MAC", udp4(forgedMAC, vic.mac, att.ip4, vic.ip4), "ether-saddr", "victim"},
		{"udp4 from another pod's MAC", udp4(oth.mac, vic.mac, att.ip4, vic.ip4), "ether-saddr", "victim"},
		{"udp4 to the node from another pod's address", udp4(att.mac, brMAC, oth.ip4, gw4), "ipv4-saddr", "node"},
		{"udp4 control to the node", udp4(att.mac, brMAC, att.ip4, gw4), "", "node"},

		{"arp reply control", arpReply(att.mac, vic.mac, att.mac, att.ip4, vic.mac, vic.ip4), "", "victim"},
		{"arp reply claiming another pod's address", arpReply(att.mac, vic.mac, att.mac, oth.ip4, vic.mac, vic.ip4), "arp-spa", "victim"},
		{"arp reply with a forged sender MAC", arpReply(att.mac, vic.mac, forgedMAC, att.ip4, vic.mac, vic.ip4), "arp-sha", "victim"},
		{"arp reply to the node claiming another pod's address", arpReply(att.mac, brMAC, att.mac, oth.ip4, brMAC, gw4), "arp-spa", "node"},

		{"udp6 control", udp6(att.mac, vic.mac, att.ip6, vic.ip6), "", "victim"},
		{"udp6 control from the link-local address", udp6(att.mac, vic.mac, att.ll, vic.ll), "", "victim"},
		{"udp6 from another pod's address", udp6(att.mac, vic.mac, oth.ip6, vic.ip6), "ipv6-saddr", "victim"},
		{"udp6 from another pod's link-local address", udp6(att.mac, vic.mac, oth.ll, vic.ll), "ipv6-saddr", "victim"},
		{"udp6 from the unspecified address", udp6(att.mac, vic.mac, netip.IPv6Unspecified(), vic.ip6), "ipv6-unspecified", "victim"},
		{"neighbour advertisement control", na(att.mac, vic.mac, att.ip6, vic.ip6, att.ip6, att.mac), "", "victim"},
		{"neighbour advertisement for another pod's address", na(att.mac, vic.mac, att.ip6, vic.ip6, oth.ip6, att.mac), "nd-target", "victim"},
		{"neighbour advertisement with a forged link-layer address", na(att.mac, vic.mac, att.ip6, vic.ip6, att.ip6, forgedMAC), "nd-lladdr", "victim"},
		{"neighbour advertisement to the node for another pod's address", na(att.mac, brMAC, att.ll, gw6, oth.ip6, att.mac), "nd-target", "node"},
		{"router advertisement", ra(att.mac, vic.mac, att.ll, vic.ll), "router-advert", "victim"},
		{"vlan-tagged frame", vlanTagged(att.mac, vic.mac, udp4(att.mac, vic.mac, att.ip4, vic.ip4)), "ethertype", "victim"},
	}

	// A port that is not a pod's (an uplink, a legacy pod) is not
	// checked: the uplink's frames from any address get through.
	uplink := netnstest.NewNS(t, "weftcni-upl")
	upMAC := netnstest.Attach(t, e.node, e.bridge, uplink, "eth0").Attrs().HardwareAddr
	upFrames := []frame{
		{"udp4 from an uplink port, from any address", udp4(upMAC, vic.mac, randomIP, vic.ip4), "", "victim"},
	}

	vicSniff := sniff(t, vic.ns, "eth0")
	nodeSniff := sniff(t, e.node, e.bridge)
	var before, after map[string]uint64
	if err := e.inNode(func() (err error) { before, err = antispoof.Counters(); return err }); err != nil {
		t.Fatal(err)
	}
	// The bridge forwards on a new port once it has seen the port's
	// carrier, a link event a loaded machine can delay: a probe from the
	// uplink must reach the victim before the frames under test go out.
	probe := udp4(upMAC, vic.mac, randomIP, vic.ip4)
	for deadline := time.Now().Add(5 * time.Second); !vicSniff.saw(probe); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the uplink's bridge port forwarded no probe to the victim within 5 s")
		}
		sendRaw(t, uplink, "eth0", []frame{{name: "uplink probe", data: probe}})
	}
	sendRaw(t, att.ns, "eth0", frames)
	sendRaw(t, uplink, "eth0", upFrames)
	frames = append(frames, upFrames...)
	sniffers := map[string]*sniffer{"victim": vicSniff, "node": nodeSniff}
	// Every control frame arrives (within 5 s on a loaded machine), then
	// 300 ms more for the last dropped frames' way through the bridge.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if !slices.ContainsFunc(frames, func(f frame) bool { return f.reason == "" && !sniffers[f.at].saw(f.data) }) {
			break
		}
	}
	time.Sleep(300 * time.Millisecond)
	seen := map[string][][]byte{"victim": vicSniff.stop(), "node": nodeSniff.stop()}
	if err := e.inNode(func() (err error) { after, err = antispoof.Counters(); return err }); err != nil {
		t.Fatal(err)
	}

	want := map[string]uint64{}
	for _, f := range frames {
		arrived := slices.ContainsFunc(seen[f.at], func(rx []byte) bool { return bytes.Contains(rx, f.data[len(f.data)-16:]) })
		switch {
		case f.reason == "" && !arrived:
			t.Errorf("%s: control frame did not reach the %s", f.name, f.at)
		case f.reason != "" && arrived:
			t.Errorf("%s: reached the %s", f.name, f.at)
		}
		if f.reason != "" {
			want[f.reason] += copies
		}
	}
	for reason, n := range want {
		if got := after[reason] - before[reason]; got != n {
			t.Errorf("counter %q went up by %d, want %d", reason, got, n)
		}
	}
	t.Logf("drop counters after the test: %v", after)

	// The victims' own traffic is unaffected, both families, both ways.
	for _, p := range [][2]podInfo{{oth, vic}, {vic, oth}, {att, vic}} {
		exchange(t, p[0].ns, p[1].ns, p[1].ip4.String())
		exchange(t, p[0].ns, p[1].ns, p[1].ip6.String())
	}
}

// waitLinkLocal waits until every pod's link-local address is out of DAD
// and its router solicitations are sent.
func waitLinkLocal(t *testing.T, pods []podInfo) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range pods {
		for {
			h := p.ns.Netlink(t)
			l, err := backend.LinkByName(h, "eth0")
			if err != nil {
				t.Fatal(err)
			}
			addrs, err := backend.AddrList(h, l, unix.AF_INET6)
			if err != nil {
				t.Fatal(err)
			}
			ready := false
			for _, a := range addrs {
				ip, _ := netip.AddrFromSlice(a.IP)
				if ip == p.ll && a.Flags&unix.IFA_F_TENTATIVE == 0 {
					ready = true
				}
			}
			if ready {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: link-local %s not ready: %v", p.id, p.ll, addrs)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func randByte() byte {
	var b [1]byte
	_, _ = rand.Read(b[:])
	return b[0]
}

// marker returns 16 random bytes that make a frame recognisable.
func marker() []byte {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return b
}

func eth(dst, src net.HardwareAddr, typ uint16, payload []byte) []byte {
	b := make([]byte, 14, 14+len(payload))
	copy(b, dst)
	copy(b[6:], src)
	binary.BigEndian.PutUint16(b[12:], typ)
	return append(b, payload...)
}

func csum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

func udp4(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr) []byte {
	payload := marker()
	udp := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], 40000)
	binary.BigEndian.PutUint16(udp[2:], 40001)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	udp = append(udp, payload...)
	ip := make([]byte, 20, 20+len(udp))
	ip[0], ip[8], ip[9] = 0x45, 64, unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(udp)))
	s4, d4 := src.As4(), dst.As4()
	copy(ip[12:], s4[:])
	copy(ip[16:], d4[:])
	binary.BigEndian.PutUint16(ip[10:], csum(ip, 0))
	return eth(dstMAC, srcMAC, unix.ETH_P_IP, append(ip, udp...))
}

func arpReply(srcMAC, dstMAC, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	b := []byte{0, 1, 8, 0, 6, 4, 0, 2}
	b = append(b, sha...)
	s := spa.As4()
	b = append(b, s[:]...)
	b = append(b, tha...)
	d := tpa.As4()
	b = append(b, d[:]...)
	b = append(b, marker()...) // padding to the minimum frame, and a marker
	return eth(dstMAC, srcMAC, unix.ETH_P_ARP, b)
}

// ip6 wraps an upper-layer payload of protocol proto, filling in the
// checksum at csumOff of it.
func ip6(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, proto byte, hop byte, upper []byte, csumOff int) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(upper)))
	h[6], h[7] = proto, hop
	s, d := src.As16(), dst.As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	var pseudo uint32
	for i := 8; i < 40; i += 2 {
		pseudo += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	pseudo += uint32(len(upper)) + uint32(proto)
	binary.BigEndian.PutUint16(upper[csumOff:], csum(upper, pseudo))
	return eth(dstMAC, srcMAC, unix.ETH_P_IPV6, append(h, upper...))
}

func udp6(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr) []byte {
	payload := marker()
	udp := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], 40000)
	binary.BigEndian.PutUint16(udp[2:], 40001)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	udp = append(udp, payload...)
	return ip6(srcMAC, dstMAC, src, dst, unix.IPPROTO_UDP, 64, udp, 6)
}

// na is a neighbour advertisement (override, solicited) for target with a
// target link-layer address option lladdr, and a nonce option carrying
// the marker.
func na(srcMAC, dstMAC net.HardwareAddr, src, dst, target netip.Addr, lladdr net.HardwareAddr) []byte {
	b := []byte{136, 0, 0, 0, 0x60, 0, 0, 0}
	tg := target.As16()
	b = append(b, tg[:]...)
	b = append(b, 2, 1)
	b = append(b, lladdr...)
	b = append(b, 14, 3, 0, 0, 0, 0)
	b = append(b, marker()...)
	return ip6(srcMAC, dstMAC, src, dst, unix.IPPROTO_ICMPV6, 255, b, 2)
}

// ra is a router advertisement offering a default route, with a source
// link-layer address option and a nonce option carrying the marker.
func ra(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr) []byte {
	b := []byte{134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0}
	b = append(b, 1, 1)
	b = append(b, srcMAC...)
	b = append(b, 14, 3, 0, 0, 0, 0)
	b = append(b, marker()...)
	return ip6(srcMAC, dstMAC, src, dst, unix.IPPROTO_ICMPV6, 255, b, 2)
}

// vlanTagged puts inner's payload behind an 802.1Q tag (VLAN 5).
func vlanTagged(srcMAC, dstMAC net.HardwareAddr, inner []byte) []byte {
	b := []byte{0, 5}
	b = append(b, inner[12:]...) // inner ether type and payload
	return eth(dstMAC, srcMAC, 0x8100, b)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// copies is how many times sendRaw writes each frame.
const copies = 3

// sendRaw writes each frame copies times from a packet socket on ifname in
// ns.
func sendRaw(t *testing.T, ns *netnstest.NS, ifname string, frames []frame) {
	t.Helper()
	err := ns.Do(func() error {
		ifc, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		defer unix.Close(fd)
		to := &unix.SockaddrLinklayer{Ifindex: ifc.Index, Halen: 6}
		for _, f := range frames {
			for range copies {
				if err := unix.Sendto(fd, f.data, 0, to); err != nil {
					return fmt.Errorf("send %s: %w", f.name, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// sniffer collects every frame a packet socket on one interface receives.
type sniffer struct {
	fd      int
	stopped atomic.Bool
	done    chan struct{}
	mu      sync.Mutex // guards frames
	frames  [][]byte
}

func sniff(t *testing.T, ns *netnstest.NS, ifname string) *sniffer {
	t.Helper()
	s := &sniffer{done: make(chan struct{})}
	err := ns.Do(func() error {
		ifc, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		s.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		if err := unix.Bind(s.fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifc.Index}); err != nil {
			unix.Close(s.fd)
			return fmt.Errorf("bind packet socket: %w", err)
		}
		tv := unix.NsecToTimeval((50 * time.Millisecond).Nanoseconds())
		return unix.SetsockoptTimeval(s.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(s.done)
		buf := make([]byte, 65536)
		for !s.stopped.Load() {
			n, from, err := unix.Recvfrom(s.fd, buf, 0)
			if err != nil {
				continue // the receive timeout, or EINTR
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			s.mu.Lock()
			s.frames = append(s.frames, slices.Clone(buf[:n]))
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { s.stop() })
	return s
}

// saw reports whether a frame with data's last 16 bytes (its marker) has
// been received so far.
func (s *sniffer) saw(data []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.ContainsFunc(s.frames, func(rx []byte) bool { return bytes.Contains(rx, data[len(data)-16:]) })
}

// stop ends the capture and returns the frames received.
func (s *sniffer) stop() [][]byte {
	if !s.stopped.Swap(true) {
		<-s.done
		unix.Close(s.fd)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.frames
}

// TestAntiSpoofConcurrentAdd runs ADDs for different containers at once
// on a node that has no table yet, so that they race to create it and
// their element batches interleave: every pod ends with all its entries,
// and the table with exactly one copy of its rules (CHECK checks both).
func TestAntiSpoofConcurrentAdd(t *testing.T) {
	e := newEnv(t)
	l := e.confList("1.1.0", e.weftConf(nil))
	const n = 8
	rts := make([]*libcni.RuntimeConf, n)
	for i := range rts {
		rts[i] = runtimeConf(fmt.Sprintf("conc-%d", i), netnstest.NewNS(t, "weftcni-conc"))
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, rt := range rts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.add(l, rt)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("ADD %s: %v", rts[i].ContainerID, err)
		}
	}
	var elems []antispoof.Element
	if err := e.inNode(func() (err error) { elems, err = antispoof.Elements(); return err }); err != nil {
		t.Fatal(err)
	}
	if len(elems) != 5*n {
		t.Errorf("%d elements after %d concurrent ADDs, want %d", len(elems), n, 5*n)
	}
	for _, rt := range rts {
		if err := e.check(l, rt); err != nil {
			t.Errorf("CHECK %s: %v", rt.ContainerID, err)
		}
	}
	for _, rt := range rts {
		if err := e.del(l, rt); err != nil {
			t.Errorf("DEL %s: %v", rt.ContainerID, err)
		}
	}
	e.assertClean()
}

// TestAntiSpoofCheckDelGC: CHECK notices an entry deleted by hand, the
// reconcile weftd runs puts it back, DEL removes a pod's entries and GC
// those of a pod the runtime no longer lists, leaving the others.
func TestAntiSpoofCheckDelGC(t *testing.T) {
	e := newEnv(t)
	nft := netnstest.RequireTool(t, "nft", "nftables")
	l := e.confList("1.1.0", e.weftConf(nil))
	var pods []podInfo
	var rts []*libcni.RuntimeConf
	for i := range 3 {
		ns := netnstest.NewNS(t, "weftcni-chk")
		rt := runtimeConf(fmt.Sprintf("chk-%d", i), ns)
		res, err := e.add(l, rt)
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, podOf(t, ns, rt.ContainerID, res))
		rts = append(rts, rt)
	}
	count := func(port string) int {
		t.Helper()
		var elems []antispoof.Element
		if err := e.inNode(func() (err error) { elems, err = antispoof.Elements(); return err }); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, el := range elems {
			if el.Port == port {
				n++
			}
		}
		return n
	}

	// An element deleted by hand: CHECK fails naming it; the others pass.
	p := pods[0]
	if err := e.inNode(func() error {
		out, err := exec.Command(nft, "delete", "element", "bridge", antispoof.TableName, antispoof.SetIPv4,
			fmt.Sprintf(`{ "%s" . %s . %s }`, p.port, p.mac, p.ip4)).CombinedOutput()
		if err != nil {
			return fmt.Errorf("nft: %v: %s", err, out)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	assertCode(t, e.check(l, rts[0]), cni.CodeCheckFailed, p.ip4.String())
	if err := e.check(l, rts[1]); err != nil {
		t.Errorf("CHECK of an untouched pod: %v", err)
	}
	// weftd's reconcile repairs it.
	var res antispoof.Result
	if err := e.inNode(func() (err error) { res, err = antispoof.Reconcile(antispoof.RecordDir(e.dataDir)); return err }); err != nil {
		t.Fatal(err)
	}
	if len(res.Added) != 1 || len(res.Removed) != 0 || res.Added[0].IP != p.ip4 {
		t.Errorf("reconcile: added %v, removed %v; want only %s added", res.Added, res.Removed, p.ip4)
	}
	if err := e.check(l, rts[0]); err != nil {
		t.Errorf("CHECK after the reconcile: %v", err)
	}

	// DEL removes the pod's entries and record, and nothing else.
	if err := e.del(l, rts[0]); err != nil {
		t.Fatal(err)
	}
	if n := count(pods[0].port); n != 0 {
		t.Errorf("%d entries of a deleted pod remain", n)
	}
	if _, err := antispoof.ReadRecord(e.dataDir, pods[0].port); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("pod record after DEL: %v", err)
	}
	for _, q := range pods[1:] {
		if n := count(q.port); n != 5 {
			t.Errorf("%s has %d entries after another pod's DEL, want 5", q.port, n)
		}
	}

	// GC keeps the listed pod and removes the other.
	gcl := e.confList("1.1.0", e.weftConf(nil))
	if err := e.inNode(func() error {
		return e.cni.GCNetworkList(context.Background(), gcl, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: rts[1].ContainerID, IfName: "eth0"}}})
	}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if n := count(pods[2].port); n != 0 {
		t.Errorf("%d entries of a pod GC removed remain", n)
	}
	if n := count(pods[1].port); n != 5 {
		t.Errorf("the pod GC kept has %d entries, want 5", n)
	}
	if err := e.check(l, rts[1]); err != nil {
		t.Errorf("CHECK of the kept pod after GC: %v", err)
	}
	if err := e.del(l, rts[1]); err != nil {
		t.Fatal(err)
	}
	e.assertClean()
}
