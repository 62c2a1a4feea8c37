// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

func prefixIPNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}

// pinger is a raw ICMP echo socket made inside a namespace.
type pinger struct {
	conn *icmp.PacketConn
	v6   bool
	id   int
}

func newPinger(ns NS, v6 bool) (*pinger, error) {
	p := &pinger{v6: v6, id: rand.IntN(0xffff)}
	err := ns.Do(func() error {
		var err error
		if v6 {
			p.conn, err = icmp.ListenPacket("ip6:ipv6-icmp", "::")
		} else {
			p.conn, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("icmp socket in %s: %w", ns.Name, err)
	}
	return p, nil
}

func (p *pinger) Close() error { return p.conn.Close() }

func (p *pinger) send(dst netip.Addr, seq int, payload []byte) error {
	var typ icmp.Type = ipv4.ICMPTypeEcho
	if p.v6 {
		typ = ipv6.ICMPTypeEchoRequest
	}
	m := icmp.Message{Type: typ, Body: &icmp.Echo{ID: p.id, Seq: seq & 0xffff, Data: payload}}
	b, err := m.Marshal(nil) // the kernel fills in the ICMPv6 checksum
	if err != nil {
		return err
	}
	_, err = p.conn.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()})
	return err
}

// recv reads until it gets an echo reply with our ID from dst (any seq
// when seq < 0) or the deadline passes. It returns the reply's sequence.
func (p *pinger) recv(dst netip.Addr, deadline time.Time) (int, error) {
	proto := 1
	if p.v6 {
		proto = 58
	}
	buf := make([]byte, 65536)
	p.conn.SetReadDeadline(deadline)
	for {
		n, from, err := p.conn.ReadFrom(buf)
		if err != nil {
			return 0, err
		}
		src, _ := netip.AddrFromSlice(from.(*net.IPAddr).IP)
		if src.Unmap() != dst {
			continue
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil {
			continue
		}
		if m.Type != ipv4.ICMPTypeEchoReply && m.Type != ipv6.ICMPTypeEchoReply {
			continue
		}
		e, ok := m.Body.(*icmp.Echo)
		if !ok || e.ID != p.id {
			continue
		}
		return e.Seq, nil
	}
}

// Ping sends one ICMP echo from namespace ns to dst and returns the round
// trip time, retrying within timeout (a first packet may wait for ARP).
func Ping(ns NS, dst netip.Addr, timeout time.Duration) (time.Duration, error) {
	p, err := newPinger(ns, dst.Is6())
	if err != nil {
		return 0, err
	}
	defer p.Close()
	deadline := time.Now().Add(timeout)
	for seq := 1; ; seq++ {
		start := time.Now()
		if err := p.send(dst, seq, []byte("weft-e2e")); err != nil {
			if time.Now().After(deadline) {
				return 0, fmt.Errorf("ping %s from %s: %w", dst, ns.Name, err)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		wait := start.Add(300 * time.Millisecond)
		if wait.After(deadline) {
			wait = deadline
		}
		for {
			got, err := p.recv(dst, wait)
			if err != nil {
				break
			}
			if got == seq {
				return time.Since(start), nil
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("ping %s from %s: no reply within %s", dst, ns.Name, timeout)
		}
	}
}

// Stream sends ICMP echoes from a namespace to a destination at a fixed
// interval and counts replies, to measure loss across an event (a weftd
// restart, an etcd outage).
type Stream struct {
	p        *pinger
	dst      netip.Addr
	interval time.Duration
	sent     atomic.Int64
	received atomic.Int64
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	// mu guards the following.
	mu      sync.Mutex
	pending map[int]time.Time
	maxGap  time.Duration
	lastRx  time.Time
}

// StartStream starts a stream of one echo per interval.
func StartStream(ns NS, dst netip.Addr, interval time.Duration) (*Stream, error) {
	p, err := newPinger(ns, dst.Is6())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Stream{p: p, dst: dst, interval: interval, cancel: cancel, pending: map[int]time.Time{}}
	s.wg.Add(2)
	go s.receive(ctx)
	go s.transmit(ctx)
	return s, nil
}

func (s *Stream) transmit(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for seq := 0; ; seq++ {
		s.mu.Lock()
		s.pending[seq&0xffff] = time.Now()
		s.mu.Unlock()
		s.sent.Add(1)
		s.p.send(s.dst, seq, []byte("weft-stream"))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Stream) receive(ctx context.Context) {
	defer s.wg.Done()
	for ctx.Err() == nil {
		seq, err := s.p.recv(s.dst, time.Now().Add(100*time.Millisecond))
		if err != nil {
			continue
		}
		now := time.Now()
		s.mu.Lock()
		if _, ok := s.pending[seq]; ok {
			delete(s.pending, seq)
			s.received.Add(1)
			if !s.lastRx.IsZero() && now.Sub(s.lastRx) > s.maxGap {
				s.maxGap = now.Sub(s.lastRx)
			}
			s.lastRx = now
		}
		s.mu.Unlock()
	}
}

// StreamResult is what a stream counted.
type StreamResult struct {
	Sent, Received int
	// MaxGap is the longest time between two replies.
	MaxGap time.Duration
}

// Lost is the number of echoes that got no reply.
func (r StreamResult) Lost() int { return r.Sent - r.Received }

func (r StreamResult) String() string {
	return fmt.Sprintf("%d sent, %d received, %d lost, longest gap %s", r.Sent, r.Received, r.Lost(), r.MaxGap.Round(time.Millisecond))
}

// Stop stops sending, waits up to a second for the last replies, and
// returns the counts.
func (s *Stream) Stop() StreamResult {
	s.cancel()
	s.wg.Wait()
	// Late replies: give the last echoes time to come back.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		n := len(s.pending)
		s.mu.Unlock()
		if n == 0 {
			break
		}
		seq, err := s.p.recv(s.dst, time.Now().Add(100*time.Millisecond))
		if err != nil {
			continue
		}
		s.mu.Lock()
		if _, ok := s.pending[seq]; ok {
			delete(s.pending, seq)
			s.received.Add(1)
		}
		s.mu.Unlock()
	}
	s.p.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	return StreamResult{Sent: int(s.sent.Load()), Received: int(s.received.Load()), MaxGap: s.maxGap}
}

// Server is a TCP or UDP echo server listening inside a namespace.
type Server struct {
	// Addr is the address it listens on.
	Addr netip.AddrPort
	ln   net.Listener
	pc   net.PacketConn
	wg   sync.WaitGroup

	// mu guards the following.
	mu      sync.Mutex
	peers   []netip.Addr // source addresses seen, in order
	streams []net.Conn
}

// ServeTCP starts a TCP echo server in ns on addr (port 0: any). Every
// connection's bytes are echoed back; the peer's address is recorded.
func ServeTCP(ns NS, addr netip.AddrPort) (*Server, error) {
	s := &Server{}
	err := ns.Do(func() error {
		var err error
		s.ln, err = net.Listen("tcp", addr.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen tcp %s in %s: %w", addr, ns.Name, err)
	}
	s.Addr = s.ln.Addr().(*net.TCPAddr).AddrPort()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.record(c.RemoteAddr())
			s.mu.Lock()
			s.streams = append(s.streams, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return s, nil
}

// ServeUDP starts a UDP echo server in ns on addr.
func ServeUDP(ns NS, addr netip.AddrPort) (*Server, error) {
	s := &Server{}
	err := ns.Do(func() error {
		var err error
		s.pc, err = net.ListenPacket("udp", addr.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen udp %s in %s: %w", addr, ns.Name, err)
	}
	s.Addr = s.pc.LocalAddr().(*net.UDPAddr).AddrPort()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, from, err := s.pc.ReadFrom(buf)
			if err != nil {
				return
			}
			s.record(from)
			s.pc.WriteTo(buf[:n], from)
		}
	}()
	return s, nil
}

func (s *Server) record(a net.Addr) {
	var ip netip.Addr
	switch a := a.(type) {
	case *net.TCPAddr:
		ip = a.AddrPort().Addr().Unmap()
	case *net.UDPAddr:
		ip = a.AddrPort().Addr().Unmap()
	}
	s.mu.Lock()
	s.peers = append(s.peers, ip)
	s.mu.Unlock()
}

// Peers returns the source addresses the server has seen, in order.
func (s *Server) Peers() []netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]netip.Addr(nil), s.peers...)
}

// Close stops the server and waits for its goroutines.
func (s *Server) Close() error {
	if s.ln != nil {
		s.ln.Close()
	}
	if s.pc != nil {
		s.pc.Close()
	}
	s.mu.Lock()
	for _, c := range s.streams {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// TCPEcho connects from ns to dst, sends payload and checks that it comes
// back unchanged.
func TCPEcho(ns NS, dst netip.AddrPort, payload []byte, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := ns.DialContext(ctx, "tcp", dst.String())
	if err != nil {
		return fmt.Errorf("tcp connect %s from %s: %w", dst, ns.Name, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(payload); err != nil {
		return fmt.Errorf("tcp write to %s: %w", dst, err)
	}
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("tcp read from %s: %w", dst, err)
	}
	if !bytes.Equal(got, payload) {
		return fmt.Errorf("tcp echo from %s differs", dst)
	}
	return nil
}

// UDPEcho sends payload from ns to dst and waits for the same bytes back,
// retrying every 200 ms within timeout.
func UDPEcho(ns NS, dst netip.AddrPort, payload []byte, timeout time.Duration) error {
	var c net.Conn
	err := ns.Do(func() error {
		var err error
		c, err = net.Dial("udp", dst.String())
		return err
	})
	if err != nil {
		return fmt.Errorf("udp socket to %s in %s: %w", dst, ns.Name, err)
	}
	defer c.Close()
	return udpRoundTrip(c, dst, payload, timeout)
}

func udpRoundTrip(c net.Conn, dst netip.AddrPort, payload []byte, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 65536)
	var lastErr error
	for time.Now().Before(deadline) {
		if _, err := c.Write(payload); err != nil {
			lastErr = err
			if errors.Is(err, unix.EMSGSIZE) {
				return fmt.Errorf("udp send to %s: %w", dst, err)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := c.Read(buf)
		if err != nil {
			lastErr = err
			if errors.Is(err, unix.EMSGSIZE) {
				return fmt.Errorf("udp to %s: %w", dst, err)
			}
			continue
		}
		if bytes.Equal(buf[:n], payload) {
			return nil
		}
	}
	return fmt.Errorf("udp echo %s: no reply within %s (last error: %v)", dst, timeout, lastErr)
}

// udpOverhead is the IP plus UDP header size for a family.
func udpOverhead(v6 bool) int {
	if v6 {
		return 40 + 8
	}
	return 20 + 8
}

// UDPEchoDF sends a UDP datagram whose IP packet is exactly size bytes
// from ns to a UDP echo server at dst with the don't-fragment bit set
// (IP_PMTUDISC_DO) and waits for it to come back. An error wrapping
// unix.EMSGSIZE means the packet was refused as too big (locally, or after
// an ICMP "fragmentation needed" / "packet too big").
func UDPEchoDF(ns NS, dst netip.AddrPort, size int, timeout time.Duration) error {
	v6 := dst.Addr().Is6()
	payload := make([]byte, size-udpOverhead(v6))
	for i := range payload {
		payload[i] = byte(i)
	}
	c, err := dialDF(ns, dst)
	if err != nil {
		return err
	}
	defer c.Close()
	return udpRoundTrip(c, dst, payload, timeout)
}

// dialDF opens a UDP socket in ns connected to dst with the don't-fragment
// bit set (path MTU discovery "do").
func dialDF(ns NS, dst netip.AddrPort) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := ns.Do(func() error {
		var err error
		c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		err = rc.Control(func(fd uintptr) {
			if dst.Addr().Is6() {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DO)
			} else {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO)
			}
		})
		return errors.Join(err, serr)
	})
	if err != nil {
		if c != nil {
			c.Close()
		}
		return nil, fmt.Errorf("udp DF socket to %s in %s: %w", dst, ns.Name, err)
	}
	return c, nil
}

// FragNeeded sends one DF UDP packet of exactly size bytes (IP header
// included) from ns to dst and waits for the ICMP "fragmentation needed"
// (IPv4) or "packet too big" (IPv6) that comes back from the path. It
// returns the MTU the ICMP message announces and the address that sent it.
// The packet must fit the sender's own interface, or the kernel refuses it
// before it leaves (see [UDPEchoDF]).
func FragNeeded(ns NS, dst netip.AddrPort, size int, timeout time.Duration) (mtu int, from netip.Addr, err error) {
	v6 := dst.Addr().Is6()
	listener, err := newPinger(ns, v6)
	if err != nil {
		return 0, netip.Addr{}, err
	}
	defer listener.Close()
	deadline := time.Now().Add(timeout)
	payload := make([]byte, size-udpOverhead(v6))
	proto := 1
	if v6 {
		proto = 58
	}
	buf := make([]byte, 65536)
	for time.Now().Before(deadline) {
		c, err := dialDF(ns, dst)
		if err != nil {
			return 0, netip.Addr{}, err
		}
		_, werr := c.Write(payload)
		c.Close()
		if werr != nil {
			return 0, netip.Addr{}, fmt.Errorf("send %d-byte DF packet from %s: %w", size, ns.Name, werr)
		}
		listener.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		for {
			n, src, err := listener.conn.ReadFrom(buf)
			if err != nil {
				break
			}
			m, err := icmp.ParseMessage(proto, buf[:n])
			if err != nil {
				continue
			}
			srcAddr, _ := netip.AddrFromSlice(src.(*net.IPAddr).IP)
			switch {
			case !v6 && m.Type == ipv4.ICMPTypeDestinationUnreachable && m.Code == 4:
				// RFC 1191: next-hop MTU in the low 16 bits of the
				// "unused" word, which x/net/icmp leaves in the raw
				// message.
				if n >= 8 {
					return int(binary.BigEndian.Uint16(buf[6:8])), srcAddr.Unmap(), nil
				}
			case v6 && m.Type == ipv6.ICMPTypePacketTooBig:
				if b, ok := m.Body.(*icmp.PacketTooBig); ok {
					return b.MTU, srcAddr, nil
				}
			}
		}
	}
	return 0, netip.Addr{}, fmt.Errorf("no ICMP fragmentation-needed for a %d-byte DF packet from %s to %s within %s", size, ns.Name, dst, timeout)
}

// IsMsgSize reports whether err says a packet was too big (EMSGSIZE).
func IsMsgSize(err error) bool {
	return errors.Is(err, unix.EMSGSIZE)
}
