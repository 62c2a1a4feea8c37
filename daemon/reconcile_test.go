// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sirupsen/logrus"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/subnet"
)

// recordingBackend records what it is asked to converge to and answers
// with a preset result.
type recordingBackend struct {
	mu       sync.Mutex
	calls    []backend.Desired
	result   backend.Result
	err      error
	released int // ReleaseMemory calls
}

func (b *recordingBackend) Setup(context.Context) (backend.Attrs, error) {
	return backend.Attrs{MTU: 1450}, nil
}
func (b *recordingBackend) Close() error { return nil }

func (b *recordingBackend) ReleaseMemory() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.released++
}

func (b *recordingBackend) Reconcile(_ context.Context, d backend.Desired) (backend.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, d)
	return b.result, b.err
}

func (b *recordingBackend) last() backend.Desired {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls[len(b.calls)-1]
}

// newReconcileDaemon returns a daemon (no loops running) that holds
// 10.244.1.0/24 and reconciles with a recordingBackend.
func newReconcileDaemon(t *testing.T) (*daemon, *recordingBackend, subnet.Lease) {
	t.Helper()
	d := newLeaseHarness(t).d
	be := &recordingBackend{}
	d.be = be
	own := lease("node-a", "id-a", "10.244.1.0/24", "198.18.0.1", 10, 1)
	d.lease.cur = &own
	return d, be, own
}

func TestReconcileOnce(t *testing.T) {
	d, be, own := newReconcileDaemon(t)
	d.progress.subnetFileWritten = true
	ctx := context.Background()

	// No view yet, no snapshot: an incomplete, add-only desired state.
	d.reconcileOnce(ctx, "change")
	if got := be.last(); got.Complete || len(got.Peers) != 0 || got.Local.Subnet != own.Subnet {
		t.Errorf("before any view: %+v", got)
	}
	// Not ready: no peer list is programmed yet.
	if why := d.notReady(); why != "waiting for the first complete list of peers from the store" {
		t.Errorf("after a reconcile without any view: notReady %q", why)
	}

	// A complete view: peers handed over, snapshot saved, ready.
	d.onView(subnet.View{Complete: true, Revision: 20, Leases: []subnet.Lease{own,
		lease("node-b", "id-b", "10.244.2.0/24", "198.18.0.2", 11, 1)}})
	d.reconcileOnce(ctx, "change")
	if d.notReady() != "" {
		t.Errorf("not ready after the reconcile of a complete view: %s", d.notReady())
	}
	got := be.last()
	if !got.Complete || len(got.Peers) != 1 || got.Peers[0].Name != "node-b" {
		t.Errorf("with a view: %+v", got)
	}
	snap, err := d.state.snapshot()
	if err != nil || snap == nil || len(snap.Leases) != 2 {
		t.Errorf("snapshot after a complete view: %+v, %v", snap, err)
	}
	if st := d.status(); len(st.Peers) != 1 || st.Peers[0].Name != "node-b" || st.Peers[0].Source != "etcd" || !st.Node.Complete {
		t.Errorf("status: %+v", st)
	}

	// Same input, but the backend had to change the kernel: drift.
	be.mu.Lock()
	be.result = backend.Result{Added: 2, Problems: map[string]string{"node-b": "not on this L2 segment"}}
	be.mu.Unlock()
	d.reconcileOnce(ctx, "resync")
	if n := counterValue(d.metrics.driftRepairs); n != 1 {
		t.Errorf("drift repairs = %v, want 1", n)
	}
	if st := d.status(); st.Peers[0].Problem != "not on this L2 segment" {
		t.Errorf("backend problem not shown: %+v", st.Peers[0])
	}

	// A backend error is counted and shown.
	be.mu.Lock()
	be.result, be.err = backend.Result{}, errors.New("netlink: no buffer space")
	be.mu.Unlock()
	d.reconcileOnce(ctx, "resync")
	if n := counterValue(d.metrics.reconcileErrors); n != 1 {
		t.Errorf("reconcile errors = %v, want 1", n)
	}
	if st := d.status(); st.Node.ReconcileError == "" || !st.Node.Ready {
		t.Errorf("after a failed resync: reconcileError %q, ready %t (readiness stays once reached)", st.Node.ReconcileError, st.Node.Ready)
	}
	// Memory is handed back at each resync (the failed one too), not on
	// changes.
	be.mu.Lock()
	released := be.released
	be.mu.Unlock()
	if released != 2 {
		t.Errorf("ReleaseMemory called %d times, want 2 (once per resync)", released)
	}
	if n := counterValue(d.metrics.reconciles); n != 4 {
		t.Errorf("reconciles = %v, want 4", n)
	}
}

