// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package cni

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/cni/ipam"
)

// This file is a minimal rtnetlink client for ADD's writes. The netlink
// package sends one request per call and adds lookups of its own (creating
// a veth costs it a create, a get and a set-master round trip); ADD instead
// sends each side's requests as one batch: the kernel runs the messages of
// one sendmsg in order and acknowledges each. Dumps are not done here: they
// go through package backend's retrying wrappers.

// Constants of linux/veth.h and linux/rtnetlink.h that x/sys/unix lacks.
const (
	vethInfoPeer         = 1 // VETH_INFO_PEER
	rtextFilterSkipStats = 8 // RTEXT_FILTER_SKIP_STATS
)

// rtnl is a NETLINK_ROUTE socket bound to the namespace it was opened in.
type rtnl struct {
	fd  int
	seq uint32
	buf []byte
}

func openRtnl() (*rtnl, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	// Ask for the kernel's error text (extended ack) and for acks that do
	// not echo the request back. Both are optional.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	// Bind now: echoed messages need the socket's port id.
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind netlink socket: %w", err)
	}
	return &rtnl{fd: fd, buf: make([]byte, 32<<10)}, nil
}

// openRtnlIn opens a NETLINK_ROUTE socket in the network namespace nsFd:
// the socket keeps the namespace it was created in, so only its creation
// needs the thread switched there and back.
func openRtnlIn(nsFd int) (*rtnl, error) {
	runtime.LockOSThread()
	self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("open own network namespace: %w", err)
	}
	defer unix.Close(self)
	if err := unix.Setns(nsFd, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("enter network namespace: %w", err)
	}
	r, err := openRtnl()
	if serr := unix.Setns(self, unix.CLONE_NEWNET); serr != nil {
		// The thread is stuck in the pod's namespace: keep it locked so
		// that the runtime retires it instead of reusing it.
		if r != nil {
			r.close()
		}
		return nil, fmt.Errorf("return to own network namespace: %w", serr)
	}
	runtime.UnlockOSThread()
	return r, err
}

func (r *rtnl) close() {
	if r.fd >= 0 {
		unix.Close(r.fd)
		r.fd = -1
	}
}

// batch is a sequence of requests sent in one sendmsg.
type batch struct {
	r    *rtnl
	b    []byte
	seqs []uint32
	what []string // what each message does, for errors
	// echo receives the ifinfomsg index and attributes of RTM_NEWLINK
	// messages the kernel echoes (NLM_F_ECHO), keyed by sequence number.
	echo map[uint32][]byte
}

func (r *rtnl) batch() *batch {
	return &batch{r: r, b: make([]byte, 0, 1024)}
}

