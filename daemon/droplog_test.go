// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"net/netip"
	"testing"
	"time"
)

func TestParseDropped(t *testing.T) {
	v4 := func(proto byte, frag uint16, l4 ...byte) []byte {
		b := []byte{0x45, 0, 0, 0, 0, 0, byte(frag >> 8), byte(frag), 64, proto, 0, 0, 10, 244, 1, 5, 10, 244, 2, 7}
		return append(b, l4...)
	}
	v6 := func(next byte, l4 ...byte) []byte {
		b := make([]byte, 40)
		b[0], b[6] = 0x60, next
		copy(b[8:], netip.MustParseAddr("fd10:244::5").AsSlice())
		copy(b[24:], netip.MustParseAddr("fd10:244::7").AsSlice())
		return append(b, l4...)
	}
	for _, tc := range []struct {
		name  string
		pkt   []byte
		want  droppedPacket
		isErr bool
	}{
		{"tcp", v4(6, 0, 0x9c, 0x40, 0, 80), droppedPacket{src: netip.MustParseAddr("10.244.1.5"), dst: netip.MustParseAddr("10.244.2.7"), proto: 6, port: 80}, false},
		{"udp v6", v6(17, 0, 1, 0, 53), droppedPacket{src: netip.MustParseAddr("fd10:244::5"), dst: netip.MustParseAddr("fd10:244::7"), proto: 17, port: 53}, false},
		{"sctp", v4(132, 0, 0, 1, 0x1f, 0x90), droppedPacket{src: netip.MustParseAddr("10.244.1.5"), dst: netip.MustParseAddr("10.244.2.7"), proto: 132, port: 8080}, false},
		{"icmp: no port", v4(1, 0, 8, 0, 0, 0), droppedPacket{src: netip.MustParseAddr("10.244.1.5"), dst: netip.MustParseAddr("10.244.2.7"), proto: 1}, false},
		{"later fragment: no port", v4(6, 0x0010, 0, 0, 0, 80), droppedPacket{src: netip.MustParseAddr("10.244.1.5"), dst: netip.MustParseAddr("10.244.2.7"), proto: 6}, false},
		{"short transport header", v4(6, 0, 0x9c), droppedPacket{src: netip.MustParseAddr("10.244.1.5"), dst: netip.MustParseAddr("10.244.2.7"), proto: 6}, false},
		{"empty", nil, droppedPacket{}, true},
		{"short v4", v4(6, 0)[:19], droppedPacket{}, true},
		{"short v6", v6(6)[:39], droppedPacket{}, true},
		{"version 5", []byte{0x50, 1, 2}, droppedPacket{}, true},
	} {
		got, err := parseDropped(tc.pkt)
		if (err != nil) != tc.isErr || got != tc.want {
			t.Errorf("%s: %+v, %v; want %+v (error %v)", tc.name, got, err, tc.want, tc.isErr)
		}
	}
}

func TestTokenBucket(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newTokenBucket(5, now)
	n := 0
	for range 100 {
		if b.allow(now) {
			n++
		}
	}
	if n != 5 {
		t.Fatalf("burst: %d allowed, want 5", n)
	}
	// 2 s at 5 a second, in 10 ms steps: 10 more.
	for range 200 {
		now = now.Add(10 * time.Millisecond)
		if b.allow(now) {
			n++
		}
	}
	if n != 15 {
		t.Fatalf("after 2 s: %d allowed, want 15", n)
	}
}
