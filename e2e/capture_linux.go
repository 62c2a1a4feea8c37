// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2e

import (
	"fmt"
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
