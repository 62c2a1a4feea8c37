// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package netnstest

import (
	"encoding/binary"
	"hash/crc32"
	"testing"
)

// The checksum verifies as a receiver checks it (RFC 9260 appendix A: the
// CRC32c of the packet with the checksum field zero, stored little-endian
// as the kernel's sctp_compute_cksum leaves it), and the chunk is an INIT
// of the length it says.
func TestSCTPInit(t *testing.T) {
	b := SCTPInit(40001, 80)
	if len(b) != 32 || binary.BigEndian.Uint16(b) != 40001 || binary.BigEndian.Uint16(b[2:]) != 80 {
		t.Fatalf("ports or length wrong: % x", b)
	}
	if b[12] != 1 || binary.BigEndian.Uint16(b[14:]) != 20 {
		t.Fatalf("not an INIT chunk of 20 bytes: % x", b[12:])
	}
	got := binary.LittleEndian.Uint32(b[8:])
	z := append([]byte(nil), b...)
	clear(z[8:12])
	if want := crc32.Checksum(z, crc32.MakeTable(crc32.Castagnoli)); got != want || got == 0 {
		t.Fatalf("checksum %#x, want %#x", got, want)
	}
}
