// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2e

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Packet is a decoded IP packet seen by a [Capture].
type Packet struct {
	Src, Dst netip.Addr
	// Proto is the IP protocol (17 UDP, 6 TCP, 1 ICMP, 58 ICMPv6).
	Proto            int
	SrcPort, DstPort int
	// Payload is the transport payload (UDP/TCP data), when present.
	Payload []byte
	// Inner is the encapsulated packet when this one is VXLAN (UDP to a
	// port given to [Packet.DecodeVXLAN]).
	Inner *Packet
	// Ifindex is the interface the frame was seen on, and Outgoing
	// whether it was leaving through it (captures only).
	Ifindex  int
	Outgoing bool
}

func (p Packet) String() string {
	s := fmt.Sprintf("%s:%d > %s:%d proto %d", p.Src, p.SrcPort, p.Dst, p.DstPort, p.Proto)
	if p.Inner != nil {
		s += " [inner " + p.Inner.String() + "]"
	}
	return s
}

func decodeEthernet(b []byte) (Packet, bool) {
	etype := binary.BigEndian.Uint16(b[12:14])
	b = b[14:]
	if etype == 0x8100 && len(b) >= 4 { // one VLAN tag
		etype = binary.BigEndian.Uint16(b[2:4])
		b = b[4:]
	}
	switch etype {
	case 0x0800, 0x86dd:
		return decodeIP(b)
	}
	return Packet{}, false
}

func decodeIP(b []byte) (Packet, bool) {
	if len(b) < 1 {
		return Packet{}, false
	}
	var p Packet
	var l4 []byte
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return Packet{}, false
		}
		ihl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:4]))
		if ihl < 20 || total < ihl || len(b) < ihl {
			return Packet{}, false
		}
		if total > len(b) {
			total = len(b)
		}
		p.Src = netip.AddrFrom4([4]byte(b[12:16]))
		p.Dst = netip.AddrFrom4([4]byte(b[16:20]))
		p.Proto = int(b[9])
		if binary.BigEndian.Uint16(b[6:8])&0x1fff == 0 { // first fragment
			l4 = b[ihl:total]
		}
	case 6:
		if len(b) < 40 {
			return Packet{}, false
		}
		p.Src = netip.AddrFrom16([16]byte(b[8:24]))
		p.Dst = netip.AddrFrom16([16]byte(b[24:40]))
		p.Proto = int(b[6])
		end := 40 + int(binary.BigEndian.Uint16(b[4:6]))
		if end > len(b) {
			end = len(b)
		}
		l4 = b[40:end]
	default:
		return Packet{}, false
	}
	switch p.Proto {
	case 17:
		if len(l4) >= 8 {
			p.SrcPort = int(binary.BigEndian.Uint16(l4[0:2]))
			p.DstPort = int(binary.BigEndian.Uint16(l4[2:4]))
			p.Payload = append([]byte(nil), l4[8:]...)
		}
	case 6:
		if len(l4) >= 20 {
			p.SrcPort = int(binary.BigEndian.Uint16(l4[0:2]))
			p.DstPort = int(binary.BigEndian.Uint16(l4[2:4]))
			off := int(l4[12]>>4) * 4
			if off <= len(l4) {
				p.Payload = append([]byte(nil), l4[off:]...)
			}
		}
	}
	return p, true
}

// DecodeVXLAN sets p.Inner when p is UDP to port carrying a VXLAN frame
// with an IP packet inside, and reports whether it did.
func (p *Packet) DecodeVXLAN(port int) bool {
	if p.Proto != 17 || p.DstPort != port || len(p.Payload) < 8+14 {
		return false
	}
	if p.Payload[0]&0x08 == 0 { // the I flag: a valid VNI follows
		return false
	}
	inner, ok := decodeEthernet(p.Payload[8:])
	if !ok {
		return false
	}
	p.Inner = &inner
	return true
}

// VNI returns the VXLAN network identifier of a VXLAN packet.
func (p *Packet) VNI() int {
	if len(p.Payload) < 8 {
		return -1
	}
	return int(p.Payload[4])<<16 | int(p.Payload[5])<<8 | int(p.Payload[6])
}
