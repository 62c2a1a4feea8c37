// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package vxlan

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/e2e/netnstest"
)

// The VXLAN tx checksum offload bug (flannel #1279, kubernetes #88986):
// with tx checksum offload on the VXLAN device, some kernel/NIC
// combinations put wrong checksums on packets that were NATed on the way
// into the tunnel (a node talking to a service whose backend is a remote
// pod, SNAT with random-fully). flannel turns the offload off. weft keeps it
// on unless it is shown to bite: this test measures it on the test
// topology, both with the device's default (on) and with it off, for
// pod → pod, node → remote pod and node → "service" (DNAT plus
// fully-random masquerade into the tunnel), and fails if any byte arrives
// wrong or any receiver counts a checksum error.
func TestTxChecksumOffload(t *testing.T) {
	c := newCluster(t, clusterOpts{nodes: 2})
	c.up()
	n1, n2 := c.nodes[0], c.nodes[1]
	const tcpPort = 7778
	sinkTCP(t, n2.pod, tcpPort)

	// The NAT case needs nft. Without it (outside CI, which installs it)
	// that case shows as skipped, not passed.
	nat := false
	t.Run("nft", func(t *testing.T) {
		netnstest.RequireTool(t, "nft", "nftables")
		nat = true
	})
	if nat {
		// A "service" 10.96.0.10:80 on node1 that DNATs to node2's pod,
		// masqueraded fully-random into the tunnel.
		rules := fmt.Sprintf(`table ip wefttest {
	chain out { type nat hook output priority -100; ip daddr 10.96.0.10 tcp dport 80 dnat to %s:%d; }
	chain post { type nat hook postrouting priority 100; oifname "weft.1" masquerade fully-random; }
}
`, n2.podIP, tcpPort)
		// Service addresses are routed into the overlay (any route will
		// do: DNAT re-routes to the pod's).
		netnstest.AddRoute(t, n1.ns, netip.MustParsePrefix("10.96.0.0/16"), netip.Addr{}, n1.b.Device())
		cmd := exec.Command("ip", "netns", "exec", n1.ns.Name, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(rules)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft: %v: %s", err, out)
		}
	}

	for _, mode := range []struct {
		name string
		on   bool
	}{{"offload on (default)", true}, {"offload off", false}} {
		t.Run(mode.name, func(t *testing.T) {
			for _, n := range c.nodes {
				if err := n.ns.Do(func() error { return setTxCsum(n.b.Device(), mode.on) }); err != nil {
					t.Fatal(err)
				}
				var on bool
				if err := n.ns.Do(func() (err error) { on, err = txCsum(n.b.Device()); return err }); err != nil {
					t.Fatal(err)
				}
				if on != mode.on {
					t.Fatalf("%s: tx checksumming %t, want %t", n.name, on, mode.on)
				}
			}
			before := csumErrors(t, n2.ns, n2.pod)
			flows := []struct {
				name     string
				from     *netnstest.NS
				to       netip.AddrPort
				needsNAT bool
			}{
				{"pod → remote pod", n1.pod, netip.AddrPortFrom(n2.podIP, tcpPort), false},
				{"pod → remote pod (IPv6)", n1.pod, netip.AddrPortFrom(n2.podIP6, tcpPort), false},
				{"node → remote pod", n1.ns, netip.AddrPortFrom(n2.podIP, tcpPort), false},
				{"node → service (DNAT + fully-random masquerade)", n1.ns, netip.MustParseAddrPort("10.96.0.10:80"), true},
			}
			for _, f := range flows {
				t.Run(f.name, func(t *testing.T) {
					if f.needsNAT && !nat {
						t.Skip("nft not installed: no NAT rules")
					}
					gbps, err := sendTCP(f.from, f.to, 32<<20)
					if err != nil {
						t.Fatal(err)
					}
					t.Logf("32 MiB intact, %.2f Gbit/s", gbps)
				})
			}
			// UDP of every size up to the MTU, both families, echoed
			// back byte for byte.
			for _, dst := range []netip.Addr{n2.podIP, n2.podIP6} {
				if err := udpSizes(n1.pod, netip.AddrPortFrom(dst, echoPort), 1400); err != nil {
					t.Errorf("udp to %s: %v", dst, err)
				}
			}
			after := csumErrors(t, n2.ns, n2.pod)
			if after != before {
				t.Errorf("checksum errors counted by receivers: %d → %d", before, after)
			}
			t.Logf("%s: receivers' InCsumErrors %d → %d", mode.name, before, after)
		})
	}
}

