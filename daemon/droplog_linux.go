// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/daemon/policy/nft"
)

// nfnetlink_log (NFLOG) message and attribute numbers, from
// linux/netfilter/nfnetlink_log.h.
const (
	nfnlSubsysULOG      = 4
	nfulnlMsgPacket     = 0
	nfulnlMsgConfig     = 1
	nfulaCfgCmd         = 1
	nfulaCfgMode        = 2
	nfulaCfgQThresh     = 5
	nfulnlCfgCmdBind    = 1
	nfulnlCopyPacket    = 2
	nfulaPayload        = 9
	nfulaPrefix         = 10
	dropLogReadBuffer   = 1 << 20
	dropLogPollInterval = 250 * time.Millisecond
)

// readDropLog binds NFLOG group in the calling process's network
// namespace and hands each packet logged to it to l, until ctx is done
// (nil) or the socket fails. Memory is bounded by the socket's receive
// buffer: when l falls behind, the kernel drops log messages (ENOBUFS),
// never the reader.
func readDropLog(ctx context.Context, group uint16, l *dropLogger) error {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return fmt.Errorf("open nfnetlink socket: %w", err)
	}
	defer c.Close()
	if err := c.SetReadBuffer(dropLogReadBuffer); err != nil {
		return fmt.Errorf("set the nfnetlink socket's receive buffer: %w", err)
	}
	// One message binds the group and configures it: copy the packet's
	// first bytes, flush each packet at once.
	mode := make([]byte, 6)
	binary.BigEndian.PutUint32(mode, nft.DropLogSnaplen)
	mode[4] = nfulnlCopyPacket
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: nfulaCfgCmd, Data: []byte{nfulnlCfgCmdBind}},
		{Type: nfulaCfgMode, Data: mode},
		{Type: nfulaCfgQThresh, Data: binary.BigEndian.AppendUint32(nil, 1)},
	})
	if err != nil {
		return err
	}
	req := netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysULOG<<8 | nfulnlMsgConfig), Flags: netlink.Request | netlink.Acknowledge},
		Data:   append([]byte{unix.AF_UNSPEC, 0, byte(group >> 8), byte(group)}, attrs...),
	}
	// Execute would take a logged packet arriving before the
	// acknowledgement for a bad reply: the loop below reads both.
	if _, err := c.Send(req); err != nil {
		return fmt.Errorf("bind NFLOG group %d: %w", group, err)
	}
	lost := false
	for ctx.Err() == nil {
		if err := c.SetReadDeadline(time.Now().Add(dropLogPollInterval)); err != nil {
			return fmt.Errorf("nfnetlink socket: %w", err)
		}
		msgs, err := c.Receive()
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			continue
		case errors.Is(err, unix.ENOBUFS):
			// The kernel dropped log messages: the socket buffer was full.
			l.overruns.Inc()
			if !lost {
				l.log.Warn("the drop log fell behind: the kernel dropped log messages")
				lost = true
			}
			continue
		case err != nil:
			return fmt.Errorf("NFLOG group %d: %w", group, err)
		}
		now := time.Now()
		for _, m := range msgs {
			if m.Header.Type != netlink.HeaderType(nfnlSubsysULOG<<8|nfulnlMsgPacket) || len(m.Data) < 4 {
				continue // the bind's acknowledgement
			}
			p, ok := decodeNFLOG(m.Data[4:])
			if ok {
				l.packet(p, now)
			}
		}
	}
	return nil
}

// decodeNFLOG reads the prefix and the packet of one NFLOG message's
// attributes.
func decodeNFLOG(b []byte) (droppedPacket, bool) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return droppedPacket{}, false
	}
	var prefix string
	var payload []byte
	for ad.Next() {
		switch ad.Type() {
		case nfulaPrefix:
			prefix = ad.String()
		case nfulaPayload:
			payload = ad.Bytes()
		}
	}
	if ad.Err() != nil || payload == nil {
		return droppedPacket{}, false
	}
	p, err := parseDropped(payload)
	if err != nil {
		return droppedPacket{}, false
	}
	p.rule = prefix
	return p, true
}
