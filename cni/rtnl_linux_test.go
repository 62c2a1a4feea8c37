// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package cni

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/e2e/netnstest"
)

// TestAckError decodes acknowledgements as the kernel writes them: plain,
// capped with an extended-ack message, and uncapped (the request echoed
// before the attributes).
func TestAckError(t *testing.T) {
	ack := func(code int32, flags uint16, echoed []byte, msg string) syscall.NetlinkMessage {
		b := binary.NativeEndian.AppendUint32(nil, uint32(code))
		b = append(b, echoed...)
		if msg != "" {
			a := append([]byte(msg), 0)
			b = binary.NativeEndian.AppendUint16(b, uint16(4+len(a)))
			b = binary.NativeEndian.AppendUint16(b, unix.NLMSGERR_ATTR_MSG)
			b = append(b, a...)
			for len(b)%4 != 0 {
				b = append(b, 0)
			}
		}
		return syscall.NetlinkMessage{Header: syscall.NlMsghdr{Type: unix.NLMSG_ERROR, Flags: flags}, Data: b}
	}
	hdr := func(payload int) []byte {
		h := make([]byte, unix.SizeofNlMsghdr+payload)
		binary.NativeEndian.PutUint32(h, uint32(len(h)))
		return h
	}
	for _, c := range []struct {
		name  string
		m     syscall.NetlinkMessage
		errno error
		text  string
	}{
		{"ack", ack(0, unix.NLM_F_CAPPED, hdr(0), ""), nil, ""},
		{"plain error", ack(-int32(unix.EEXIST), unix.NLM_F_CAPPED, hdr(0), ""), unix.EEXIST, "file exists"},
		{"capped with message", ack(-int32(unix.EINVAL), unix.NLM_F_CAPPED|unix.NLM_F_ACK_TLVS, hdr(0), "bad thing"), unix.EINVAL, "invalid argument (bad thing)"},
		{"uncapped with message", ack(-int32(unix.ENODEV), unix.NLM_F_ACK_TLVS, hdr(20), "no such link"), unix.ENODEV, "no such device (no such link)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := ackError(c.m)
			if c.errno == nil {
				if err != nil {
					t.Fatalf("ackError = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, c.errno) || err.Error() != c.text {
				t.Fatalf("ackError = %v, want %q wrapping %v", err, c.text, c.errno)
			}
		})
	}
}

// TestRtnlVeth creates a veth pair with the raw client in a node namespace,
// its peer in a pod namespace: the echoed peer index (or the lookup, for
// kernels that do not echo) must be the peer's, the host end must be on
// the bridge, and setPort must set the alias and hairpin. A second creation
// fails with EEXIST and leaves the first pair alone.
func TestRtnlVeth(t *testing.T) {
	netnstest.SkipUnlessRoot(t)
	node := netnstest.NewNS(t, "weftrtnl-node")
	pod := netnstest.NewNS(t, "weftrtnl-pod")
	netnstest.AddBridge(t, node, "br0")
	nl := node.Netlink(t)
	br, err := backend.LinkByName(nl, "br0")
	if err != nil {
		t.Fatal(err)
	}
	var r, pr *rtnl
	if err := node.Do(func() (err error) { r, err = openRtnl(); return err }); err != nil {
		t.Fatal(err)
	}
	defer r.close()
	if pr, err = openRtnlIn(int(pod.Handle)); err != nil {
		t.Fatal(err)
	}
	defer pr.close()

	spec := vethSpec{
		name: "weftt0", mac: net.HardwareAddr{2, 0, 0, 0, 0, 1}, mtu: 1400, master: br.Attrs().Index,
		peerName: "eth0", peerMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, peerNS: int(pod.Handle),
	}
	echoed, err := r.createVeth(spec)
	if err != nil {
		t.Fatalf("createVeth: %v", err)
	}
	looked, err := pr.linkIndex("eth0")
	if err != nil {
		t.Fatalf("linkIndex: %v", err)
	}
	if echoed == 0 && echoesNewLinks(t) {
		t.Errorf("no peer index from the echo of the new link (Linux 6.3 and later echo it)")
	}
	if echoed != 0 && echoed != looked {
		t.Errorf("echoed peer index %d, eth0 has %d", echoed, looked)
	}
	if err := r.setPort("weftt0", "ctr/eth0", true); err != nil {
		t.Fatalf("setPort: %v", err)
	}
	host, err := backend.LinkByName(nl, "weftt0")
	if err != nil {
		t.Fatal(err)
	}
	a := host.Attrs()
	if a.MasterIndex != br.Attrs().Index || a.Alias != "ctr/eth0" || a.MTU != 1400 || a.Flags&net.FlagUp == 0 || a.HardwareAddr.String() != spec.mac.String() {
		t.Errorf("host end: master %d (want %d), alias %q, mtu %d, flags %v, mac %s", a.MasterIndex, br.Attrs().Index, a.Alias, a.MTU, a.Flags, a.HardwareAddr)
	}
	if pi, err := nl.LinkGetProtinfo(host); err != nil || !pi.Hairpin {
		t.Errorf("hairpin: %v %v", pi.Hairpin, err)
	}
	peer, err := backend.LinkByName(pod.Netlink(t), "eth0")
	if err != nil {
		t.Fatal(err)
	}
	if peer.Attrs().Index != int(looked) || peer.Attrs().MTU != 1400 || peer.Attrs().HardwareAddr.String() != spec.peerMAC.String() {
		t.Errorf("pod end: index %d (lookup %d), mtu %d, mac %s", peer.Attrs().Index, looked, peer.Attrs().MTU, peer.Attrs().HardwareAddr)
	}

	// The same names again: EEXIST, and the existing pair keeps its alias.
	if _, err := r.createVeth(spec); !errors.Is(err, unix.EEXIST) || !strings.Contains(err.Error(), "create veth weftt0") {
		t.Fatalf("second createVeth: %v, want EEXIST naming the request", err)
	}
	if l, err := backend.LinkByName(nl, "weftt0"); err != nil || l.Attrs().Alias != "ctr/eth0" {
		t.Fatalf("after the failed creation: %v %v", l, err)
	}
	if _, err := pr.linkIndex("nothere"); !errors.Is(err, unix.ENODEV) {
		t.Fatalf("linkIndex of a missing link: %v, want ENODEV", err)
	}
	if err := nl.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "weftt0"}}); err != nil {
		t.Fatal(err)
	}
}

// echoesNewLinks reports whether the running kernel echoes a link it
// creates with NLM_F_ECHO (Linux 6.3 and later).
func echoesNewLinks(t *testing.T) bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var major, minor int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor); err != nil {
		t.Fatalf("kernel release %q: %v", u.Release[:], err)
	}
	return major > 6 || major == 6 && minor >= 3
}
