// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2e

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// ipv4UDP builds an IPv4/UDP packet (checksums left zero: the decoder
// does not check them).
func ipv4UDP(src, dst netip.Addr, sport, dport int, payload []byte) []byte {
	b := make([]byte, 20+8+len(payload))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	b[8] = 64
	b[9] = 17
	copy(b[12:16], src.AsSlice())
	copy(b[16:20], dst.AsSlice())
	binary.BigEndian.PutUint16(b[20:22], uint16(sport))
	binary.BigEndian.PutUint16(b[22:24], uint16(dport))
	binary.BigEndian.PutUint16(b[24:26], uint16(8+len(payload)))
	copy(b[28:], payload)
	return b
}

func ipv6UDP(src, dst netip.Addr, sport, dport int, payload []byte) []byte {
	b := make([]byte, 40+8+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:6], uint16(8+len(payload)))
	b[6] = 17
	b[7] = 64
	copy(b[8:24], src.AsSlice())
	copy(b[24:40], dst.AsSlice())
	binary.BigEndian.PutUint16(b[40:42], uint16(sport))
	binary.BigEndian.PutUint16(b[42:44], uint16(dport))
	binary.BigEndian.PutUint16(b[44:46], uint16(8+len(payload)))
	copy(b[48:], payload)
	return b
}

func ether(etype uint16, payload []byte) []byte {
	b := make([]byte, 14+len(payload))
	copy(b[0:6], []byte{2, 0, 0, 0, 0, 1})
	copy(b[6:12], []byte{2, 0, 0, 0, 0, 2})
	binary.BigEndian.PutUint16(b[12:14], etype)
	copy(b[14:], payload)
	return b
}

func vxlanHeader(vni int) []byte {
	return []byte{0x08, 0, 0, 0, byte(vni >> 16), byte(vni >> 8), byte(vni), 0}
}

func TestDecode(t *testing.T) {
	node1, node2 := netip.MustParseAddr("198.18.0.11"), netip.MustParseAddr("198.18.0.12")
	pod1, pod2 := netip.MustParseAddr("10.244.1.2"), netip.MustParseAddr("10.244.2.2")
	pod16, pod26 := netip.MustParseAddr("fd10:244:0:1::2"), netip.MustParseAddr("fd10:244:0:2::2")
	inner4 := ether(0x0800, ipv4UDP(pod1, pod2, 40000, 7, []byte("hello")))
	inner6 := ether(0x86dd, ipv6UDP(pod16, pod26, 40000, 7, []byte("hello6")))
	vx1, vx42 := append(vxlanHeader(1), inner4...), append(vxlanHeader(42), inner6...)
	const port = 8472 // the VXLAN port the decoder is given

	type summary struct {
		Src, Dst         netip.Addr
		Proto, DPort     int
		Payload          string
		VXLAN            bool
		VNI              int
		InnerSrc, InnerD netip.Addr
		InnerPayload     string
	}
	cases := []struct {
		name  string
		frame []byte
		want  summary
		ok    bool
	}{
		{
			name:  "plain udp",
			frame: ether(0x0800, ipv4UDP(pod1, pod2, 40000, 7, []byte("bare"))),
			ok:    true,
			want:  summary{Src: pod1, Dst: pod2, Proto: 17, DPort: 7, Payload: "bare"},
		},
		{
			name:  "vxlan carrying ipv4",
			frame: ether(0x0800, ipv4UDP(node1, node2, 51000, port, vx1)),
			ok:    true,
			want: summary{Src: node1, Dst: node2, Proto: 17, DPort: port, Payload: string(vx1),
				VXLAN: true, VNI: 1, InnerSrc: pod1, InnerD: pod2, InnerPayload: "hello"},
		},
		{
			name:  "vxlan carrying ipv6",
			frame: ether(0x0800, ipv4UDP(node1, node2, 51000, port, vx42)),
			ok:    true,
			want: summary{Src: node1, Dst: node2, Proto: 17, DPort: port, Payload: string(vx42),
				VXLAN: true, VNI: 42, InnerSrc: pod16, InnerD: pod26, InnerPayload: "hello6"},
		},
		{
			name:  "udp to another port is not vxlan",
			frame: ether(0x0800, ipv4UDP(node1, node2, 51000, 4789, vx1)),
			ok:    true,
			want:  summary{Src: node1, Dst: node2, Proto: 17, DPort: 4789, Payload: string(vx1)},
		},
		{
			name:  "arp is not ip",
			frame: ether(0x0806, make([]byte, 28)),
			ok:    false,
		},
		{
			name:  "truncated ipv4",
			frame: ether(0x0800, []byte{0x45, 0, 0}),
			ok:    false,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, ok := decodeEthernet(tc.frame)
			if ok != tc.ok {
				t.Fatalf("decode ok = %t, want %t", ok, tc.ok)
			}
			if !ok {
				return
			}
			got := summary{Src: p.Src, Dst: p.Dst, Proto: p.Proto, DPort: p.DstPort, Payload: string(p.Payload)}
			got.VXLAN = p.DecodeVXLAN(port)
			if got.VXLAN {
				got.VNI = p.VNI()
			}
			if p.Inner != nil {
				got.InnerSrc, got.InnerD, got.InnerPayload = p.Inner.Src, p.Inner.Dst, string(p.Inner.Payload)
			}
			if d := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
				t.Errorf("decoded packet (-want +got):\n%s", d)
			}
		})
	}
}
