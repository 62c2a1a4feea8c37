// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package cni_test

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/cni"
	"github.com/weftnet/weft/cni/antispoof"
	"github.com/weftnet/weft/cni/gate"
	"github.com/weftnet/weft/e2e/netnstest"
)

// TestPolicyGate: ADD holds the new pod at the gate (package cni/gate)
// only when weftd made it, and returns only once it is released, with
// real packets. Two pods on one bridge: peer (added before the gate
// exists: never held, no wait) and new. While new is held, with its
// address configured, peer's UDP probes to it are dropped; once the
// stand-in for weftd releases it, ADD returns and the same probe is
// answered. Without a release ADD fails after policyWait (code 11) and
// leaves nothing behind.
func TestPolicyGate(t *testing.T) {
	e := newEnv(t)
	l := e.confList("1.1.0", e.weftConf(nil))
	peerNS := netnstest.NewNS(t, "weftcni-peer")
	start := time.Now()
	if _, err := e.add(l, runtimeConf("ctr-peer", peerNS)); err != nil {
		t.Fatalf("ADD without a gate: %v", err)
	}
	noGate := time.Since(start)
	var held []gate.Pending
	if err := e.inNode(func() (err error) { held, err = listGate(); return err }); err != nil || len(held) > 0 {
		t.Fatalf("without a gate ADD held %v (%v)", held, err)
	}

	// The gate, as weftd makes it.
	if err := e.inNode(func() error { return admit(nil) }); err != nil {
		t.Fatalf("make the gate: %v", err)
	}

	// Nobody releases: ADD fails after policyWait, code 11, and leaves
	// nothing (the runtime's DEL after it finds nothing to do either).
	short := e.confList("1.1.0", e.weftConf(map[string]any{"policyWait": "300ms"}))
	lostNS := netnstest.NewNS(t, "weftcni-lost")
	start = time.Now()
	_, err := e.add(short, runtimeConf("ctr-lost", lostNS))
	var ce *types.Error
	if !errors.As(err, &ce) || ce.Code != types.ErrTryAgainLater || !strings.Contains(ce.Msg, "policyWait") {
		t.Fatalf("ADD with nobody to release the pod: got %v, want code %d naming policyWait", err, types.ErrTryAgainLater)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("ADD failed after %s, before policyWait (300ms)", took)
	}
	t.Logf("ADD with nobody to release: %v", err)
	if err := e.del(short, runtimeConf("ctr-lost", lostNS)); err != nil {
		t.Errorf("DEL after the failed ADD: %v", err)
	}
	if err := e.inNode(func() (err error) { held, err = listGate(); return err }); err != nil || len(held) > 0 {
		t.Errorf("after the failed ADD the gate holds %v (%v)", held, err)
	}
	if _, err := e.nl.LinkByName(cni.HostVethName("ctr-lost", "eth0")); err == nil {
		t.Error("the failed ADD left its veth")
	}

	// A stand-in for weftd: once new's address is held and configured,
	// probe it from peer (dropped, or the test fails), then release it
	// as weftd does (the pod record must match).
	newNS := netnstest.NewNS(t, "weftcni-new")
	netnstest.UDPEcho(t, newNS, netip.MustParseAddrPort("0.0.0.0:80"))
	port := cni.HostVethName("ctr-new", "eth0")
	var wg sync.WaitGroup
	var probeErr error
	var released time.Time
	wg.Add(1)
	go func() {
		defer wg.Done()
		deadline := time.Now().Add(10 * time.Second)
		for ; time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			var ps []gate.Pending
			if err := e.inNode(func() (err error) { ps, err = listGate(); return err }); err != nil {
				probeErr = err
				return
			}
			var mine []gate.Pending
			for _, p := range ps {
				if p.Port == port && p.Addr.Is4() {
					mine = append(mine, p)
				}
			}
			if len(mine) == 0 || !configured(newNS, mine[0].Addr) {
				continue
			}
			if netnstest.UDPRoundTrip(peerNS, netip.AddrPortFrom(mine[0].Addr, 80), 300*time.Millisecond) == nil {
				probeErr = errors.New("peer's probe reached new while it was held")
			}
			r, err := antispoof.ReadRecord(e.dataDir, port)
			if err != nil {
				probeErr = err
				return
			}
			var all []gate.Pending
			for _, p := range ps {
				if p.Port == port && strings.EqualFold(p.MAC, r.MAC) {
					all = append(all, p)
				}
			}
			released = time.Now()
			if err := e.inNode(func() error { return admit(all) }); err != nil {
				probeErr = err
			}
			return
		}
		probeErr = errors.New("new was never held with its address configured")
	}()
	res, err := e.add(l, runtimeConf("ctr-new", newNS))
	returned := time.Now()
	wg.Wait()
	if err != nil {
		t.Fatalf("ADD released by the stand-in: %v", err)
	}
	if probeErr != nil {
		t.Fatal(probeErr)
	}
	if returned.Before(released) {
		t.Errorf("ADD returned %s before the release", released.Sub(returned))
	}
	t.Logf("ADD returned %s after the release; ADD without a gate took %s", returned.Sub(released).Round(time.Microsecond), noGate.Round(time.Microsecond))
	ip := res.IPs[0].Address.IP
	dst, _ := netip.AddrFromSlice(ip.To4())
	if err := netnstest.UDPRoundTrip(peerNS, netip.AddrPortFrom(dst, 80), 2*time.Second); err != nil {
		t.Errorf("after ADD returned, peer → new: %v", err)
	}

	// CHECK passes on the released pod and fails while it is held again
	// (an element added by hand, as a stale one would be).
	if err := e.check(l, runtimeConf("ctr-new", newNS)); err != nil {
		t.Errorf("CHECK of the released pod: %v", err)
	}
	r, err := antispoof.ReadRecord(e.dataDir, port)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.inNode(func() error {
		if ok, err := gate.Hold(port, r.MAC, []netip.Addr{dst}); err != nil || !ok {
			return fmt.Errorf("hold %s by hand: held %t, %v", dst, ok, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	err = e.check(l, runtimeConf("ctr-new", newNS))
	if !errors.As(err, &ce) || ce.Code != cni.CodeCheckFailed || !strings.Contains(ce.Msg, "held at the pod gate") {
		t.Errorf("CHECK of a held pod: got %v, want code %d saying it is held at the pod gate", err, cni.CodeCheckFailed)
	}
	if err := e.inNode(func() error { return admit([]gate.Pending{{Addr: dst, Port: port, MAC: r.MAC}}) }); err != nil {
		t.Fatal(err)
	}
	if err := e.check(l, runtimeConf("ctr-new", newNS)); err != nil {
		t.Errorf("CHECK once released again: %v", err)
	}

	// ADD with and without the wait, alternating, with the plugin's own
	// step times: the gate removed (nothing held, no wait), and the gate
	// with a stand-in for weftd that releases each pod once it sees it
	// held (the e2e test times ADD with the real weftd).
	timed := map[bool][]time.Duration{}
	for i := range 8 {
		gated := i%2 == 1
		var stop func()
		if gated {
			if err := e.inNode(func() error { return admit(nil) }); err != nil {
				t.Fatal(err)
			}
			stop = releaseAsHeld(t, e)
		} else if err := e.inNode(removeGate); err != nil {
			t.Fatal(err)
		}
		ns := netnstest.NewNS(t, "weftcni-t")
		id := fmt.Sprintf("ctr-t%d", i)
		trace := filepath.Join(t.TempDir(), "trace")
		env := append(cniEnv("ADD", id, "/run/netns/"+ns.Name, "eth0", hookDir), "WEFT_CNI_TEST_TRACE="+trace)
		start := time.Now()
		if _, err := e.execPlugin(hookDir, env, e.weftJSON("1.1.0", nil)); err != nil {
			t.Fatalf("ADD %s (gate %t): %v", id, gated, err)
		}
		timed[gated] = append(timed[gated], time.Since(start))
		if stop != nil {
			stop()
		}
		if b, err := os.ReadFile(trace); err == nil && i >= 6 {
			t.Logf("ADD steps (gate %t): %s", gated, strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", ", "))
		}
		if err := e.del(l, runtimeConf(id, ns)); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range []bool{false, true} {
		slices.Sort(timed[g])
	}
	t.Logf("ADD median without the gate %s, with the gate and the stand-in's release (its listing and apply, not weftd's) %s (4 each, alternating)",
		timed[false][2].Round(time.Microsecond), timed[true][2].Round(time.Microsecond))

	for _, id := range []string{"ctr-new", "ctr-peer"} {
		ns := map[string]*netnstest.NS{"ctr-new": newNS, "ctr-peer": peerNS}[id]
		if err := e.del(l, runtimeConf(id, ns)); err != nil {
			t.Errorf("DEL %s: %v", id, err)
		}
	}
	e.assertClean()
}

// listGate lists the gate in the calling thread's namespace.
func listGate() ([]gate.Pending, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, err
	}
	return gate.List(c)
}

// admit makes the gate complete and releases ps, as weftd's apply does.
func admit(ps []gate.Pending) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	if err := gate.QueueAdmit(c, ps); err != nil {
		return err
	}
	return c.Flush()
}

// configured reports whether a is an address of ns's eth0.
func configured(ns *netnstest.NS, a netip.Addr) bool {
	found := false
	_ = ns.Do(func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return nil
		}
		addrs, err := backend.AddrList(nil, l, netlink.FAMILY_ALL)
		for _, x := range addrs {
			if y, ok := netip.AddrFromSlice(x.IP); ok && y.Unmap() == a {
				found = true
			}
		}
		return err
	})
	return found
}

// removeGate deletes the gate in the calling thread's namespace.
func removeGate() error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	gate.Remove(c)
	return c.Flush()
}

// releaseAsHeld runs a stand-in for weftd's release in e's node: every
// held address whose pod record matches is released at once. The
// returned func stops it.
func releaseAsHeld(t *testing.T, e *testEnv) func() {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		_ = e.inNode(func() error {
			c, err := nftables.New()
			if err != nil {
				return err
			}
			for {
				select {
				case <-done:
					return nil
				default:
				}
				ps, _ := gate.List(c)
				var rel []gate.Pending
				for _, p := range ps {
					if r, err := antispoof.ReadRecord(e.dataDir, p.Port); err == nil && strings.EqualFold(r.MAC, p.MAC) {
						rel = append(rel, p)
					}
				}
				if len(rel) > 0 {
					if err := gate.QueueAdmit(c, rel); err == nil {
						_ = c.Flush()
					}
				}
				time.Sleep(time.Millisecond)
			}
		})
	}()
	return func() { close(done); <-stopped }
}