// sinkTCP serves on port in ns: it reads a stream to EOF and answers with
// its SHA-256.
func sinkTCP(t *testing.T, ns *netnstest.NS, port int) {
	t.Helper()
	var l net.Listener
	if err := ns.Do(func() (err error) { l, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", port)); return err }); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			h := sha256.New()
			io.Copy(h, conn)
			conn.Write(h.Sum(nil))
			conn.Close()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
}

// sendTCP sends n random bytes from ns to dst and checks the SHA-256 the
// sink returns. It returns the throughput in Gbit/s.
func sendTCP(ns *netnstest.NS, dst netip.AddrPort, n int) (float64, error) {
	var conn net.Conn
	if err := ns.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", dst.String(), 5*time.Second)
		return err
	}); err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	data := make([]byte, n)
	rand.Read(data)
	want := sha256.Sum256(data)
	start := time.Now()
	if _, err := conn.Write(data); err != nil {
		return 0, err
	}
	conn.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(conn)
	if err != nil {
		return 0, err
	}
	secs := time.Since(start).Seconds()
	if !bytes.Equal(got, want[:]) {
		return 0, fmt.Errorf("stream corrupted: sha256 %x, want %x", got, want)
	}
	return float64(n) * 8 / secs / 1e9, nil
}

// udpSizes sends one datagram of each size 1..max to an echo server and
// checks each reply byte for byte.
func udpSizes(ns *netnstest.NS, dst netip.AddrPort, max int) error {
	var conn *net.UDPConn
	if err := ns.Do(func() (err error) {
		conn, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
		return err
	}); err != nil {
		return err
	}
	defer conn.Close()
	buf := make([]byte, 2048)
	lost := 0
	for size := 1; size <= max; size++ {
		msg := make([]byte, size)
		rand.Read(msg)
		conn.Write(msg)
		conn.SetReadDeadline(time.Now().Add(time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			lost++
			continue
		}
		if !bytes.Equal(buf[:n], msg) {
			return fmt.Errorf("size %d: reply differs", size)
		}
	}
	if lost > 0 {
		return fmt.Errorf("%d of %d datagrams got no echo", lost, max)
	}
	return nil
}

// csumErrors sums InCsumErrors (TCP, UDP, UDP6) over the given namespaces.
func csumErrors(t *testing.T, nss ...*netnstest.NS) int {
	t.Helper()
	total := 0
	for _, ns := range nss {
		err := ns.Do(func() error {
			for _, f := range []string{"/proc/net/snmp", "/proc/net/snmp6"} {
				n, err := sumCsumErrors(f)
				if err != nil {
					return err
				}
				total += n
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return total
}

// sumCsumErrors adds up every InCsumErrors counter in an snmp file
// (/proc/net/snmp: header line then value line per protocol;
// /proc/net/snmp6: "name value" lines). /proc/net follows the reading
// thread's network namespace.
func sumCsumErrors(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	total := 0
	var header []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) == 2 && strings.HasSuffix(fields[0], "InCsumErrors"): // snmp6
			n, _ := strconv.Atoi(fields[1])
			total += n
		case len(fields) > 2 && header != nil && fields[0] == header[0]: // snmp values
			for i, h := range header {
				if h == "InCsumErrors" && i < len(fields) {
					n, _ := strconv.Atoi(fields[i])
					total += n
				}
			}
			header = nil
		case len(fields) > 2:
			header = fields
		}
	}
	return total, sc.Err()
}

// ethtool ioctls for the tx checksum offload of a device in the calling
// thread's namespace.
const (
	ethtoolGTXCSUM = 0x16
	ethtoolSTXCSUM = 0x17
)

func ethtoolValue(dev string, cmd, data uint32) (uint32, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	val := &struct{ cmd, data uint32 }{cmd, data}
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data unsafe.Pointer
		_    [16]byte
	}
	copy(ifr.name[:], dev)
	ifr.data = unsafe.Pointer(val)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
		return 0, fmt.Errorf("ethtool ioctl %#x on %s: %w", cmd, dev, errno)
	}
	return val.data, nil
}

func txCsum(dev string) (bool, error) {
	v, err := ethtoolValue(dev, ethtoolGTXCSUM, 0)
	return v != 0, err
}

func setTxCsum(dev string, on bool) error {
	var v uint32
	if on {
		v = 1
	}
	_, err := ethtoolValue(dev, ethtoolSTXCSUM, v)
	return err
}
