// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/subnet/subnettest"
)

// The lease lifecycle against the in-memory store: the decisions only
// (re-claim, give up, write our data back). The same paths run against a
// real etcd in the privileged integration tests.

type testLogWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// leaseHarness runs a daemon's lease loop and lease watch against a fake
// store.
type leaseHarness struct {
	d      *daemon
	store  *subnettest.Store
	cancel context.CancelFunc
	wg     sync.WaitGroup
	loop   chan error
}

func newLeaseHarness(t *testing.T) *leaseHarness {
	t.Helper()
	nc, err := subnet.ParseConfig([]byte(`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`))
	if err != nil {
		t.Fatal(err)
	}
	st, err := openStateDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	lw := &testLogWriter{t: t}
	log := logrus.New()
	log.SetOutput(lw)
	log.SetLevel(logrus.DebugLevel)
	store := subnettest.New()
	store.SetConfig(nc)
	d := &daemon{
		cfg:      &Config{LeaseTTL: time.Minute, ResyncInterval: time.Second, bridgeSysctlDir: fakeBridgeSysctls(t, "1", "1")},
		log:      log,
		nodeName: "node-a",
		nodeID:   "id-a",
		state:    st,
		metrics:  newMetrics(),
		store:    store,
		kick:     make(chan struct{}, 1),
		lostc:    make(chan struct{}, 1),
		updatec:  make(chan struct{}, 1),
	}
	d.netconf.inForce = nc
	d.lease.data = ownData{Version: 1, PublicIP: addr("198.18.0.1"), BackendType: "vxlan",
		BackendData: subnet.BackendData{VTEPMAC: "02:00:00:00:00:01"}}
	h := &leaseHarness{d: d, store: store, loop: make(chan error, 1)}
	t.Cleanup(func() {
		h.stop()
		lw.mu.Lock()
		lw.done = true
		lw.mu.Unlock()
	})
	return h
}

// start runs the loops; the lease to start with must be set.
func (h *leaseHarness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.wg.Add(2)
	go func() { defer h.wg.Done(); h.loop <- h.d.leaseLoop(ctx) }()
	go func() { defer h.wg.Done(); _ = h.d.store.WatchLeases(ctx, h.d.onView) }()
}

func (h *leaseHarness) stop() {
	if h.cancel != nil {
		h.cancel()
		h.wg.Wait()
		h.cancel = nil
	}
}

