// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package wireguard

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/e2e/netnstest"
)

// capture records every frame seen on every interface of a namespace with a
// raw AF_PACKET socket (no tcpdump needed).
type capture struct {
	fd   int
	wg   sync.WaitGroup
	stop chan struct{}

	// mu guards the following.
	mu     sync.Mutex
	frames [][]byte
}

func startCapture(t testing.TB, ns *netnstest.NS) *capture {
	t.Helper()
	c := &capture{stop: make(chan struct{})}
	must(t, ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		c.fd = fd
		return err
	}), "packet socket")
	tv := unix.Timeval{Usec: 50000}
	must(t, unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv), "capture timeout")
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		buf := make([]byte, 65536)
		for {
			select {
			case <-c.stop:
				return
			default:
			}
			n, _, err := unix.Recvfrom(c.fd, buf, 0)
			if err != nil || n <= 0 {
				continue
			}
			c.mu.Lock()
			c.frames = append(c.frames, bytes.Clone(buf[:n]))
			c.mu.Unlock()
		}
	}()
	t.Cleanup(c.close)
	return c
}

func (c *capture) close() {
	select {
	case <-c.stop:
		return
	default:
	}
	close(c.stop)
	c.wg.Wait()
	unix.Close(c.fd)
}

// Frames stops the capture and returns what it saw.
func (c *capture) Frames() [][]byte {
	c.close()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frames
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// ipFrame is the part of an Ethernet frame the encryption test looks at.
type ipFrame struct {
	ethertype        uint16
	src, dst         netip.Addr
	proto            int
	srcPort, dstPort int
}

func (f ipFrame) String() string {
	return fmt.Sprintf("ethertype %#04x %s:%d > %s:%d proto %d", f.ethertype, f.src, f.srcPort, f.dst, f.dstPort, f.proto)
}

// parseFrame decodes Ethernet + IPv4/IPv6 + UDP/TCP ports (no IPv6
// extension headers: the test traffic has none).
func parseFrame(b []byte) (ipFrame, bool) {
	if len(b) < 14 {
		return ipFrame{}, false
	}
	f := ipFrame{ethertype: binary.BigEndian.Uint16(b[12:14])}
	p := b[14:]
	var l4 []byte
	switch f.ethertype {
	case unix.ETH_P_IP:
		if len(p) < 20 {
			return f, false
		}
		ihl := int(p[0]&0x0f) * 4
		f.proto = int(p[9])
		f.src = netip.AddrFrom4([4]byte(p[12:16]))
		f.dst = netip.AddrFrom4([4]byte(p[16:20]))
		if len(p) >= ihl {
			l4 = p[ihl:]
		}
	case unix.ETH_P_IPV6:
		if len(p) < 40 {
			return f, false
		}
		f.proto = int(p[6])
		f.src = netip.AddrFrom16([16]byte(p[8:24]))
		f.dst = netip.AddrFrom16([16]byte(p[24:40]))
		l4 = p[40:]
	default:
		return f, true
	}
	if (f.proto == unix.IPPROTO_UDP || f.proto == unix.IPPROTO_TCP) && len(l4) >= 4 {
		f.srcPort = int(binary.BigEndian.Uint16(l4[0:2]))
		f.dstPort = int(binary.BigEndian.Uint16(l4[2:4]))
	}
	return f, true
}