// msg starts a message; the returned offset is passed to end.
func (bt *batch) msg(typ, flags uint16, what string) int {
	bt.r.seq++
	off := len(bt.b)
	var h [unix.SizeofNlMsghdr]byte
	binary.NativeEndian.PutUint16(h[4:], typ)
	binary.NativeEndian.PutUint16(h[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK|flags)
	binary.NativeEndian.PutUint32(h[8:], bt.r.seq)
	bt.b = append(bt.b, h[:]...)
	bt.seqs = append(bt.seqs, bt.r.seq)
	bt.what = append(bt.what, what)
	return off
}

// end sets the length of the message started at off.
func (bt *batch) end(off int) {
	binary.NativeEndian.PutUint32(bt.b[off:], uint32(len(bt.b)-off))
}

func (bt *batch) raw(p []byte) { bt.b = append(bt.b, p...) }

// ifinfo appends a struct ifinfomsg.
func (bt *batch) ifinfo(index int32, flags, change uint32) {
	var m [unix.SizeofIfInfomsg]byte
	m[0] = unix.AF_UNSPEC
	binary.NativeEndian.PutUint32(m[4:], uint32(index))
	binary.NativeEndian.PutUint32(m[8:], flags)
	binary.NativeEndian.PutUint32(m[12:], change)
	bt.raw(m[:])
}

// attr appends an attribute (padded to 4 bytes).
func (bt *batch) attr(typ uint16, data []byte) {
	var h [4]byte
	binary.NativeEndian.PutUint16(h[0:], uint16(4+len(data)))
	binary.NativeEndian.PutUint16(h[2:], typ)
	bt.b = append(bt.b, h[:]...)
	bt.b = append(bt.b, data...)
	for len(bt.b)%4 != 0 {
		bt.b = append(bt.b, 0)
	}
}

func (bt *batch) attrU32(typ uint16, v uint32) {
	var d [4]byte
	binary.NativeEndian.PutUint32(d[:], v)
	bt.attr(typ, d[:])
}

func (bt *batch) attrString(typ uint16, s string) { bt.attr(typ, append([]byte(s), 0)) }

// nest starts a nested attribute; endNest closes it.
func (bt *batch) nest(typ uint16) int {
	off := len(bt.b)
	bt.attr(typ|unix.NLA_F_NESTED, nil)
	return off
}

func (bt *batch) endNest(off int) {
	binary.NativeEndian.PutUint16(bt.b[off:], uint16(len(bt.b)-off))
}

// exec sends the batch and waits for every message's acknowledgement. It
// returns the first failure, naming the request; the kernel still runs the
// messages after a failed one, so callers undo what the batch made.
func (bt *batch) exec() error {
	if len(bt.seqs) == 0 {
		return nil
	}
	r := bt.r
	if err := unix.Sendto(r.fd, bt.b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	pending := make(map[uint32]int, len(bt.seqs))
	for i, s := range bt.seqs {
		pending[s] = i
	}
	var first error
	for len(pending) > 0 {
		n, _, err := unix.Recvfrom(r.fd, r.buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("netlink receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(r.buf[:n])
		if err != nil {
			return fmt.Errorf("netlink receive: %w", err)
		}
		for _, m := range msgs {
			i, ok := pending[m.Header.Seq]
			if !ok {
				continue
			}
			switch m.Header.Type {
			case unix.RTM_NEWLINK:
				if bt.echo != nil {
					bt.echo[m.Header.Seq] = append([]byte(nil), m.Data...)
				}
			case unix.NLMSG_ERROR:
				delete(pending, m.Header.Seq)
				if err := ackError(m); err != nil && first == nil {
					first = fmt.Errorf("%s: %w", bt.what[i], err)
				}
			}
		}
	}
	return first
}

// ackError decodes an NLMSG_ERROR message: nil for an acknowledgement, the
// errno otherwise, with the kernel's extended-ack text when there is one.
func ackError(m syscall.NetlinkMessage) error {
	if len(m.Data) < 4 {
		return errors.New("short netlink ack")
	}
	code := int32(binary.NativeEndian.Uint32(m.Data))
	if code == 0 {
		return nil
	}
	errno := unix.Errno(-code)
	if m.Header.Flags&unix.NLM_F_ACK_TLVS == 0 {
		return errno
	}
	// Skip the echoed request: its header only with NETLINK_CAP_ACK (the
	// kernel sets NLM_F_CAPPED then), the whole request otherwise.
	off := 4 + unix.SizeofNlMsghdr
	if m.Header.Flags&unix.NLM_F_CAPPED == 0 && len(m.Data) >= 4+unix.SizeofNlMsghdr {
		off = 4 + int(binary.NativeEndian.Uint32(m.Data[4:]))
	}
	if off <= len(m.Data) {
		if v, ok := findAttr(m.Data[off:], unix.NLMSGERR_ATTR_MSG); ok {
			if msg := strings.TrimRight(string(v), "\x00"); msg != "" {
				return fmt.Errorf("%w (%s)", errno, msg)
			}
		}
	}
	return errno
}

// findAttr returns the value of the first attribute of type typ (flags
// ignored) in b, a sequence of netlink attributes.
func findAttr(b []byte, typ uint16) ([]byte, bool) {
	for off := 0; off+4 <= len(b); {
		l := int(binary.NativeEndian.Uint16(b[off:]))
		t := binary.NativeEndian.Uint16(b[off+2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if l < 4 || off+l > len(b) {
			return nil, false
		}
		if t == typ {
			return b[off+4 : off+l], true
		}
		off += (l + 3) &^ 3
	}
	return nil, false
}

// vethSpec is a veth pair to create: the host end in the socket's
// namespace, its peer in the namespace peerNS.
type vethSpec struct {
	name     string
	mac      net.HardwareAddr
	mtu      int
	master   int // bridge ifindex
	peerName string
	peerMAC  net.HardwareAddr
	peerNS   int // fd
}

// createVeth creates the pair in one request: the host end up, enslaved
// to the bridge, the peer (down) in its namespace. It returns the peer's
// ifindex in its namespace, or 0 when the kernel does not echo new links
// (before Linux 6.3).
func (r *rtnl) createVeth(s vethSpec) (peerIndex int32, err error) {
	bt := r.batch()
	bt.echo = map[uint32][]byte{}
	m := bt.msg(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ECHO, "create veth "+s.name)
	createSeq := r.seq
	bt.ifinfo(0, unix.IFF_UP, unix.IFF_UP)
	bt.attrString(unix.IFLA_IFNAME, s.name)
	bt.attrU32(unix.IFLA_MTU, uint32(s.mtu))
	bt.attr(unix.IFLA_ADDRESS, s.mac)
	bt.attrU32(unix.IFLA_MASTER, uint32(s.master))
	li := bt.nest(unix.IFLA_LINKINFO)
	bt.attrString(unix.IFLA_INFO_KIND, "veth")
	data := bt.nest(unix.IFLA_INFO_DATA)
	peer := bt.nest(vethInfoPeer)
	// Not up yet: the kernel opens the peer before it links the two ends,
	// and opening a veth without its peer fails (ENOTCONN).
	bt.ifinfo(0, 0, 0)
	bt.attrString(unix.IFLA_IFNAME, s.peerName)
	bt.attrU32(unix.IFLA_MTU, uint32(s.mtu))
	bt.attr(unix.IFLA_ADDRESS, s.peerMAC)
	bt.attrU32(unix.IFLA_NET_NS_FD, uint32(s.peerNS))
	bt.endNest(peer)
	bt.endNest(data)
	bt.endNest(li)
	bt.end(m)
	if err := bt.exec(); err != nil {
		return 0, err
	}
	if d := bt.echo[createSeq]; len(d) > unix.SizeofIfInfomsg {
		if b, ok := findAttr(d[unix.SizeofIfInfomsg:], unix.IFLA_LINK); ok && len(b) == 4 {
			return int32(binary.NativeEndian.Uint32(b)), nil
		}
	}
	return 0, nil
}

// setPort sets the alias of the host end (the kernel ignores IFLA_IFALIAS
// when it creates a link) and, with hairpin, the bridge port's hairpin
// mode, in one request. It is a separate request from the creation on
// purpose: the kernel runs every message of a batch even after one fails,
// and a creation that fails because another attachment's veth has the
// name must not be followed by a write to that veth.
func (r *rtnl) setPort(name, alias string, hairpin bool) error {
	bt := r.batch()
	m := bt.msg(unix.RTM_NEWLINK, 0, "set alias and hairpin of "+name)
	bt.ifinfo(0, 0, 0)
	bt.attrString(unix.IFLA_IFNAME, name)
	bt.attr(unix.IFLA_IFALIAS, []byte(alias))
	if hairpin {
		li := bt.nest(unix.IFLA_LINKINFO)
		sd := bt.nest(unix.IFLA_INFO_SLAVE_DATA)
		bt.attr(unix.IFLA_BRPORT_MODE, []byte{1})
		bt.endNest(sd)
		bt.endNest(li)
	}
	bt.end(m)
	return bt.exec()
}

// linkIndex returns the ifindex of the link called name (RTM_GETLINK, not a
// dump).
func (r *rtnl) linkIndex(name string) (int32, error) {
	bt := r.batch()
	bt.echo = map[uint32][]byte{}
	m := bt.msg(unix.RTM_GETLINK, 0, "look up "+name)
	seq := r.seq
	bt.ifinfo(0, 0, 0)
	bt.attrString(unix.IFLA_IFNAME, name)
	bt.attrU32(unix.IFLA_EXT_MASK, rtextFilterSkipStats)
	bt.end(m)
	if err := bt.exec(); err != nil {
		return 0, err
	}
	d := bt.echo[seq]
	if len(d) < unix.SizeofIfInfomsg {
		return 0, fmt.Errorf("look up %s: no answer", name)
	}
	return int32(binary.NativeEndian.Uint32(d[4:])), nil
}

// setUp appends an RTM_NEWLINK that sets link index up.
func (bt *batch) setUp(index int32, what string) {
	m := bt.msg(unix.RTM_NEWLINK, 0, what)
	bt.ifinfo(index, unix.IFF_UP, unix.IFF_UP)
	bt.end(m)
}

// addAddr appends an RTM_NEWADDR for p on link index to the batch.
func (bt *batch) addAddr(index int32, p netip.Prefix, what string) {
	m := bt.msg(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL, what)
	var ifa [unix.SizeofIfAddrmsg]byte
	ifa[0] = unix.AF_INET
	if p.Addr().Is6() {
		ifa[0] = unix.AF_INET6
		ifa[2] = unix.IFA_F_NODAD // the address is unique by allocation
	}
	ifa[1] = byte(p.Bits())
	binary.NativeEndian.PutUint32(ifa[4:], uint32(index))
	bt.raw(ifa[:])
	ip := p.Addr().AsSlice()
	bt.attr(unix.IFA_LOCAL, ip)
	bt.attr(unix.IFA_ADDRESS, ip)
	if p.Addr().Is4() && p.Bits() < 31 {
		bt.attr(unix.IFA_BROADCAST, ipam.LastAddr(p).AsSlice())
	}
	bt.end(m)
}

// addRoute appends an RTM_NEWROUTE for dst via gw out of link index (main
// table, protocol boot, as ip route add makes it).
func (bt *batch) addRoute(index int32, dst netip.Prefix, gw netip.Addr, what string) {
	m := bt.msg(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_EXCL, what)
	var rt [unix.SizeofRtMsg]byte
	rt[0] = unix.AF_INET
	if dst.Addr().Is6() {
		rt[0] = unix.AF_INET6
	}
	rt[1] = byte(dst.Bits())
	rt[4] = unix.RT_TABLE_MAIN
	rt[5] = unix.RTPROT_BOOT
	rt[6] = unix.RT_SCOPE_UNIVERSE
	rt[7] = unix.RTN_UNICAST
	bt.raw(rt[:])
	if dst.Bits() > 0 {
		bt.attr(unix.RTA_DST, dst.Masked().Addr().AsSlice())
	}
	bt.attr(unix.RTA_GATEWAY, gw.AsSlice())
	bt.attrU32(unix.RTA_OIF, uint32(index))
	bt.end(m)
}
