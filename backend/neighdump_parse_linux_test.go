// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package backend

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// ndMessage builds an RTM_NEWNEIGH body: an ndmsg and the given attributes
// (type, value), each padded to 4 bytes.
func ndMessage(family uint8, index int32, state uint16, attrs ...any) []byte {
	ne := binary.NativeEndian
	m := make([]byte, ndmsgLen)
	m[0] = family
	ne.PutUint32(m[4:8], uint32(index))
	ne.PutUint16(m[8:10], state)
	for i := 0; i+1 < len(attrs); i += 2 {
		v := attrs[i+1].([]byte)
		a := make([]byte, unix.SizeofRtAttr, unix.SizeofRtAttr+len(v)+3)
		ne.PutUint16(a[0:2], uint16(unix.SizeofRtAttr+len(v)))
		ne.PutUint16(a[2:4], attrs[i].(uint16))
		a = append(a, v...)
		for len(a)%4 != 0 {
			a = append(a, 0)
		}
		m = append(m, a...)
	}
	return m
}

func TestParseNeigh(t *testing.T) {
	mac := []byte{2, 0x42, 0, 0, 0, 1}
	v4 := netip.MustParseAddr("10.244.1.0")
	v6 := netip.MustParseAddr("2001:2::5")
	good := ndMessage(unix.AF_INET, 7, 0x80, uint16(unix.NDA_DST), v4.AsSlice(), uint16(unix.NDA_LLADDR), mac)
	truncated := good[:len(good)-4] // the MAC attribute cut in half
	zeroLen := append(ndMessage(unix.AF_INET, 7, 0x80), 0, 0, 1, 0)
	tests := []struct {
		name string
		m    []byte
		ok   bool
		want NeighEntry
	}{
		{"IPv4 neighbour", good, true, NeighEntry{Family: unix.AF_INET, LinkIndex: 7, State: 0x80, IP: v4, MAC: mac}},
		{"FDB entry to an IPv6 VTEP", ndMessage(unix.AF_BRIDGE, 9, 0x80, uint16(unix.NDA_LLADDR), mac, uint16(unix.NDA_DST), v6.AsSlice()),
			true, NeighEntry{Family: unix.AF_BRIDGE, LinkIndex: 9, State: 0x80, IP: v6, MAC: mac}},
		{"IPv4-mapped destination unmapped", ndMessage(unix.AF_BRIDGE, 9, 0x80, uint16(unix.NDA_DST), netip.AddrFrom16(v4.As16()).AsSlice()),
			true, NeighEntry{Family: unix.AF_BRIDGE, LinkIndex: 9, State: 0x80, IP: v4}},
		{"no address (incomplete)", ndMessage(unix.AF_INET6, 3, 0x01, uint16(unix.NDA_CACHEINFO), make([]byte, 16)),
			true, NeighEntry{Family: unix.AF_INET6, LinkIndex: 3, State: 0x01}},
		{"nested flag ignored in the type", ndMessage(unix.AF_INET, 7, 0x80, uint16(unix.NDA_DST)|unix.NLA_F_NET_BYTEORDER, v4.AsSlice()),
			true, NeighEntry{Family: unix.AF_INET, LinkIndex: 7, State: 0x80, IP: v4}},
		{"short message", good[:ndmsgLen-1], false, NeighEntry{}},
		{"attribute longer than the message", truncated, false, NeighEntry{}},
		{"attribute length below its header", zeroLen, false, NeighEntry{}},
		{"address of 5 bytes", ndMessage(unix.AF_INET, 7, 0x80, uint16(unix.NDA_DST), []byte{1, 2, 3, 4, 5}), false, NeighEntry{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e NeighEntry
			e.Flags = 0xff // must be cleared
			ok := parseNeigh(tt.m, &e)
			if ok != tt.ok {
				t.Fatalf("parseNeigh = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if e.Family != tt.want.Family || e.LinkIndex != tt.want.LinkIndex || e.State != tt.want.State || e.Flags != 0 ||
				e.IP != tt.want.IP || string(e.MAC) != string(tt.want.MAC) {
				t.Errorf("parsed %+v, want %+v", e, tt.want)
			}
		})
	}
}
