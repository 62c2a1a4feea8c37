// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package wireguard

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func TestFlowGateWaitsForProgress(t *testing.T) {
	g := newFlowGate(4, time.Minute)
	g.read(10)
	admitted := make(chan struct{})
	go func() {
		g.admit()
		close(admitted)
	}()
	select {
	case <-admitted:
		t.Fatal("admitted with 10 packets in flight over a bound of 4")
	case <-time.After(100 * time.Millisecond):
	}
	g.done(3) // 7 in flight: still over
	select {
	case <-admitted:
		t.Fatal("admitted with 7 packets in flight over a bound of 4")
	case <-time.After(100 * time.Millisecond):
	}
	g.done(3) // 4 in flight: at the bound
	select {
	case <-admitted:
	case <-time.After(10 * time.Second):
		t.Fatal("not admitted once the packets went out")
	}
	if n := g.forgivenCount(); n != 0 {
		t.Errorf("forgiven %d times, want 0", n)
	}
}

func TestFlowGateForgetsDroppedPackets(t *testing.T) {
	const wait = 50 * time.Millisecond
	g := newFlowGate(4, wait)
	g.read(100) // never written out: dropped inside the device
	start := time.Now()
	g.admit()
	if d := time.Since(start); d < wait || d > 5*time.Second {
		t.Errorf("admitted after %v, want about %v", d, wait)
	}
	if n := g.forgivenCount(); n != 1 {
		t.Errorf("forgiven %d times, want 1", n)
	}
	// The count is forgotten: the next reads go through at once.
	g.read(4)
	start = time.Now()
	g.admit()
	if d := time.Since(start); d >= wait {
		t.Errorf("admitted after %v with the count forgotten", d)
	}
}

func TestFlowGateCountNotNegative(t *testing.T) {
	g := newFlowGate(4, time.Minute)
	g.done(50) // handshakes and keepalives, never read from the TUN
	g.read(5)
	if n := g.inflight.Load(); n != 5 {
		t.Errorf("in flight %d, want 5", n)
	}
}

func TestFlowGateOff(t *testing.T) {
	g := newFlowGate(0, time.Minute)
	if g != nil {
		t.Fatal("a bound of 0 made a gate")
	}
	g.read(1000)
	g.admit() // must not block
	g.done(1)
	if n := g.forgivenCount(); n != 0 {
		t.Errorf("forgiven %d", n)
	}
}

// TestFlowGateSurvivesDrops floods a peer that never completes a
// handshake (its node is gone), so that every packet towards it is read
// from the TUN and dropped inside the device, and checks that traffic to
// a live peer still flows and that the device's reader did give up
// waiting on the dropped packets.
func TestFlowGateSurvivesDrops(t *testing.T) {
	tp := newTopology(t, 3)
	n1, n2, n3 := tp.nodes[0], tp.nodes[1], tp.nodes[2]
	for _, nd := range tp.nodes {
		nd.start(t)
	}
	n1.reconcile(t, n1.desired(true, n2))
	n2.reconcile(t, n2.desired(true, n1))
	// n3 goes away before n1 ever handshakes with it; n1 keeps it as a
	// peer.
	if _, err := n3.h.stop(); err != nil {
		t.Fatal(err)
	}
	n1.reconcile(t, n1.desired(true, n2, n3))

	l := listenUDP(t, n2.ns, n2.subnet.Addr())
	if _, ok := reach(t, n1.ns, netip.Addr{}, l, "before", "x", 10*time.Second); !ok {
		t.Fatal("tunnel to n2 not working")
	}

	stop := make(chan struct{})
	flooded := make(chan int)
	c := dialUDP(t, n1.ns, n1.subnet.Addr(), netip.AddrPortFrom(n3.subnet.Addr().Next(), 9))
	go func() {
		n := 0
		buf := make([]byte, 1200)
		for {
			select {
			case <-stop:
				flooded <- n
				return
			default:
			}
			if _, err := c.Write(buf); err == nil {
				n++
			}
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
			<-flooded
		}
	}()

	for i := range 10 {
		tag := fmt.Sprintf("during%d", i)
		if d, ok := reach(t, n1.ns, netip.Addr{}, l, tag, "x", 5*time.Second); !ok {
			t.Fatalf("n1 → n2 blocked while packets to the dead peer are dropped (%s)", tag)
		} else if d > time.Second {
			t.Logf("%s took %v", tag, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	n := <-flooded
	r, err := n1.h.call(helperRequest{Op: "flow"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d datagrams sent towards the dead peer; the outbound reader gave up waiting %d times", n, r.Forgiven[0])
	if n < 10*int(flowBound) {
		t.Fatalf("only %d datagrams flooded: the test did not fill the gate", n)
	}
	if r.Forgiven[0] == 0 {
		t.Fatal("the outbound reader never gave up waiting: the drops did not reach the gate")
	}
	if _, ok := reach(t, n1.ns, netip.Addr{}, l, "after", "x", 5*time.Second); !ok {
		t.Fatal("n1 → n2 blocked after the flood")
	}
}
