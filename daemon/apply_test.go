// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/daemon/membership"
	"github.com/weftnet/weft/subnet"
)

// kernelBackend keeps what a backend would program, peer by peer: a full
// Reconcile replaces it, an Update changes the peers named. It counts the
// calls of each kind.
type kernelBackend struct {
	recordingBackend
	mu         sync.Mutex
	kernel     map[netip.Prefix]backend.Peer
	reconciles int
	updates    [][]backend.Change
	updateErr  error
}

func (b *kernelBackend) Reconcile(ctx context.Context, d backend.Desired) (backend.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reconciles++
	b.kernel = map[netip.Prefix]backend.Peer{}
	for _, p := range d.Peers {
		b.kernel[primaryOf(p)] = p
	}
	return b.recordingBackend.Reconcile(ctx, d)
}

func (b *kernelBackend) Update(_ context.Context, changes []backend.Change) (backend.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.updates = append(b.updates, changes)
	if b.updateErr != nil {
		return backend.Result{}, b.updateErr
	}
	var res backend.Result
	for _, c := range changes {
		if c.Old != nil {
			delete(b.kernel, primaryOf(*c.Old))
			res.Removed++
		}
		if c.New != nil {
			b.kernel[primaryOf(*c.New)] = *c.New
			res.Added++
		}
	}
	return res, nil
}

func (b *kernelBackend) counts() (reconciles, updates int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reconciles, len(b.updates)
}

