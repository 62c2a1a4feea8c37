// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package netnstest

import (
	"encoding/binary"
	"hash/crc32"
)

// SCTPInit returns an SCTP packet (common header and one INIT chunk, no IP
// header) from srcPort to dstPort, for a raw socket to send where the
// kernel has no SCTP sockets. Its CRC32c is set: conntrack marks an SCTP
// packet with a bad checksum invalid, so a policy test would see drops
// that are not the policy's.
func SCTPInit(srcPort, dstPort uint16) []byte {
	b := make([]byte, 12+20)
	binary.BigEndian.PutUint16(b[0:], srcPort)
	binary.BigEndian.PutUint16(b[2:], dstPort)
	// verification tag 0 (INIT); the checksum at 8..11 is filled below
	c := b[12:]
	c[0] = 1                                  // INIT
	binary.BigEndian.PutUint16(c[2:], 20)     // chunk length
	binary.BigEndian.PutUint32(c[4:], 0x5eed) // initiate tag
	binary.BigEndian.PutUint32(c[8:], 65536)  // a_rwnd
	binary.BigEndian.PutUint16(c[12:], 1)     // outbound streams
	binary.BigEndian.PutUint16(c[14:], 1)     // inbound streams
	binary.BigEndian.PutUint32(c[16:], 1)     // initial TSN
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
	return b
}
