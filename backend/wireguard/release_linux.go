// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package wireguard

import (
	"os"
	"runtime/debug"
	"sync"
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
//
// Under load the resident heap follows the collector's goal, not the
// packets in flight: a buffer freed by a collection and handed out again
// is zeroed whole, so every 64 KiB the heap may grow to before the next
// collection becomes resident. With GOGC=100 the goal is twice the live
// heap (the readers' buffers and the packets in flight), which made the
// device's anonymous memory 1.5-1.9 times wireguard-go's. While a device is
// busy the collector therefore runs at busyGCPercent, and at the process's
// own setting again once the device goes quiet; TestBenchWireGuardMemory
// measures the memory, throughput and CPU of both. A GOGC set in the
// environment is the operator's choice and is left alone.

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
// While armed (the device idle) it also wakes the release loop as soon as
// busyPackets have moved since the loop's last tick, so that a burst is
// seen within milliseconds rather than at the next tick: the heap grows
// to the idle setting's goal within the first tick otherwise.
type countingTUN struct {
	tun.Device
	packets atomic.Uint64
	mark    atomic.Uint64 // packets at the loop's last tick
	armed   atomic.Bool
	kick    chan struct{} // capacity 1
}

func newCountingTUN(d tun.Device) *countingTUN {
	c := &countingTUN{Device: d, kick: make(chan struct{}, 1)}
	c.armed.Store(true)
	return c
}

func (c *countingTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := c.Device.Read(bufs, sizes, offset)
	c.count(n)
	return n, err
}

func (c *countingTUN) Write(bufs [][]byte, offset int) (int, error) {
	n, err := c.Device.Write(bufs, offset)
	c.count(n)
	return n, err
}

func (c *countingTUN) count(n int) {
	v := c.packets.Add(uint64(n))
	if c.armed.Load() && v-c.mark.Load() >= busyPackets && c.armed.CompareAndSwap(true, false) {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
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

// busyGCPercent is the collector's GOGC while a device is busy (0: leave
// the collector alone). A variable so that the bench can measure others.
var busyGCPercent = 25

// busyGC lowers the collector's GOGC while at least one device is busy.
var busyGC struct {
	mu    sync.Mutex
	busy  int // devices busy
	saved int // the GOGC to restore when none is
	set   bool
}

// setBusy records one device becoming busy (true) or quiet (false); calls
// for one device alternate, starting with true.
func setBusy(busy bool) {
	busyGC.mu.Lock()
	defer busyGC.mu.Unlock()
	if busy {
		busyGC.busy++
		if busyGC.busy == 1 && busyGCPercent > 0 && os.Getenv("GOGC") == "" {
			busyGC.saved, busyGC.set = debug.SetGCPercent(busyGCPercent), true
		}
		return
	}
	busyGC.busy--
	if busyGC.busy == 0 && busyGC.set {
		debug.SetGCPercent(busyGC.saved)
		busyGC.set = false
	}
}

// releaseMemory collects twice (the second frees what the pools kept as
// victims in the first) and returns the freed memory to the OS.
func releaseMemory() {
	debug.FreeOSMemory()
	debug.FreeOSMemory()
}
