// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2e

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Capture records every frame on every interface of a namespace with a raw
// AF_PACKET socket (no tcpdump needed). On the underlay namespace it sees
// each frame as it leaves one node's veth and enters the bridge.
type Capture struct {
	fd   int
	wg   sync.WaitGroup
	done chan struct{}

	// mu guards the following.
	mu      sync.Mutex
	packets []Packet
}

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

// StartCapture opens a capture on all interfaces of ns.
func StartCapture(ns NS) (*Capture, error) {
	c := &Capture{done: make(chan struct{})}
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		c.fd = fd
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("packet socket in %s: %w", ns.Name, err)
	}
	tv := unix.Timeval{Usec: 100000}
	if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(c.fd)
		return nil, fmt.Errorf("capture timeout: %w", err)
	}
	c.wg.Add(1)
	go c.loop()
	return c, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *Capture) loop() {
	defer c.wg.Done()
	buf := make([]byte, 65536)
	var stopAt time.Time
	for {
		if stopAt.IsZero() {
			select {
			case <-c.done:
				stopAt = time.Now()
			default:
			}
		} else if time.Since(stopAt) > 500*time.Millisecond {
			return // traffic never pauses: stop anyway
		}
		n, from, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			// A timeout means the queue is drained: stop now if asked to.
			// Packets queued before Stop are always read first.
			select {
			case <-c.done:
				return
			default:
			}
			continue
		}
		if n < 14 {
			continue
		}
		p, ok := decodeEthernet(buf[:n])
		if !ok {
			continue
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok {
			p.Ifindex = ll.Ifindex
			p.Outgoing = ll.Pkttype == unix.PACKET_OUTGOING
		}
		c.mu.Lock()
		c.packets = append(c.packets, p)
		c.mu.Unlock()
	}
}

// Stop ends the capture, after reading every packet already queued, and
// returns every IP packet seen.
func (c *Capture) Stop() []Packet {
	close(c.done)
	c.wg.Wait()
	unix.Close(c.fd)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.packets
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
