// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/daemon/membership"
	"github.com/weftnet/weft/subnet"
)

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

func lease(node, id, sn string, ip string, epoch int64, version uint64) subnet.Lease {
	return subnet.Lease{
		Subnet: pfx(sn), Epoch: epoch,
		Record: subnet.Record{NodeName: node, NodeID: id, PublicIP: addr(ip), BackendType: "vxlan",
			BackendData: subnet.BackendData{VTEPMAC: "02:00:00:00:00:01"}, Version: version, GossipAddr: ip + ":7950"},
	}
}

func pv(name, sn, ip string, src string) membership.PeerView {
	return membership.PeerView{Peer: backend.Peer{Name: name, Subnet: pfx(sn), PublicIP: addr(ip)}, Source: src}
}

func TestBuildDesired(t *testing.T) {
	self := &subnet.Lease{Subnet: pfx("10.244.1.0/24"), IPv6Subnet: pfx("fd10:244:0:1::/64")}
	tests := []struct {
		name     string
		self     *subnet.Lease
		peers    []membership.PeerView
		complete bool
		want     backend.Desired
	}{
		{
			name: "no lease, no peers",
			want: backend.Desired{},
		},
		{
			name:     "peers sorted, self and unusable peers left out",
			self:     self,
			complete: true,
			peers: []membership.PeerView{
				pv("c", "10.244.3.0/24", "198.18.0.3", "etcd"),
				pv("me", "10.244.9.0/24", "198.18.0.9", "etcd"),  // our name
				pv("old", "10.244.1.0/24", "198.18.0.7", "etcd"), // our subnet: a stale record of ours
				pv("a", "10.244.2.0/24", "198.18.0.2", "gossip"),
				{Peer: backend.Peer{Name: "noip", Subnet: pfx("10.244.4.0/24")}},                                     // no public IP
				{Peer: backend.Peer{Name: "nosubnet", PublicIP: addr("198.18.0.5")}},                                 // no subnet
				{Peer: backend.Peer{Name: "v6", IPv6Subnet: pfx("fd10:244:0:1::/64"), PublicIP: addr("198.18.0.6")}}, // our v6 subnet
			},
			want: backend.Desired{
				Local:    backend.Local{Subnet: pfx("10.244.1.0/24"), IPv6Subnet: pfx("fd10:244:0:1::/64")},
				Complete: true,
				Peers: []backend.Peer{
					{Name: "a", Subnet: pfx("10.244.2.0/24"), PublicIP: addr("198.18.0.2")},
					{Name: "c", Subnet: pfx("10.244.3.0/24"), PublicIP: addr("198.18.0.3")},
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := buildDesired(tt.self, "me", tt.peers, tt.complete)
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			again := buildDesired(tt.self, "me", tt.peers, tt.complete)
			if !desiredEqual(got, again) {
				t.Error("two builds from the same input differ")
			}
		})
	}
}

func TestBuildDesiredFromMerge(t *testing.T) {
	// The real Merge feeds buildDesired: a lease view with our own lease and
	// two peers gives exactly the two peers.
	view := subnet.View{Complete: true, Leases: []subnet.Lease{
		lease("me", "id-me", "10.244.1.0/24", "198.18.0.1", 10, 1),
		lease("b", "id-b", "10.244.2.0/24", "198.18.0.2", 11, 1),
		lease("c", "id-c", "10.244.3.0/24", "198.18.0.3", 12, 4),
	}}
	self := &view.Leases[0]
	d := buildDesired(self, "me", membership.Merge(membership.MergeInput{Self: "me", View: view, Authoritative: true}), view.Complete)
	var names []string
	for _, p := range d.Peers {
		names = append(names, p.Name+"="+p.Subnet.String())
	}
	if diff := cmp.Diff([]string{"b=10.244.2.0/24", "c=10.244.3.0/24"}, names); diff != "" {
		t.Errorf("peers (-want +got):\n%s", diff)
	}
	if d.Peers[1].Epoch != 12 || d.Peers[1].Version != 4 || d.Peers[1].Data.VTEPMAC == "" {
		t.Errorf("peer c lost its epoch, version or data: %+v", d.Peers[1])
	}
	if !d.Complete || d.Local.Subnet != pfx("10.244.1.0/24") {
		t.Errorf("desired = %+v", d)
	}
}

func TestDiffPeers(t *testing.T) {
	a := backend.Peer{Name: "a", Subnet: pfx("10.244.2.0/24"), PublicIP: addr("198.18.0.2")}
	b := backend.Peer{Name: "b", Subnet: pfx("10.244.3.0/24"), PublicIP: addr("198.18.0.3")}
	b2 := b
	b2.PublicIP = addr("198.18.0.33")
	c := backend.Peer{Name: "c", IPv6Subnet: pfx("fd10:244:0:4::/64"), PublicIP: addr("198.18.0.4")}
	got := diffPeers([]backend.Peer{a, b}, []backend.Peer{b2, c})
	want := peerDiff{Added: []backend.Peer{c}, Updated: []backend.Peer{b2}, Removed: []backend.Peer{a}}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(x, y backend.Peer) bool { return x == y })); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if d := diffPeers([]backend.Peer{a, b}, []backend.Peer{a, b}); d.Added != nil || d.Removed != nil || d.Updated != nil {
		t.Errorf("no change gave %+v", d)
	}
}