// TestRejectedLeasesNeverPeers: leases that are not subnets of the
// network in force at its subnet length (half the internet, a host route
// to etcd, a /25 inside a peer's /24) or whose record is malformed never
// reach the backend, and /status lists each with its reason beside the
// store's own rejections.
func TestRejectedLeasesNeverPeers(t *testing.T) {
	d, be, own := newReconcileDaemon(t)
	d.progress.subnetFileWritten = true
	noID := lease("node-f", "", "10.244.6.0/24", "198.18.0.6", 16, 1)
	d.onView(subnet.View{Complete: true, Revision: 20, Leases: []subnet.Lease{own,
		lease("node-b", "id-b", "0.0.0.0/1", "198.18.0.2", 11, 1),
		lease("node-c", "id-c", "198.18.0.2/32", "198.18.0.3", 12, 1),
		lease("node-d", "id-d", "10.244.2.128/25", "198.18.0.4", 13, 1),
		lease("node-e", "id-e", "10.244.2.0/24", "198.18.0.5", 14, 1),
		noID,
	}, Rejected: []subnet.RejectedLease{{Key: "README", Reason: "lease key \"README\" is not <address>-<prefix length>"}}})
	d.reconcileOnce(context.Background(), "change")
	if got := be.last(); !got.Complete || len(got.Peers) != 1 || got.Peers[0].Name != "node-e" {
		t.Errorf("desired peers: %+v, want node-e only", got.Peers)
	}
	want := []subnet.RejectedLease{
		{Key: "0.0.0.0-1", Reason: "subnet 0.0.0.0/1 is not a /24 of network 10.244.0.0/16"},
		{Key: "10.244.2.128-25", Reason: "subnet 10.244.2.128/25 is not a /24 of network 10.244.0.0/16"},
		{Key: "10.244.6.0-24", Reason: "record: nodeID is empty"},
		{Key: "198.18.0.2-32", Reason: "subnet 198.18.0.2/32 is not a /24 of network 10.244.0.0/16"},
		{Key: "README", Reason: "lease key \"README\" is not <address>-<prefix length>"},
	}
	st := d.status()
	if len(st.RejectedLeases) != len(want) {
		t.Fatalf("status rejectedLeases: %+v\nwant %+v", st.RejectedLeases, want)
	}
	for i := range want {
		if st.RejectedLeases[i] != want[i] {
			t.Errorf("status rejectedLeases[%d] = %+v, want %+v", i, st.RejectedLeases[i], want[i])
		}
	}
	snap, err := d.state.snapshot()
	if err != nil || snap == nil || len(snap.Leases) != 2 {
		t.Errorf("snapshot holds rejected leases: %+v, %v", snap, err)
	}
}

