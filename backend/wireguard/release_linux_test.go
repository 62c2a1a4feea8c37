// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package wireguard

import (
	"runtime/debug"
	"testing"

	"golang.zx2c4.com/wireguard/tun"
)

func TestReleaser(t *testing.T) {
	// Each step is the number of packets moved during one tick.
	for _, tc := range []struct {
		name  string
		steps []uint64
		want  []bool // release after each step
	}{
		{"idle device never releases", []uint64{0, 10, 0, 0, 0}, []bool{false, false, false, false, false}},
		{"released once, a second after a burst", []uint64{50000, 80000, 0, 0, 0, 0}, []bool{false, false, false, true, false, false}},
		{"keepalives do not keep it busy", []uint64{5000, 150, 150, 0}, []bool{false, false, true, false}},
		{"moderate traffic delays the release", []uint64{5000, 1000, 1000, 0, 0}, []bool{false, false, false, false, true}},
		{"a second burst releases again", []uint64{5000, 0, 0, 9000, 0, 0}, []bool{false, false, true, false, false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r releaser
			var count uint64
			for i, d := range tc.steps {
				count += d
				if got := r.tick(count); got != tc.want[i] {
					t.Fatalf("step %d (%d packets): release %v, want %v", i, d, got, tc.want[i])
				}
			}
		})
	}
}

// packetTUN is a TUN whose reads and writes move n packets each.
type packetTUN struct {
	tun.Device
	n int
}

func (p packetTUN) Read([][]byte, []int, int) (int, error) { return p.n, nil }
func (p packetTUN) Write([][]byte, int) (int, error)       { return p.n, nil }

func TestCountingTUNKicksOnBurst(t *testing.T) {
	c := newCountingTUN(packetTUN{n: 50})
	kicked := func() bool {
		select {
		case <-c.kick:
			return true
		default:
			return false
		}
	}
	// 39 reads and writes: 1950 packets since the last tick, no kick.
	for i := range 39 {
		if i%2 == 0 {
			c.Read(nil, nil, 0)
		} else {
			c.Write(nil, 0)
		}
	}
	if kicked() {
		t.Fatal("kicked below busyPackets")
	}
	c.Read(nil, nil, 0) // 2000
	if !kicked() {
		t.Fatal("no kick at busyPackets packets since the last tick")
	}
	// Disarmed until the loop has looked: no second kick.
	for range 100 {
		c.Read(nil, nil, 0)
	}
	if kicked() {
		t.Fatal("kicked again before the loop re-armed it")
	}
	// The loop's tick: a new mark, armed again (device idle).
	c.mark.Store(c.packets.Load())
	c.armed.Store(true)
	c.Read(nil, nil, 0)
	if kicked() {
		t.Fatal("kicked 50 packets after a tick")
	}
	if got := c.packets.Load(); got != 7050 {
		t.Fatalf("counted %d packets, want 7050", got)
	}
}

func TestBusyGC(t *testing.T) {
	t.Setenv("GOGC", "")
	orig := debug.SetGCPercent(150)
	defer debug.SetGCPercent(orig)
	gc := func() int {
		v := debug.SetGCPercent(-1)
		debug.SetGCPercent(v)
		return v
	}
	setBusy(true)
	if got := gc(); got != busyGCPercent {
		t.Fatalf("GOGC %d with a busy device, want %d", got, busyGCPercent)
	}
	setBusy(true) // a second device
	setBusy(false)
	if got := gc(); got != busyGCPercent {
		t.Fatalf("GOGC %d with one of two devices still busy, want %d", got, busyGCPercent)
	}
	setBusy(false)
	if got := gc(); got != 150 {
		t.Fatalf("GOGC %d once no device is busy, want the process's 150", got)
	}

	// A GOGC from the environment is the operator's.
	t.Setenv("GOGC", "150")
	setBusy(true)
	got := gc()
	setBusy(false)
	if got != 150 {
		t.Fatalf("GOGC %d with GOGC=150 in the environment, want it left alone", got)
	}
}
