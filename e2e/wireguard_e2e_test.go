// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e && linux

package e2e_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/wireguard"
	"github.com/weftnet/weft/daemon/status"
	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/e2etest"
	"github.com/weftnet/weft/subnet"
)

// wgPort is the listen port of every node's device (the config's default).
const wgPort = subnet.DefaultListenPort

// wgMTU is the pod and device MTU over an IPv4 underlay with MTU 1500.
const wgMTU = 1500 - 60

// TestWireGuard runs the WireGuard scenarios (issue 5) on one shared
// dual-stack cluster of three nodes with two pods each, every weftd
// running the embedded userspace device (this kernel has no WireGuard
// module). The subtests run in order and build on each other: the restarts
// touch node1, a fourth node joins, node3's lease is removed, and a fifth
// node starts with --wireguard-mode kernel, then userspace.
//
//	                  underlay br0 198.18.0.0/24 (etcd .2)
//	    ┌──────────────────────┬──────────────────────┬──────────────────────┐
//	node1 .11               node2 .12              node3 .13              node4 .14 (joins)
//	wg1-<id> ◄── UDP 51820 ──► wg2-<id> ◄── UDP ──► wg3-<id>              wg4-<id>
//	2 pods                   2 pods                 2 pods                 1 pod
//
// Every device's UAPI socket is /var/run/wireguard/wg<i>-<id>.sock, which
// the test reads with wgctrl (and wg, when installed).
func TestWireGuard(t *testing.T) {
	e2etest.RequireRoot(t)
	// Registered before the cluster, so it runs after the cluster's own
	// teardown: nothing of it may be left.
	var c *e2e.Cluster
	t.Cleanup(func() {
		if c != nil {
			checkNothingLeft(t, c.State())
		}
	})
	c = e2etest.NewCluster(t, e2e.Options{Nodes: 3, PodsPerNode: 2, Backend: "wireguard", DualStack: true})

	t.Run("pods-all-to-all", func(t *testing.T) {
		for _, v6 := range []bool{false, true} {
			t.Run(family(v6), func(t *testing.T) {
				allToAll(t, c.Pods(), v6)
			})
		}
	})

	t.Run("devices-peers-routes", func(t *testing.T) {
		testWGDevices(t, c)
	})

	t.Run("wg-show", func(t *testing.T) {
		testWGShow(t, c)
	})

	t.Run("encryption-is-real", func(t *testing.T) {
		testWGEncryption(t, c)
	})

	t.Run("restart", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			crash bool
		}{
			{"graceful", false},
			{"crash", true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				testWGRestart(t, c, tc.crash)
			})
		}
	})

	t.Run("node-joins", func(t *testing.T) {
		testWGJoin(t, c)
	})

	t.Run("lease-removed", func(t *testing.T) {
		testWGLeaseRemoved(t, c)
	})

	t.Run("mode-override", func(t *testing.T) {
		testWGModeOverride(t, c)
	})
}

// checkNothingLeft fails the test if any namespace, process or UAPI
// socket of s survived the teardown.
func checkNothingLeft(t *testing.T, s e2e.State) {
	t.Helper()
	for _, l := range s.Live() {
		t.Errorf("%s left after teardown", l)
	}
	for _, d := range s.WireGuardDevices {
		sock := e2e.UAPISocket(d)
		if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after teardown (%v)", sock, err)
		}
	}
}

// wgPeer is one peer of a device as the tests compare it.
type wgPeer struct {
	Key        string
	Endpoint   string
	AllowedIPs []string
}

// viewOf turns a device's peers into a sorted list of [wgPeer].
func viewOf(d *wgtypes.Device) []wgPeer {
	var v []wgPeer
	for _, p := range d.Peers {
		wp := wgPeer{Key: p.PublicKey.String()}
		if p.Endpoint != nil {
			wp.Endpoint = p.Endpoint.String()
		}
		for _, a := range p.AllowedIPs {
			wp.AllowedIPs = append(wp.AllowedIPs, e2e.IPNetPrefix(&a).String())
		}
		slices.Sort(wp.AllowedIPs)
		v = append(v, wp)
	}
	slices.SortFunc(v, func(a, b wgPeer) int { return strings.Compare(a.Key, b.Key) })
	return v
}