// claim gets the daemon its first lease online, as start does.
func (h *leaseHarness) claim(t *testing.T) *subnet.Lease {
	t.Helper()
	l, err := h.d.acquireLease(context.Background(), h.d.netConfig(), true)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func (h *leaseHarness) held(node string) *subnet.Lease {
	for _, l := range h.store.Leases() {
		if l.Record.NodeName == node {
			return &l
		}
	}
	return nil
}

func TestLeaseReclaimedAfterDelete(t *testing.T) {
	h := newLeaseHarness(t)
	first := h.claim(t)
	h.start()
	if !h.store.Delete(first.Primary()) {
		t.Fatal("delete failed")
	}
	waitFor(t, 5*time.Second, func() bool {
		l := h.held("node-a")
		return l != nil && l.Epoch > first.Epoch
	})
	if l := h.held("node-a"); l.Subnet != first.Subnet {
		t.Errorf("re-claimed %s, want the same subnet %s", l.Subnet, first.Subnet)
	}
	select {
	case err := <-h.loop:
		t.Fatalf("lease loop ended: %v", err)
	default:
	}
	// The store holds the new lease as soon as Claim returns; the daemon
	// saves it just after.
	waitFor(t, 5*time.Second, func() bool {
		saved, err := h.d.state.lease()
		return err == nil && saved != nil && saved.Epoch > first.Epoch
	})
}

func TestLeaseTakenByAnotherNode(t *testing.T) {
	h := newLeaseHarness(t)
	first := h.claim(t)
	h.start()
	other := *first
	other.Record = subnet.Record{NodeName: "node-x", NodeID: "id-x", PublicIP: addr("198.18.0.9"), BackendType: "vxlan", Version: 1}
	h.store.Put(other)
	select {
	case err := <-h.loop:
		if !errors.Is(err, ErrSubnetTaken) || !strings.Contains(err.Error(), "must be recreated") || !strings.Contains(err.Error(), "node-x") {
			t.Fatalf("lease loop ended with %v; want ErrSubnetTaken naming node-x and saying the pods must be recreated", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("lease loop still running after our subnet went to another node")
	}
	if l := h.held("node-x"); l == nil || l.Subnet != first.Subnet {
		t.Errorf("node-x's lease disturbed: %+v", l)
	}
}

func TestLeaseClaimedInBackgroundAfterOfflineStart(t *testing.T) {
	h := newLeaseHarness(t)
	// A lease saved by an earlier run; etcd (the store) does not answer.
	saved := &subnet.Lease{Subnet: pfx("10.244.42.0/24"), Epoch: 3, Record: h.d.ownRecord()}
	if err := h.d.state.saveLease(saved); err != nil {
		t.Fatal(err)
	}
	h.store.SetClaimError(errors.New("etcd unreachable"))
	l, err := h.d.acquireLease(context.Background(), h.d.netConfig(), false)
	if err != nil || l.Subnet != saved.Subnet {
		t.Fatalf("offline start: %+v, %v; want the saved lease", l, err)
	}
	h.start()
	time.Sleep(100 * time.Millisecond) // let a claim attempt fail first
	if h.held("node-a") != nil {
		t.Fatal("claimed while the store refuses")
	}
	h.store.SetClaimError(nil)
	waitFor(t, 5*time.Second, func() bool { return h.held("node-a") != nil })
	if got := h.held("node-a"); got.Subnet != saved.Subnet {
		t.Errorf("background claim got %s, want the saved %s", got.Subnet, saved.Subnet)
	}
	h.d.lease.mu.Lock()
	ok := h.d.lease.ok
	h.d.lease.mu.Unlock()
	if !ok {
		t.Error("lease not marked confirmed after the background claim")
	}
}

func TestLeaseRecordUpdatedWithOurData(t *testing.T) {
	h := newLeaseHarness(t)
	first := h.claim(t)
	h.start()
	// The record in the store carries old data (as after an etcd outage
	// during which our public IP changed).
	stale := *h.held("node-a")
	stale.Record.PublicIP = addr("198.18.0.77")
	stale.Record.Version = 0
	h.store.Put(stale)
	waitFor(t, 5*time.Second, func() bool {
		l := h.held("node-a")
		return l != nil && l.Record.PublicIP == addr("198.18.0.1") && l.Record.Version == 1
	})
	if l := h.held("node-a"); l.Subnet != first.Subnet {
		t.Errorf("subnet changed to %s", l.Subnet)
	}
}

func TestOnConfig(t *testing.T) {
	h := newLeaseHarness(t)
	d := h.d
	inForce := d.netConfig()
	parse := func(js string) *subnet.Config {
		c, err := subnet.ParseConfig([]byte(js))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	state := func() (string, []string, *subnet.Config) {
		d.netconf.mu.Lock()
		defer d.netconf.mu.Unlock()
		return d.netconf.err, d.netconf.pendingRestart, d.netconf.inForce
	}

	// etcd not answering is no config error: the config in force stays
	// and nothing is reported against it.
	d.onConfig(nil, fmt.Errorf("read network config from etcd: %w", context.DeadlineExceeded))
	if e, p, c := state(); e != "" || p != nil || c != inForce {
		t.Errorf("read failure: error %q, pending %q, config changed %t", e, p, c != inForce)
	}
	bad := &subnet.ConfigError{Key: "/weft/config", Err: errors.New("Backend.VNI: want a number")}
	d.onConfig(nil, bad)
	if e, p, c := state(); e != bad.Error() || p != nil || c != inForce {
		t.Errorf("bad config: error %q, pending %q, config changed %t", e, p, c != inForce)
	}
	d.onConfig(nil, subnet.ErrNoConfig)
	if e, _, c := state(); !strings.Contains(e, "deleted") || c != inForce {
		t.Errorf("deleted config: error %q, config changed %t", e, c != inForce)
	}

	d.onConfig(parse(`{"Network":"10.245.0.0/16","Backend":{"Type":"vxlan"}}`), nil)
	if e, p, c := state(); e != "" || len(p) != 1 || !strings.Contains(p[0], "Network: 10.244.0.0/16 → 10.245.0.0/16") || c != inForce {
		t.Errorf("network change: error %q, pending %q, config changed %t", e, p, c != inForce)
	}
	if saved, err := d.state.config(); err != nil || saved.Network != pfx("10.245.0.0/16") {
		t.Errorf("the newest valid config is not saved: %+v, %v", saved, err)
	}

	live := parse(`{"Network":"10.244.0.0/16","SubnetMin":"10.244.10.0","Backend":{"Type":"vxlan"}}`)
	d.onConfig(live, nil)
	if e, p, c := state(); e != "" || p != nil || c != live {
		t.Errorf("live change: error %q, pending %q, applied %t", e, p, c == live)
	}
	if saved, err := d.state.config(); err != nil || saved.SubnetMin != addr("10.244.10.0") {
		t.Errorf("the live change is not saved: %+v, %v", saved, err)
	}
	// The same config again (as the watch's first delivery after start-up
	// repeats what start read) is not written again.
	if err := os.Remove(d.state.path(configFile)); err != nil {
		t.Fatal(err)
	}
	d.onConfig(parse(`{"Network":"10.244.0.0/16","SubnetMin":"10.244.10.0","Backend":{"Type":"vxlan"}}`), nil)
	if _, err := os.Stat(d.state.path(configFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("an unchanged config was written again (stat: %v)", err)
	}
}
