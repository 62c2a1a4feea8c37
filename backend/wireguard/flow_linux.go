// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package wireguard

import (
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"
)

// The library moves each packet in a 64 KiB buffer and queues packets
// between its readers and writers without a bound but the queues' length
// in batches: the TUN reader queues packets for encryption and the UDP
// send, the UDP readers queue packets for decryption and the TUN write,
// each as fast as the kernel hands them over. Under a saturating TCP
// stream the sending node holds what TCP keeps in flight, and the
// receiving node what the UDP socket delivers faster than the TUN takes
// it, many times over. A flowGate per direction puts back-pressure into
// that path: a reader waits while more than flowBound packets it read
// have not been written out yet. The packets wait in the kernel instead
// (the TUN's queue, the UDP socket's buffer), where TCP meets a full queue
// and slows down as it does on any interface.
//
// Packets the device drops (no session yet, a peer removed, handshake
// messages, keepalives) are never written out, so the count alone could
// stay above the bound for good: a reader that has waited flowWait without
// progress forgets the count and reads on. A lost packet therefore costs
// at most one flowWait of reading, never a wedged device.
//
// The gates are used with TUN offloads only: without them every read
// moves a single packet and the queues stay short (see startUserDevice).

var (
	// flowBound is the most packets read and not yet written out, per
	// direction, before the readers wait (0: no bound); a read may take a
	// batch beyond it. Chosen by TestBenchWireGuardFlowBound: 32 held the
	// lowest RSS without losing throughput (see docs/backends/wireguard.md).
	// A variable so that the bench can measure other bounds.
	flowBound int64 = 32
	// flowWait is how long a reader waits for progress before it
	// forgets the count.
	flowWait = 5 * time.Millisecond
)

// flowGate counts the packets of one direction between its readers and
// its writers. It is safe for concurrent use; a nil gate admits all.
type flowGate struct {
	bound    int64
	wait     time.Duration
	inflight atomic.Int64
	waiting  atomic.Int32
	forgiven atomic.Uint64 // how often a reader gave up waiting

	mu       sync.Mutex
	progress chan struct{} // closed, and replaced, when packets go out
}

func newFlowGate(bound int64, wait time.Duration) *flowGate {
	if bound <= 0 {
		return nil
	}
	return &flowGate{bound: bound, wait: wait, progress: make(chan struct{})}
}

// admit returns when a reader may read: at most bound packets in flight,
// or wait has passed without progress.
func (g *flowGate) admit() {
	if g == nil || g.inflight.Load() <= g.bound {
		return
	}
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	var timer *time.Timer
	for {
		g.mu.Lock()
		ch := g.progress
		g.mu.Unlock()
		if g.inflight.Load() <= g.bound {
			break
		}
		if timer == nil {
			timer = time.NewTimer(g.wait)
		} else {
			timer.Reset(g.wait)
		}
		select {
		case <-ch:
		case <-timer.C:
			g.inflight.Store(0)
			g.forgiven.Add(1)
			return
		}
	}
	if timer != nil {
		timer.Stop()
	}
}

// forgivenCount is how often a reader gave up waiting.
func (g *flowGate) forgivenCount() uint64 {
	if g == nil {
		return 0
	}
	return g.forgiven.Load()
}

// read counts n packets read.
func (g *flowGate) read(n int) {
	if g != nil && n > 0 {
		g.inflight.Add(int64(n))
	}
}

// done counts n packets written out (or given up); the count does not go
// below zero (handshakes and keepalives are sent without being read from
// the TUN).
func (g *flowGate) done(n int) {
	if g == nil {
		return
	}
	for {
		v := g.inflight.Load()
		if g.inflight.CompareAndSwap(v, max(v-int64(n), 0)) {
			break
		}
	}
	if g.waiting.Load() > 0 {
		g.mu.Lock()
		close(g.progress)
		g.progress = make(chan struct{})
		g.mu.Unlock()
	}
}

// flowBind is the device's UDP bind: its sends end the outbound gate's
// packets, its receive functions wait for the inbound gate.
//
// The library watches routes for its own bind type only (sticky sockets:
// a route change clears a peer's cached source address). Wrapped, it does
// not; instead a failed send clears the endpoint's source address, so the
// next send picks one as an unconnected socket does.
type flowBind struct {
	conn.Bind
	out, in *flowGate
}

func (b *flowBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, actual, err := b.Bind.Open(port)
	if err != nil || b.in == nil {
		return fns, actual, err
	}
	gated := make([]conn.ReceiveFunc, len(fns))
	for i, fn := range fns {
		gated[i] = func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
			b.in.admit()
			n, err := fn(packets, sizes, eps)
			b.in.read(n)
			return n, err
		}
	}
	return gated, actual, nil
}

func (b *flowBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	err := b.Bind.Send(bufs, ep)
	if err != nil {
		ep.ClearSrc()
	}
	b.out.done(len(bufs))
	return err
}

// gatedTUN is the device's TUN: its reads wait for the outbound gate, its
// writes end the inbound gate's packets.
type gatedTUN struct {
	tun.Device
	out, in *flowGate
}

func (t *gatedTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	t.out.admit()
	n, err := t.Device.Read(bufs, sizes, offset)
	t.out.read(n)
	return n, err
}

func (t *gatedTUN) Write(bufs [][]byte, offset int) (int, error) {
	n, err := t.Device.Write(bufs, offset)
	t.in.done(len(bufs))
	return n, err
}