func TestRestartChanges(t *testing.T) {
	base := func() *subnet.Config {
		return &subnet.Config{Network: pfx("10.244.0.0/16"), SubnetLen: 24, Backend: subnet.BackendConfig{Type: "vxlan", VNI: 1, Port: 8472}}
	}
	tests := []struct {
		name   string
		change func(*subnet.Config)
		want   []string
	}{
		{name: "same", change: func(*subnet.Config) {}},
		{name: "subnet range applies live", change: func(c *subnet.Config) { c.SubnetMin = addr("10.244.10.0") }},
		{name: "network", change: func(c *subnet.Config) { c.Network = pfx("10.245.0.0/16") }, want: []string{"Network: 10.244.0.0/16 → 10.245.0.0/16"}},
		{name: "ipv6 added", change: func(c *subnet.Config) { c.IPv6Network = pfx("fd10:244::/56") }, want: []string{"IPv6Network: none → fd10:244::/56"}},
		{name: "backend", change: func(c *subnet.Config) { c.Backend = subnet.BackendConfig{Type: "wireguard", ListenPort: 51820} },
			want: []string{"Backend.Type: vxlan → wireguard", "Backend.VNI: 1 → 0", "Backend.Port: 8472 → 0", "Backend.ListenPort: 0 → 51820"}},
		{name: "subnet len", change: func(c *subnet.Config) { c.SubnetLen = 26 }, want: []string{"SubnetLen: 24 → 26"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cur := base()
			tt.change(cur)
			if diff := cmp.Diff(tt.want, restartChanges(base(), cur)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestFoldGossip(t *testing.T) {
	base := subnet.View{Complete: true, Revision: 40, Leases: []subnet.Lease{
		lease("b", "id-b", "10.244.2.0/24", "198.18.0.2", 11, 3),
		lease("c", "id-c", "10.244.3.0/24", "198.18.0.3", 12, 1),
	}}
	newer := pv("b", "10.244.2.0/24", "198.18.0.22", membership.SourceGossip)
	newer.Epoch, newer.Version, newer.Data = 11, 4, subnet.BackendData{VTEPMAC: "02:00:00:00:00:22"}
	wrongEpoch := pv("c", "10.244.3.0/24", "198.18.0.33", membership.SourceGossip)
	wrongEpoch.Epoch, wrongEpoch.Version = 99, 9
	prov := pv("d", "10.244.4.0/24", "198.18.0.4", membership.SourceGossip)
	prov.Epoch, prov.Version, prov.Provisional = 50, 1, true

	got := foldGossip(base, []membership.PeerView{newer, wrongEpoch, prov})
	if got.Leases[0].Record.PublicIP != addr("198.18.0.22") || got.Leases[0].Record.Version != 4 || got.Leases[0].Record.BackendData.VTEPMAC != "02:00:00:00:00:22" {
		t.Errorf("newer gossip data not folded in: %+v", got.Leases[0].Record)
	}
	if got.Leases[1].Record.PublicIP != addr("198.18.0.3") {
		t.Errorf("data of another epoch was folded in: %+v", got.Leases[1].Record)
	}
	if len(got.Leases) != 2 {
		t.Errorf("provisional peer added to the snapshot: %d leases", len(got.Leases))
	}
	if base.Leases[0].Record.PublicIP != addr("198.18.0.2") {
		t.Error("foldGossip modified its input")
	}
}

func TestFindOwnAndGossipAddrs(t *testing.T) {
	v := subnet.View{Leases: []subnet.Lease{
		lease("me", "id-me", "10.244.1.0/24", "198.18.0.1", 10, 1),
		lease("b", "id-b", "10.244.2.0/24", "198.18.0.2", 11, 1),
		lease("b2", "id-b2", "10.244.5.0/24", "198.18.0.2", 13, 1), // same gossip address
	}}
	if own, other := findOwn(v, pfx("10.244.1.0/24"), "id-me"); own == nil || other != nil {
		t.Errorf("own lease not found: %v %v", own, other)
	}
	if own, other := findOwn(v, pfx("10.244.2.0/24"), "id-me"); own != nil || other == nil || other.NodeName != "b" {
		t.Errorf("holder of a taken subnet not reported: %v %v", own, other)
	}
	if own, other := findOwn(v, pfx("10.244.9.0/24"), "id-me"); own != nil || other != nil {
		t.Errorf("absent subnet: %v %v", own, other)
	}
	joined := map[string]bool{}
	if diff := cmp.Diff([]string{"198.18.0.2:7950"}, gossipAddrs(v, "id-me", joined)); diff != "" {
		t.Errorf("gossip addrs (-want +got):\n%s", diff)
	}
	if again := gossipAddrs(v, "id-me", joined); len(again) != 0 {
		t.Errorf("gossip addrs handed out twice: %v", again)
	}
}

func TestLeaseFits(t *testing.T) {
	nc := &subnet.Config{Network: pfx("10.244.0.0/16"), IPv6Network: pfx("fd10:244::/56")}
	tests := []struct {
		name string
		l    subnet.Lease
		want bool
	}{
		{"dual stack inside", subnet.Lease{Subnet: pfx("10.244.1.0/24"), IPv6Subnet: pfx("fd10:244:0:1::/64")}, true},
		{"v4 only in a dual-stack network", subnet.Lease{Subnet: pfx("10.244.1.0/24")}, false},
		{"outside", subnet.Lease{Subnet: pfx("10.245.1.0/24"), IPv6Subnet: pfx("fd10:244:0:1::/64")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := leaseFits(&tt.l, nc); got != tt.want {
				t.Errorf("leaseFits = %t, want %t", got, tt.want)
			}
		})
	}
}

func TestSubnetTakenError(t *testing.T) {
	prev := &subnet.Lease{Subnet: pfx("10.244.1.0/24")}
	err := subnetTakenError(prev, "node-x", prev)
	for _, want := range []string{"10.244.1.0/24", "node-x", "must be recreated"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
}

// TestDebounceLoop: a kick after a quiet spell runs at once; a burst of
// kicks gives one call at once and one for the rest, not before the delay
// has passed since the first.
func TestDebounceLoop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kick := make(chan struct{}, 1)
	const delay = 300 * time.Millisecond
	var mu sync.Mutex
	var at []time.Time
	reasons := make(chan string, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		debounceLoop(ctx, kick, delay, time.Hour, func(r string) {
			mu.Lock()
			at = append(at, time.Now())
			mu.Unlock()
			reasons <- r
		}, nil)
	}()
	calls := func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(at)
	}
	send := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	// A burst of kicks: the first runs at once, the others together.
	start := time.Now()
	for range 10 {
		send()
		time.Sleep(time.Millisecond)
	}
	waitFor(t, time.Second, func() bool { return len(calls()) >= 1 })
	if first := calls()[0].Sub(start); first > delay/2 {
		t.Errorf("first kick ran after %s, want at once", first)
	}
	waitFor(t, 2*time.Second, func() bool { return len(calls()) >= 2 })
	c := calls()
	if gap := c[1].Sub(c[0]); gap < delay-10*time.Millisecond {
		t.Errorf("the rest of the burst ran %s after the first call, want about %s", gap, delay)
	}
	// Nothing more arrives for a while after the burst.
	deadline := time.Now().Add(delay + 100*time.Millisecond)
	for time.Now().Before(deadline) {
		if n := len(calls()); n != 2 {
			t.Fatalf("a burst of kicks gave %d reconciles, want 2", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A kick after a quiet spell runs at once again.
	kicked := time.Now()
	send()
	waitFor(t, time.Second, func() bool { return len(calls()) == 3 })
	if after := calls()[2].Sub(kicked); after > delay/2 {
		t.Errorf("a kick after a quiet spell ran after %s, want at once", after)
	}
	cancel()
	<-done
	for range 3 {
		if r := <-reasons; r != "change" {
			t.Errorf("reason %q, want change", r)
		}
	}
}

func TestDebounceLoopResync(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int32
	var beats atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		debounceLoop(ctx, make(chan struct{}), time.Hour, 20*time.Millisecond,
			func(r string) {
				if r == "resync" {
					calls.Add(1)
				}
			}, func() { beats.Add(1) })
	}()
	waitFor(t, 2*time.Second, func() bool { return calls.Load() >= 3 })
	cancel()
	<-done
	if beats.Load() < 3 {
		t.Errorf("heartbeat called %d times", beats.Load())
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestMergeDropsDeleted: a member's gossip must not bring back a lease
// etcd deleted (the view is newer than its epoch).
func TestMergeDropsDeleted(t *testing.T) {
	view := subnet.View{Complete: true, Revision: 100, Leases: []subnet.Lease{
		lease("b", "id-b", "10.244.2.0/24", "198.18.0.2", 50, 1),
	}}
	member := func(name, sn string, epoch int64, state membership.State) membership.Member {
		return membership.Member{Name: name, Addr: "x:7950", State: state, Meta: membership.Meta{
			NodeID: "id-" + name, Subnet: pfx(sn), PublicIP: addr("198.18.0.9"), Epoch: epoch, Version: 1}}
	}
	members := []membership.Member{
		member("b", "10.244.2.0/24", 50, membership.StateAlive),
		member("c", "10.244.3.0/24", 60, membership.StateLeft),   // evicted: epoch 60 < revision 100
		member("d", "10.244.4.0/24", 120, membership.StateAlive), // claimed after the view: provisional
	}
	var got []string
	for _, p := range membership.Merge(membership.MergeInput{
		Self: "a", View: view, Members: members,
		Network: &subnet.Config{Network: pfx("10.244.0.0/16"), SubnetLen: 24}, // etcd unreachable: claims are checked
	}) {
		got = append(got, fmt.Sprintf("%s provisional=%t", p.Name, p.Provisional))
	}
	if diff := cmp.Diff([]string{"b provisional=false", "d provisional=true"}, got); diff != "" {
		t.Errorf("peers (-want +got):\n%s", diff)
	}
}
