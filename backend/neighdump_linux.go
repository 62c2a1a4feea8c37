// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package backend

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NeighDumper reads neighbour and FDB tables one entry at a time. The
// netlink package's NeighList collects a whole dump, every kernel message
// and every parsed entry, before it returns: at thousands of peers that
// was a third of what a VXLAN resync allocated, all of it alive at once.
// A NeighDumper hands each entry to a callback as it is read and keeps
// nothing.
//
// It owns a netlink socket, opened in the network namespace of the thread
// that calls [NewNeighDumper] (the netlink package's Handle does not lend
// its sockets out). Dumps on one NeighDumper must not run concurrently.
type NeighDumper struct {
	sh *nl.SocketHandle
}

// dumpReceiveTimeout bounds the wait for one part of a dump: the kernel
// answers at once, so hitting it means something is badly wrong.
const dumpReceiveTimeout = 10 * time.Second

// NewNeighDumper opens a NeighDumper in the calling thread's network
// namespace; lock the thread (runtime.LockOSThread) if it matters which.
func NewNeighDumper() (*NeighDumper, error) {
	s, err := nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	tv := unix.NsecToTimeval(dumpReceiveTimeout.Nanoseconds())
	if err := s.SetReceiveTimeout(&tv); err != nil {
		s.Close()
		return nil, fmt.Errorf("set netlink receive timeout: %w", err)
	}
	return &NeighDumper{sh: &nl.SocketHandle{Socket: s}}, nil
}

// Close closes the socket. It is idempotent.
func (d *NeighDumper) Close() {
	if d != nil && d.sh != nil {
		d.sh.Close()
		d.sh = nil
	}
}

// NeighEntry is one entry of a neighbour or FDB dump. MAC points into the
// kernel's message: it is valid only during the callback it is given to.
type NeighEntry struct {
	Family    int
	LinkIndex int
	State     uint16
	Flags     uint8
	// IP is the neighbour's address (for an FDB entry, the remote VTEP's),
	// invalid when the entry has none.
	IP  netip.Addr
	MAC []byte
}

// Each calls see for every entry of the neighbour table of family
// (netlink.FAMILY_V4, FAMILY_V6, FAMILY_ALL for both, or unix.AF_BRIDGE for
// the FDB) on the link
// with index linkIndex (0: every link). A dump the kernel interrupts
// because the table changed is started over, at most dumpAttempts times,
// calling reset before each attempt (so the caller can forget what the
// interrupted one showed).
func (d *NeighDumper) Each(linkIndex, family int, reset func(), see func(*NeighEntry)) error {
	if d == nil || d.sh == nil {
		return errors.New("list neighbours: dumper closed")
	}
	var err error
	for range dumpAttempts {
		reset()
		err = d.dump(linkIndex, family, see)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return err
		}
	}
	return fmt.Errorf("list neighbours: dump interrupted %d times: %w", dumpAttempts, err)
}

func (d *NeighDumper) dump(linkIndex, family int, see func(*NeighEntry)) error {
	req := &nl.NetlinkRequest{
		NlMsghdr: unix.NlMsghdr{
			Len:   unix.SizeofNlMsghdr,
			Type:  unix.RTM_GETNEIGH,
			Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP,
		},
		Sockets: map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: d.sh},
	}
	req.AddData(&netlink.Ndmsg{Family: uint8(family), Index: uint32(linkIndex)})
	var e NeighEntry
	err := req.ExecuteIter(unix.NETLINK_ROUTE, unix.RTM_NEWNEIGH, func(m []byte) bool {
		if !parseNeigh(m, &e) {
			return true // not an entry we can read: skip it, as NeighList does
		}
		if (linkIndex != 0 && e.LinkIndex != linkIndex) || (family != netlink.FAMILY_ALL && e.Family != family) {
			return true
		}
		see(&e)
		return true
	})
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("list neighbours: %w", err)
	}
	return err
}

// ndmsgLen is the size of struct ndmsg, already a multiple of 4.
const ndmsgLen = 12

// parseNeigh reads an RTM_NEWNEIGH message (without its netlink header)
// into e: the ndmsg fields and the NDA_DST and NDA_LLADDR attributes. It
// reports false for a message too short or with a malformed attribute.
func parseNeigh(m []byte, e *NeighEntry) bool {
	*e = NeighEntry{}
	if len(m) < ndmsgLen {
		return false
	}
	ne := binary.NativeEndian
	e.Family = int(m[0])
	e.LinkIndex = int(int32(ne.Uint32(m[4:8])))
	e.State = ne.Uint16(m[8:10])
	e.Flags = m[10]
	for a := m[ndmsgLen:]; len(a) >= unix.SizeofRtAttr; {
		l := int(ne.Uint16(a[0:2]))
		if l < unix.SizeofRtAttr || l > len(a) {
			return false
		}
		v := a[unix.SizeofRtAttr:l]
		switch ne.Uint16(a[2:4]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER) {
		case unix.NDA_DST:
			ip, ok := netip.AddrFromSlice(v)
			if !ok {
				return false
			}
			e.IP = ip.Unmap()
		case unix.NDA_LLADDR:
			e.MAC = v
		}
		next := (l + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1)
		if next >= len(a) {
			break
		}
		a = a[next:]
	}
	return true
}