// TestReconcileAppliesChanges: between resyncs, a changed lease or gossip
// update reaches the backend as a change of that peer alone; whatever the
// path (changes or a full reconcile), what the backend holds is exactly
// what the full check accepts over the whole peer set: a change never
// admits an entry the full check rejects (a VTEP MAC or an IPv6 subnet
// another peer holds), and an entry that a removal makes valid is
// admitted. A resync, and a failed update, reconcile in full.
func TestReconcileAppliesChanges(t *testing.T) {
	d, _, own := newReconcileDaemon(t)
	nc, err := subnet.ParseConfig([]byte(`{"Network":"10.244.0.0/16","IPv6Network":"fd10:244::/56","Backend":{"Type":"vxlan"}}`))
	if err != nil {
		t.Fatal(err)
	}
	d.netconf.inForce = nc
	be := &kernelBackend{}
	d.be = be
	g := &fakeGossip{}
	d.gossip = g
	d.progress.subnetFileWritten = true
	ctx := context.Background()

	peer := func(name string, n byte, epoch int64, v6 byte) subnet.Lease {
		l := lease(name, "id-"+name, "10.244.0.0/24", "198.18.0.1", epoch, 1)
		l.Subnet = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, n, 0}), 24)
		l.Record.PublicIP = netip.AddrFrom4([4]byte{198, 18, 0, n})
		l.Record.BackendData.VTEPMAC = "02:00:00:00:01:" + string("0123456789"[n%10]) + "0"
		if v6 > 0 {
			l.IPv6Subnet = netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0x10, 0x02, 0x44, 0, 0, 0, v6}), 64)
		}
		return l
	}
	leases := map[string]subnet.Lease{
		"node-b": peer("node-b", 2, 11, 0),
		"node-c": peer("node-c", 3, 12, 3),
		"node-d": peer("node-d", 4, 13, 0),
	}
	rev := int64(20)
	view := func() {
		v := subnet.View{Complete: true, Revision: rev, Leases: []subnet.Lease{own}}
		for _, l := range leases {
			v.Leases = append(v.Leases, l)
		}
		rev++
		d.onView(v)
	}
	// fullCheck is what the backend must hold: the full check's accepted
	// entries over the merged view, as a full reconcile would build them.
	fullCheck := func() map[netip.Prefix]backend.Peer {
		d.lease.mu.Lock()
		base := d.lease.view
		d.lease.mu.Unlock()
		peers := membership.Merge(membership.MergeInput{Self: d.nodeName, View: base, Members: g.Members(), Network: nc, Authoritative: true})
		desired := buildDesired(d.lease.cur, d.nodeName, peers, true)
		acc, _ := backend.CheckPeers(d.checkInput(nc, desired.Local), desired.Peers)
		m := map[netip.Prefix]backend.Peer{}
		for _, p := range acc {
			m[primaryOf(p)] = p
		}
		return m
	}
	step := func(what string, wantReconciles, wantUpdates int) {
		t.Helper()
		r0, u0 := be.counts()
		d.reconcileOnce(ctx, "change")
		r1, u1 := be.counts()
		if r1-r0 != wantReconciles || u1-u0 != wantUpdates {
			t.Errorf("%s: %d full reconciles and %d updates, want %d and %d", what, r1-r0, u1-u0, wantReconciles, wantUpdates)
		}
		be.mu.Lock()
		got := be.kernel
		be.mu.Unlock()
		if want := fullCheck(); !maps.Equal(want, got) {
			t.Errorf("%s: the backend holds other entries than the full check accepts:\nbackend: %v\nfull check: %v", what, got, want)
		}
	}
	rejected := func(name string) string {
		for _, r := range d.status().Rejected {
			if r.Name == name {
				return r.Reason
			}
		}
		return ""
	}

	view()
	step("first view", 1, 0)

	leases["node-c"] = func(l subnet.Lease) subnet.Lease {
		l.Record.PublicIP, l.Record.Version = addr("198.18.0.33"), 2
		return l
	}(leases["node-c"])
	view()
	step("node-c's address changed", 0, 1)
	if last := be.updates[len(be.updates)-1]; len(last) != 1 || last[0].Old == nil || last[0].New == nil || last[0].New.PublicIP != addr("198.18.0.33") {
		t.Errorf("update for node-c's address: %+v", last)
	}

	// Gossip gives node-c an address no peer may have: the index decides
	// that alone, as the full check does, and node-c leaves the backend;
	// when gossip forgets it, node-c's record counts again.
	cl := leases["node-c"]
	g.setMembers([]membership.Member{{Name: "node-c", State: membership.StateAlive, Meta: membership.Meta{
		NodeID: cl.Record.NodeID, Subnet: cl.Subnet, IPv6Subnet: cl.IPv6Subnet, PublicIP: addr("127.0.0.1"),
		Data: cl.Record.BackendData, Epoch: cl.Epoch, Version: 9,
	}}})
	step("gossip gives node-c a loopback address", 0, 1)
	if why := rejected("node-c"); !strings.Contains(why, "loopback") {
		t.Errorf("node-c's loopback address not rejected: %q", why)
	}
	g.setMembers(nil)
	step("gossip forgets node-c", 0, 1)

	// A new lease whose VTEP MAC is node-b's, and one whose IPv6 subnet
	// is node-c's: both newer, both refused, whichever path decides.
	e := peer("node-e", 5, 30, 0)
	e.Record.BackendData.VTEPMAC = leases["node-b"].Record.BackendData.VTEPMAC
	leases["node-e"] = e
	leases["node-f"] = peer("node-f", 6, 31, 3)
	view()
	step("node-e and node-f conflict", 1, 0)
	if why := rejected("node-e"); !strings.Contains(why, "VTEP MAC") {
		t.Errorf("node-e not rejected for its MAC: %q", why)
	}
	if why := rejected("node-f"); !strings.Contains(why, "overlaps") {
		t.Errorf("node-f not rejected for its IPv6 subnet: %q", why)
	}

	// An unrelated change beside the rejected entries goes as a change;
	// they stay out.
	leases["node-d"] = func(l subnet.Lease) subnet.Lease { l.Record.Version = 2; return l }(leases["node-d"])
	view()
	step("node-d's version", 0, 1)

	// node-b leaves: its MAC is free, so node-e is valid now. Only the
	// full check can say so (the index declines).
	delete(leases, "node-b")
	view()
	step("node-b left", 1, 0)
	if why := rejected("node-e"); why != "" {
		t.Errorf("node-e still rejected after node-b left: %q", why)
	}

	// Gossip brings node-d newer data: a change of node-d alone. Then
	// newer data with node-e's MAC: node-d's lease is the older, so it
	// keeps the MAC and node-e is refused again.
	dl := leases["node-d"]
	member := func(mac string, version uint64) membership.Member {
		return membership.Member{Name: "node-d", State: membership.StateAlive, Meta: membership.Meta{
			NodeID: dl.Record.NodeID, Subnet: dl.Subnet, PublicIP: addr("198.18.0.44"),
			Data: subnet.BackendData{VTEPMAC: mac}, Epoch: dl.Epoch, Version: version,
		}}
	}
	g.setMembers([]membership.Member{member(dl.Record.BackendData.VTEPMAC, 5)})
	step("gossip update of node-d", 0, 1)
	g.setMembers([]membership.Member{member(e.Record.BackendData.VTEPMAC, 6)})
	step("gossip gives node-d node-e's MAC", 1, 0)
	if why := rejected("node-e"); !strings.Contains(why, "VTEP MAC") {
		t.Errorf("node-e not rejected for the MAC node-d took: %q", why)
	}

	// A resync reconciles in full even with nothing changed.
	r0, _ := be.counts()
	d.reconcileOnce(ctx, "resync")
	if r1, _ := be.counts(); r1 != r0+1 {
		t.Errorf("resync: %d full reconciles, want 1", r1-r0)
	}

	// A failed update is followed by a full reconcile in the same turn.
	be.mu.Lock()
	be.updateErr = errors.New("netlink: no such device")
	be.mu.Unlock()
	leases["node-g"] = peer("node-g", 7, 40, 0)
	view()
	step("update fails", 1, 1)
}