// wgDevice reads the node's device with wgctrl from a thread inside the
// node's namespace (where a kernel device would be; a userspace device is
// found through its socket from anywhere).
func wgDevice(n *e2e.Node) (*wgtypes.Device, error) {
	var d *wgtypes.Device
	err := n.NS.Do(func() error {
		cl, err := wgctrl.New()
		if err != nil {
			return fmt.Errorf("wgctrl: %w", err)
		}
		defer cl.Close()
		d, err = cl.Device(n.WireGuardDevice)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("wireguard device %s on %s: %w", n.WireGuardDevice, n.Name, err)
	}
	return d, nil
}

// wgDeviceHere reads a device with wgctrl from the test's own namespace.
func wgDeviceHere(name string) (*wgtypes.Device, error) {
	cl, err := wgctrl.New()
	if err != nil {
		return nil, fmt.Errorf("wgctrl: %w", err)
	}
	defer cl.Close()
	d, err := cl.Device(name)
	if err != nil {
		return nil, fmt.Errorf("wireguard device %s from the test's namespace: %w", name, err)
	}
	return d, nil
}

// statuses fetches /status of every node.
func statuses(ctx context.Context, nodes []*e2e.Node) (map[*e2e.Node]*status.Report, error) {
	m := map[*e2e.Node]*status.Report{}
	for _, n := range nodes {
		st, err := n.Status(ctx)
		if err != nil {
			return nil, err
		}
		m[n] = st
	}
	return m, nil
}

// expectedPeers is what self's device must hold: one peer per other node
// of sts, at its public IP and published port, allowed its subnets.
func expectedPeers(self *e2e.Node, sts map[*e2e.Node]*status.Report) []wgPeer {
	var v []wgPeer
	for n, st := range sts {
		if n == self {
			continue
		}
		p := wgPeer{
			Key:      st.Node.BackendData.WireGuardKey,
			Endpoint: netip.AddrPortFrom(st.Node.PublicIP, uint16(st.Node.BackendData.WireGuardPort)).String(),
		}
		for _, s := range []netip.Prefix{st.Node.Subnet, st.Node.IPv6Subnet} {
			if s.IsValid() {
				p.AllowedIPs = append(p.AllowedIPs, s.Masked().String())
			}
		}
		slices.Sort(p.AllowedIPs)
		v = append(v, p)
	}
	slices.SortFunc(v, func(a, b wgPeer) int { return strings.Compare(a.Key, b.Key) })
	return v
}

// checkPeers compares every node's device with what the statuses of nodes
// say it must hold, and checks the routes to the peers' subnets.
func checkPeers(nodes []*e2e.Node, sts map[*e2e.Node]*status.Report) error {
	var errs []error
	for _, n := range nodes {
		d, err := wgDevice(n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if diff := cmp.Diff(expectedPeers(n, sts), viewOf(d)); diff != "" {
			errs = append(errs, fmt.Errorf("%s: peers of %s (-want +got):\n%s", n.Name, n.WireGuardDevice, diff))
		}
		k, err := n.Kernel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for m, st := range sts {
			if m == n {
				continue
			}
			for _, s := range []netip.Prefix{st.Node.Subnet, st.Node.IPv6Subnet} {
				if !s.IsValid() {
					continue
				}
				r, ok := k.RouteTo(s)
				if !ok || r.Dev != n.WireGuardDevice {
					errs = append(errs, fmt.Errorf("%s: route to %s (%s) = %v (%t), want dev %s", n.Name, s.Masked(), m.Name, r, ok, n.WireGuardDevice))
				}
			}
		}
	}
	return errors.Join(errs...)
}

func testWGDevices(t *testing.T, c *e2e.Cluster) {
	nodes := c.Nodes()
	sts, err := statuses(t.Context(), nodes)
	if err != nil {
		t.Fatal(err)
	}
	// --wireguard-mode auto (the default): the kernel device where the
	// kernel supports WireGuard, else the userspace one.
	kernelOK, err := kernelWireGuard(nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	wantType := wgtypes.Userspace
	if kernelOK {
		wantType = wgtypes.LinuxKernel
	}
	for _, n := range nodes {
		st := sts[n]
		if st.Node.BackendType != subnet.BackendWireGuard {
			t.Errorf("%s: backend type %q", n.Name, st.Node.BackendType)
		}
		if st.Node.BackendData.WireGuardPort != wgPort {
			t.Errorf("%s publishes port %d, want %d", n.Name, st.Node.BackendData.WireGuardPort, wgPort)
		}
		d, err := wgDevice(n)
		if err != nil {
			t.Error(err)
			continue
		}
		if d.Type != wantType {
			t.Errorf("%s: device type %s with --wireguard-mode auto (kernel support: %t), want %s", n.Name, d.Type, kernelOK, wantType)
		}
		if got := d.PublicKey.String(); got != st.Node.BackendData.WireGuardKey {
			t.Errorf("%s: device key %s, published %s", n.Name, got, st.Node.BackendData.WireGuardKey)
		}
		if d.ListenPort != wgPort {
			t.Errorf("%s: device listens on %d, want %d", n.Name, d.ListenPort, wgPort)
		}
		// The same device, read from the test's own namespace: wgctrl
		// finds a userspace device by its socket from anywhere.
		if d.Type == wgtypes.Userspace {
			here, err := wgDeviceHere(n.WireGuardDevice)
			if err != nil {
				t.Error(err)
			} else if here.PublicKey != d.PublicKey || !cmp.Equal(viewOf(here), viewOf(d)) {
				t.Errorf("%s: wgctrl in the node's namespace and in the test's disagree: %v vs %v", n.Name, viewOf(d), viewOf(here))
			}
		}
		checkWGLink(t, n, st)
		t.Logf("%s: %s %s key %s, port %d, %d peers", n.Name, d.Type, d.Name, d.PublicKey, d.ListenPort, len(d.Peers))
	}
	if err := checkPeers(nodes, sts); err != nil {
		t.Error(err)
	}
}

// checkWGLink checks the device's link: the subnets' network addresses as
// host routes' worth of prefix (/32, /128), up, and the derived MTU.
func checkWGLink(t *testing.T, n *e2e.Node, st *status.Report) {
	t.Helper()
	h, err := n.NS.Handle()
	if err != nil {
		t.Error(err)
		return
	}
	defer h.Close()
	l, err := h.LinkByName(n.WireGuardDevice)
	if err != nil {
		t.Errorf("%s: no link %s: %v", n.Name, n.WireGuardDevice, err)
		return
	}
	if l.Attrs().MTU != wgMTU {
		t.Errorf("%s: %s MTU %d, want %d (underlay 1500 − 60)", n.Name, n.WireGuardDevice, l.Attrs().MTU, wgMTU)
	}
	if l.Attrs().Flags&(1<<0) == 0 { // net.FlagUp
		t.Errorf("%s: %s is down", n.Name, n.WireGuardDevice)
	}
	addrs, err := backend.AddrList(h, l, netlink.FAMILY_ALL)
	if err != nil {
		t.Error(err)
		return
	}
	var got []string
	for _, a := range addrs {
		p := e2e.IPNetPrefix(a.IPNet)
		if p.Addr().IsLinkLocalUnicast() {
			continue
		}
		got = append(got, p.String())
	}
	want := []string{netip.PrefixFrom(st.Node.Subnet.Masked().Addr(), 32).String()}
	if st.Node.IPv6Subnet.IsValid() {
		want = append(want, netip.PrefixFrom(st.Node.IPv6Subnet.Masked().Addr(), 128).String())
	}
	slices.Sort(got)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s: addresses of %s (-want +got):\n%s", n.Name, n.WireGuardDevice, diff)
	}
	sf, err := n.SubnetFile()
	if err != nil {
		t.Error(err)
	} else if sf.MTU != wgMTU {
		t.Errorf("%s: WEFT_MTU=%d, want %d", n.Name, sf.MTU, wgMTU)
	}
}

func testWGShow(t *testing.T, c *e2e.Cluster) {
	if _, err := exec.LookPath("wg"); err != nil {
		t.Skip("wg not installed (Debian package wireguard-tools): skipping the wg show check; wgctrl checked the same peers in devices-peers-routes")
	}
	ctx := t.Context()
	nodes := c.Nodes()
	sts, err := statuses(ctx, nodes)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		want := expectedPeers(n, sts)
		// The human form: one "peer: <key>" line per peer.
		out, err := n.NS.Run(ctx, "wg", "show", n.WireGuardDevice)
		if err != nil {
			t.Error(err)
			continue
		}
		var keys, wantKeys []string
		for _, line := range strings.Split(out, "\n") {
			if k, ok := strings.CutPrefix(strings.TrimSpace(line), "peer: "); ok {
				keys = append(keys, k)
			}
		}
		for _, p := range want {
			wantKeys = append(wantKeys, p.Key)
		}
		slices.Sort(keys)
		if diff := cmp.Diff(wantKeys, keys); diff != "" {
			t.Errorf("%s: wg show %s peers (-want +got):\n%s\n%s", n.Name, n.WireGuardDevice, diff, out)
		}
		// The machine form, for endpoints and allowed IPs. Its first
		// line carries the private key: never log it.
		out, err = n.NS.Run(ctx, "wg", "show", n.WireGuardDevice, "dump")
		if err != nil {
			t.Error(err)
			continue
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if f := strings.Split(lines[0], "\t"); len(f) < 3 || f[1] != sts[n].Node.BackendData.WireGuardKey || f[2] != fmt.Sprint(wgPort) {
			t.Errorf("%s: wg show dump interface line has public key or port other than %s, %d", n.Name, sts[n].Node.BackendData.WireGuardKey, wgPort)
		}
		var got []wgPeer
		for _, line := range lines[1:] {
			f := strings.Split(line, "\t")
			if len(f) < 4 {
				t.Errorf("%s: wg show dump line %q", n.Name, line)
				continue
			}
			p := wgPeer{Key: f[0], Endpoint: f[2]}
			if f[3] != "(none)" {
				p.AllowedIPs = strings.Split(f[3], ",")
			}
			slices.Sort(p.AllowedIPs)
			got = append(got, p)
		}
		slices.SortFunc(got, func(a, b wgPeer) int { return strings.Compare(a.Key, b.Key) })
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: wg show %s dump peers (-want +got):\n%s", n.Name, n.WireGuardDevice, diff)
		}
		t.Logf("%s: wg show %s: %d peers as expected", n.Name, n.WireGuardDevice, len(got))
	}
}

// isWGData reports whether a UDP payload is a WireGuard transport data
// message (type 4, three zero bytes, receiver index, counter, then at least
// the 16-byte authentication tag).
func isWGData(b []byte) bool {
	return len(b) >= 32 && b[0] == 4 && b[1] == 0 && b[2] == 0 && b[3] == 0
}

func testWGEncryption(t *testing.T, c *e2e.Cluster) {
	n1, n2 := c.Nodes()[0], c.Nodes()[1]
	a, b := n1.Pods()[0], n2.Pods()[0]
	for _, v6 := range []bool{false, true} {
		t.Run(family(v6), func(t *testing.T) {
			udp, err := e2e.ServeUDP(b.NS, netip.AddrPortFrom(b.Addr(v6), 0))
			if err != nil {
				t.Fatal(err)
			}
			defer udp.Close()
			tcp, err := e2e.ServeTCP(b.NS, netip.AddrPortFrom(b.Addr(v6), 0))
			if err != nil {
				t.Fatal(err)
			}
			defer tcp.Close()
			wire, err := e2e.StartCapture(c.Underlay)
			if err != nil {
				t.Fatal(err)
			}
			// The same traffic seen inside node1 (pod bridge and veths) is
			// in the clear: proof that the capture and the search work.
			inner, err := e2e.StartCapture(n1.NS)
			if err != nil {
				wire.Stop()
				t.Fatal(err)
			}
			marker := []byte(fmt.Sprintf("weft-wg-secret-%s-%s", family(v6), c.ID))
			udpErr := e2e.UDPEcho(a.NS, udp.Addr, marker, 5*time.Second)
			tcpErr := e2e.TCPEcho(a.NS, tcp.Addr, bytes.Repeat(marker, 200), 5*time.Second)
			pkts, inside := wire.Stop(), inner.Stop()
			if err := errors.Join(udpErr, tcpErr); err != nil {
				t.Fatal(err)
			}
			var plain int
			for _, p := range inside {
				if bytes.Contains(p.Payload, marker) {
					plain++
				}
			}
			if plain < 4 { // UDP request and reply, TCP data both ways
				t.Errorf("capture inside %s saw the marker in %d packets, want ≥ 4: the search cannot be trusted", n1.Name, plain)
			}
			var wgPkts, data, gossip, leaks int
			for _, p := range pkts {
				leak := ""
				switch {
				case inPodNetwork(p.Src) || inPodNetwork(p.Dst):
					leak = "pod address in the clear"
				case bytes.Contains(p.Payload, marker):
					leak = "payload in the clear"
				}
				if leak != "" {
					if leaks++; leaks <= 10 {
						t.Errorf("%s on the underlay: %s", leak, p)
					}
					continue
				}
				if !(p.Src == n1.IP && p.Dst == n2.IP || p.Src == n2.IP && p.Dst == n1.IP) {
					continue // etcd, the test's HTTP, other nodes
				}
				switch {
				case p.Proto == 17 && p.SrcPort == wgPort && p.DstPort == wgPort:
					wgPkts++
					if isWGData(p.Payload) {
						data++
					}
				case p.SrcPort == e2e.GossipPort || p.DstPort == e2e.GossipPort:
					gossip++
				default:
					if leaks++; leaks <= 10 {
						t.Errorf("unexpected packet between the nodes: %s", p)
					}
				}
			}
			if data < 4 {
				t.Errorf("saw %d WireGuard data messages (UDP %d ↔ %d) between %s and %s, want ≥ 4 (%d packets captured)", data, wgPort, wgPort, n1.IP, n2.IP, len(pkts))
			}
			t.Logf("underlay: %d packets, %d WireGuard (%d data messages), %d gossip, %d leaks; inside %s: marker in the clear in %d packets",
				len(pkts), wgPkts, data, gossip, leaks, n1.Name, plain)
		})
	}
}

// replyAfter waits until s gets a reply after t0 and returns when it came
// (polled every millisecond: the first reply after t0, give or take one).
func replyAfter(s *e2e.Stream, t0 time.Time, timeout time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(timeout)
	for {
		if at := s.LastReply(); at.After(t0) {
			return at, true
		}
		if time.Now().After(deadline) {
			return time.Time{}, false
		}
		time.Sleep(time.Millisecond)
	}
}

// waitReadyClose polls /readyz every 5 ms (tighter than WaitReady) and
// returns when it first answered 200.
func waitReadyClose(ctx context.Context, n *e2e.Node, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		code, _, err := n.Get(ctx, "/readyz")
		if err == nil && code == http.StatusOK {
			return time.Now(), nil
		}
		if !n.Running() {
			return time.Time{}, fmt.Errorf("weftd on %s exited before ready; log:\n%s", n.Name, n.LogTail(30))
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("weftd on %s not ready after %s (%v, HTTP %d); log:\n%s", n.Name, timeout, err, code, n.LogTail(30))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testWGRestart(t *testing.T, c *e2e.Cluster, crash bool) {
	ctx := t.Context()
	nodes := c.Nodes()
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	before, err := n1.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	key := before.Node.BackendData.WireGuardKey
	// One stream into the restarting node from node2, and one out of it
	// to node3. They use different peers on purpose: node1 sends nothing
	// of its own to node2, so the stream from node2 is the case that
	// stays dark without a fresh handshake from node1 (node2 keeps
	// encrypting with the old process's session).
	in, err := e2e.StartStream(n2.Pods()[0].NS, n1.Pods()[0].IP, 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	out, err := e2e.StartStream(n1.Pods()[1].NS, n3.Pods()[1].IP, 5*time.Millisecond)
	if err != nil {
		in.Stop()
		t.Fatal(err)
	}
	stopStreams := func() (e2e.StreamResult, e2e.StreamResult) { return in.Stop(), out.Stop() }
	if _, ok := replyAfter(in, time.Time{}, 5*time.Second); !ok {
		stopStreams()
		t.Fatalf("stream %s → %s gets no replies before the restart", n2.Name, n1.Name)
	}
	if _, ok := replyAfter(out, time.Time{}, 5*time.Second); !ok {
		stopStreams()
		t.Fatalf("stream %s → %s gets no replies before the restart", n1.Name, n3.Name)
	}
	stopAt := time.Now()
	if crash {
		err = n1.Kill()
	} else {
		err = n1.Stop()
	}
	if err != nil {
		stopStreams()
		t.Fatal(err)
	}
	if err := n1.Start(); err != nil {
		stopStreams()
		t.Fatal(err)
	}
	readyAt, err := waitReadyClose(ctx, n1, 30*time.Second)
	if err != nil {
		stopStreams()
		t.Fatal(err)
	}
	// Both at once, and longer than the 1 s allowed, to report the real
	// figures.
	var inBack, outBack time.Time
	var inOK, outOK bool
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); inBack, inOK = replyAfter(in, readyAt, 5*time.Second) }()
	go func() { defer wg.Done(); outBack, outOK = replyAfter(out, readyAt, 5*time.Second) }()
	wg.Wait()
	waitStream(in, in.Sent()+50)
	ri, ro := stopStreams()
	t.Logf("stop → ready %.0f ms; first reply after ready: %s → %s %s, %s → %s %s; into %s: %s; out of %s: %s",
		readyAt.Sub(stopAt).Seconds()*1000,
		n2.Name, n1.Name, sinceReady(inBack, readyAt, inOK), n1.Name, n3.Name, sinceReady(outBack, readyAt, outOK),
		n1.Name, ri, n1.Name, ro)
	for _, f := range []struct {
		name string
		at   time.Time
		ok   bool
	}{{n2.Name + " → " + n1.Name, inBack, inOK}, {n1.Name + " → " + n3.Name, outBack, outOK}} {
		if !f.ok || f.at.Sub(readyAt) > time.Second {
			t.Errorf("traffic %s not back within 1 s of the new weftd being ready (%s)", f.name, sinceReady(f.at, readyAt, f.ok))
		}
	}

	after, err := n1.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := after.Node.BackendData.WireGuardKey; got != key || got == "" {
		t.Errorf("public key changed across the restart: %s → %s", key, got)
	}
	checkSubnetsKept(t, before, after, "across the restart")
	d, err := wgDevice(n1)
	if err != nil {
		t.Fatal(err)
	}
	if d.PublicKey.String() != key {
		t.Errorf("device key after the restart %s, want %s", d.PublicKey, key)
	}
	sts, err := statuses(ctx, nodes)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkPeers(nodes, sts); err != nil {
		t.Error(err)
	}
}

func sinceReady(at, ready time.Time, ok bool) string {
	if !ok {
		return "none within 5 s"
	}
	d := at.Sub(ready)
	if d < 0 {
		return fmt.Sprintf("%.0f ms before ready was seen", -d.Seconds()*1000)
	}
	return fmt.Sprintf("%.0f ms", d.Seconds()*1000)
}

// logWGState logs every node's peers with their last handshakes (for a
// failed check).
func logWGState(t *testing.T, nodes []*e2e.Node) {
	t.Helper()
	for _, n := range nodes {
		d, err := wgDevice(n)
		if err != nil {
			t.Logf("diagnosis: %v", err)
			continue
		}
		for _, p := range d.Peers {
			t.Logf("diagnosis: %s peer %s endpoint %v allowed %v last handshake %s rx %d tx %d",
				n.Name, p.PublicKey, p.Endpoint, p.AllowedIPs, p.LastHandshakeTime.Format(time.RFC3339Nano), p.ReceiveBytes, p.TransmitBytes)
		}
	}
}

func testWGJoin(t *testing.T, c *e2e.Cluster) {
	ctx := t.Context()
	n4, err := c.AddNode(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := n4.Start(); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	ready, err := waitReadyClose(ctx, n4, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	checkJoinReach(t, c, n4, started, ready, func(*e2e.Pod) { logWGState(t, c.Nodes()) })
	sts, err := statuses(ctx, c.Nodes())
	if err != nil {
		t.Fatal(err)
	}
	if err := checkPeers(c.Nodes(), sts); err != nil {
		t.Error(err)
	}
}

func testWGLeaseRemoved(t *testing.T, c *e2e.Cluster) {
	ctx := t.Context()
	nodes := c.Nodes()
	gone := nodes[2]
	rest := nodesExcept(nodes, gone)
	st, err := gone.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	key := st.Node.BackendData.WireGuardKey
	subs := []netip.Prefix{st.Node.Subnet.Masked(), st.Node.IPv6Subnet.Masked()}
	// The other peers' sessions must survive the removal: a device whose
	// peers were replaced as a whole would have to handshake again.
	handshakes := map[string]time.Time{}
	for _, n := range rest {
		d, err := wgDevice(n)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range d.Peers {
			if p.PublicKey.String() != key && !p.LastHandshakeTime.IsZero() {
				handshakes[n.Name+" "+p.PublicKey.String()] = p.LastHandshakeTime
			}
		}
	}
	if err := gone.Stop(); err != nil {
		t.Fatal(err)
	}
	// A stopped node keeps its lease, so the others keep its peer (it may
	// come back); only the lease's removal takes it away.
	for _, n := range rest {
		d, err := wgDevice(n)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(d.Peers, func(p wgtypes.Peer) bool { return p.PublicKey.String() == key }) {
			t.Logf("%s dropped the peer of %s when it stopped, before its lease was removed", n.Name, gone.Name)
		}
	}
	if _, err := os.Stat(e2e.UAPISocket(gone.WireGuardDevice)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("weftd on %s stopped but left %s (%v)", gone.Name, e2e.UAPISocket(gone.WireGuardDevice), err)
	}
	removeLeaseAndWait(t, c, gone, rest, "peer and routes", func(n *e2e.Node) ([]string, error) {
		d, err := wgDevice(n)
		if err != nil {
			return nil, err
		}
		var left []string
		for _, p := range d.Peers {
			if p.PublicKey.String() == key {
				left = append(left, "peer "+key)
			}
		}
		k, err := n.Kernel()
		if err != nil {
			return nil, err
		}
		for _, s := range subs {
			if r, ok := k.RouteTo(s); s.IsValid() && ok {
				left = append(left, "route "+r.String())
			}
		}
		return left, nil
	})
	if t.Failed() {
		logWGState(t, rest)
		return
	}
	// The remaining peers are exactly the remaining nodes, untouched.
	sts, err := statuses(ctx, rest)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkPeers(rest, sts); err != nil {
		t.Error(err)
	}
	kept := 0
	for _, n := range rest {
		d, err := wgDevice(n)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range d.Peers {
			was, ok := handshakes[n.Name+" "+p.PublicKey.String()]
			if ok && !p.LastHandshakeTime.Equal(was) {
				t.Errorf("%s: peer %s handshook again during the removal (last handshake %s, was %s): were the peers replaced?",
					n.Name, p.PublicKey, p.LastHandshakeTime.Format(time.RFC3339Nano), was.Format(time.RFC3339Nano))
			} else if ok {
				kept++
			}
		}
	}
	// Every remaining pair talked in node-joins: each of the 3 nodes has 2
	// remaining peers with a session.
	if want := len(rest) * (len(rest) - 1); kept != want {
		t.Errorf("%d remaining peers kept their session across the removal, want %d", kept, want)
	}
	var pods []*e2e.Pod
	for _, n := range rest {
		pods = append(pods, n.Pods()...)
	}
	allToAll(t, pods, false)
}

// runningNodes returns the nodes whose weftd runs.
func runningNodes(c *e2e.Cluster) []*e2e.Node {
	var ns []*e2e.Node
	for _, n := range c.Nodes() {
		if n.Running() {
			ns = append(ns, n)
		}
	}
	return ns
}

// kernelWireGuard reports whether the kernel supports WireGuard devices,
// asking weftd's own probe from inside n's namespace.
func kernelWireGuard(n *e2e.Node) (bool, error) {
	var ok bool
	err := n.NS.Do(func() error {
		var err error
		ok, err = wireguard.KernelSupported()
		return err
	})
	return ok, err
}

// testWGModeOverride starts a new node with --wireguard-mode kernel, then
// userspace, and checks that weftd does what the flag says whatever the
// kernel offers (the probe's answer, from inside the node's namespace).
func testWGModeOverride(t *testing.T, c *e2e.Cluster) {
	ctx := t.Context()
	n, err := c.AddNode(0)
	if err != nil {
		t.Fatal(err)
	}
	kernelOK, err := kernelWireGuard(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel WireGuard support (probe in %s): %t", n.Name, kernelOK)

	t.Run("kernel", func(t *testing.T) {
		n.ExtraArgs = []string{"--wireguard-mode", "kernel"}
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		if kernelOK {
			if _, err := waitReadyClose(ctx, n, 30*time.Second); err != nil {
				t.Fatal(err)
			}
			d, err := wgDevice(n)
			if err != nil {
				t.Fatal(err)
			}
			if d.Type != wgtypes.LinuxKernel {
				t.Errorf("--wireguard-mode kernel made a %s device", d.Type)
			}
			if err := n.Stop(); err != nil {
				t.Fatal(err)
			}
			// The kernel device outlives weftd: remove it for the
			// userspace run.
			err = n.NS.WithHandle(func(h *netlink.Handle) error {
				l, err := h.LinkByName(n.WireGuardDevice)
				if err != nil {
					return err
				}
				return h.LinkDel(l)
			})
			if err != nil {
				t.Fatal(err)
			}
			return
		}
		if err := e2e.Eventually(30*time.Second, 20*time.Millisecond, func() error {
			if n.Running() {
				return fmt.Errorf("weftd on %s still runs with --wireguard-mode kernel and no kernel support", n.Name)
			}
			return nil
		}); err != nil {
			n.Stop()
			t.Fatalf("%v; log:\n%s", err, n.LogTail(20))
		}
		if log := n.LogTail(20); !strings.Contains(log, "no wireguard support") {
			t.Errorf("weftd on %s exited without saying why; log:\n%s", n.Name, log)
		}
		if _, err := os.Stat(e2e.UAPISocket(n.WireGuardDevice)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a failed kernel-mode start left %s (%v)", e2e.UAPISocket(n.WireGuardDevice), err)
		}
	})

	t.Run("userspace", func(t *testing.T) {
		n.ExtraArgs = []string{"--wireguard-mode", "userspace"}
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		if _, err := waitReadyClose(ctx, n, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		d, err := wgDevice(n)
		if err != nil {
			t.Fatal(err)
		}
		if d.Type != wgtypes.Userspace {
			t.Errorf("--wireguard-mode userspace made a %s device", d.Type)
		}
		nodes := runningNodes(c)
		err = e2e.Eventually(5*time.Second, 50*time.Millisecond, func() error {
			sts, err := statuses(ctx, nodes)
			if err != nil {
				return err
			}
			return checkPeers(nodes, sts)
		})
		if err != nil {
			t.Error(err)
		}
		// Its node address reaches a pod on every other node through the
		// tunnel (the device's own address is the source).
		for _, m := range nodes {
			if m == n {
				continue
			}
			if _, err := e2e.Ping(n.NS, m.Pods()[0].IP, 5*time.Second); err != nil {
				t.Errorf("%s → %s: %v", n.Name, m.Pods()[0].Name, err)
			}
		}
	})
}