func TestReconcileFromSnapshot(t *testing.T) {
	d, be, _ := newReconcileDaemon(t)
	d.lease.snapshot = &subnet.View{Complete: true, Leases: []subnet.Lease{lease("node-c", "id-c", "10.244.3.0/24", "198.18.0.3", 12, 1)}}
	d.reconcileOnce(context.Background(), "change")
	if got := be.last(); !got.Complete || len(got.Peers) != 1 || got.Peers[0].Name != "node-c" {
		t.Errorf("from the saved snapshot: %+v", got)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// TestLogProblems: a backend problem is logged when it appears or changes
// and when it clears, not on every reconcile.
func TestLogProblems(t *testing.T) {
	var buf bytes.Buffer
	log := logrus.New()
	log.SetOutput(&buf)
	log.SetFormatter(&logrus.TextFormatter{DisableTimestamp: true})
	steps := []struct {
		name string
		prev map[string]string
		cur  map[string]string
		want []string // substrings of the lines logged, in order
	}{
		{"appears", nil, map[string]string{"n3": "not on this node's L2 segment"}, []string{`msg="backend cannot serve peer" peer=n3 problem="not on this node's L2 segment"`}},
		{"unchanged", map[string]string{"n3": "x"}, map[string]string{"n3": "x"}, nil},
		{"changes", map[string]string{"n3": "x"}, map[string]string{"n3": "y"}, []string{`peer=n3 problem=y`}},
		{"clears", map[string]string{"n3": "y"}, nil, []string{`msg="peer problem cleared" peer=n3`}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			buf.Reset()
			logProblems(log, s.prev, s.cur)
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if buf.Len() == 0 {
				lines = nil
			}
			if len(lines) != len(s.want) {
				t.Fatalf("logged %d lines, want %d:\n%s", len(lines), len(s.want), buf.String())
			}
			for i, w := range s.want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("line %q does not contain %q", lines[i], w)
				}
			}
		})
	}
}

// TestReadyNeedsCompleteList: a start with a saved snapshot is ready on it
// only while the store does not answer; with the store answering it waits
// for the store's own complete list.
func TestReadyNeedsCompleteList(t *testing.T) {
	for _, reachable := range []bool{true, false} {
		d, _, own := newReconcileDaemon(t)
		d.progress.subnetFileWritten = true
		peer := lease("node-b", "id-b", "10.244.2.0/24", "198.18.0.2", 11, 1)
		d.lease.snapshot = &subnet.View{Complete: true, Revision: 20, Leases: []subnet.Lease{own, peer}}
		d.setReachable(reachable)
		d.reconcileOnce(t.Context(), "change")
		ready := d.notReady() == ""
		if ready == reachable {
			t.Errorf("store reachable %t, snapshot programmed, no view from the store: ready %t (%s)", reachable, ready, d.notReady())
		}
		if reachable {
			d.onView(subnet.View{Complete: true, Revision: 21, Leases: []subnet.Lease{own, peer}})
			d.reconcileOnce(t.Context(), "change")
			if why := d.notReady(); why != "" {
				t.Errorf("after the store's complete view: not ready: %s", why)
			}
		}
	}
}

// TestLeasesDigest: the digest that decides whether the peer snapshot is
// rewritten ignores order and what a renewal changes, and sees any other
// change.
func TestLeasesDigest(t *testing.T) {
	lease := func(s, ip string) subnet.Lease {
		return subnet.Lease{Subnet: netip.MustParsePrefix(s), Epoch: 3, ModRevision: 10, LeaseID: 7, Expiry: time.Unix(100, 0),
			Record: subnet.Record{NodeName: "n-" + s, PublicIP: netip.MustParseAddr(ip), BackendType: "vxlan"}}
	}
	a, b := lease("10.244.1.0/24", "198.18.0.1"), lease("10.244.2.0/24", "198.18.0.2")
	base := leasesDigest([]subnet.Lease{a, b})
	if leasesDigest(nil) != 0 || base == 0 {
		t.Fatalf("digest of no leases %d, of two %d: want 0 and not 0", leasesDigest(nil), base)
	}
	if got := leasesDigest([]subnet.Lease{b, a}); got != base {
		t.Errorf("digest depends on order: %d, %d", base, got)
	}
	renewed := a
	renewed.ModRevision, renewed.LeaseID, renewed.Expiry = 11, 8, time.Unix(200, 0)
	if got := leasesDigest([]subnet.Lease{renewed, b}); got != base {
		t.Errorf("a renewal changed the digest")
	}
	moved := a
	moved.Record.PublicIP = netip.MustParseAddr("198.18.0.9")
	reclaimed := a
	reclaimed.Epoch = 4
	for name, ls := range map[string][]subnet.Lease{
		"moved": {moved, b}, "re-claimed": {reclaimed, b}, "one removed": {a}, "one twice": {a, b, b},
	} {
		if leasesDigest(ls) == base {
			t.Errorf("%s: digest unchanged", name)
		}
	}
}
