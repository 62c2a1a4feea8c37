// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package wireguard

import (
	"runtime/debug"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"
)

// The userspace device's memory is mostly packet buffers of 64 KiB (the
// library's MaxMessageSize: one per packet in flight, whatever its size),
// held in sync.Pools while traffic flows and, after a burst, until the
// garbage collector has run twice (a pool keeps a victim copy through one
// collection). An idle process allocates too little to start a collection,
// so without help the memory a burst took stays in the process until the
// next one. The device therefore counts the packets it moves and, once a
// busy device has gone quiet, collects and returns the memory to the OS.
// While traffic flows it forces nothing: a forced collection then would
// only empty the pools the next packets need.

const (
	// releaseTick is how often the device looks at its packet count.
	releaseTick = 500 * time.Millisecond
	// releaseQuiet is how long a busy device must stay quiet before its
	// memory is returned.
	releaseQuiet = time.Second
	// busyPackets is how many packets in one tick make the device busy;
	// quietPackets is the most a quiet tick may see (keepalives and
	// handshakes of many peers).
	busyPackets  = 2000
	quietPackets = 200
)

// countingTUN is the device's TUN, counting the packets read and written.
type countingTUN struct {
	tun.Device
	packets atomic.Uint64
}

func (c *countingTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := c.Device.Read(bufs, sizes, offset)
	c.packets.Add(uint64(n))
	return n, err
}

func (c *countingTUN) Write(bufs [][]byte, offset int) (int, error) {
	n, err := c.Device.Write(bufs, offset)
	c.packets.Add(uint64(n))
	return n, err
}

// releaser decides, from the packet count sampled every releaseTick, when
// the memory of a burst is returned. It is not safe for concurrent use.
type releaser struct {
	last     uint64
	busy     bool          // traffic since the last release
	quietFor time.Duration // how long the count has been (nearly) still
}

// tick takes the packet count now and reports whether to release.
func (r *releaser) tick(count uint64) bool {
	d := count - r.last
	r.last = count
	switch {
	case d >= busyPackets:
		r.busy, r.quietFor = true, 0
	case d > quietPackets:
		r.quietFor = 0
	default:
		r.quietFor += releaseTick
	}
	if r.busy && r.quietFor >= releaseQuiet {
		r.busy = false
		return true
	}
	return false
}

// idle reports whether the device is not in a burst.
func (r *releaser) idle() bool { return !r.busy }

// releaseMemory collects twice (the second frees what the pools kept as
// victims in the first) and returns the freed memory to the OS.
func releaseMemory() {
	debug.FreeOSMemory()
	debug.FreeOSMemory()
}
