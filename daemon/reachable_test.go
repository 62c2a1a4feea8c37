// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"context"
	"errors"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/weftnet/weft/subnet"
)

// TestStoreOutageLoggedOnce checks that a store outage is logged when it
// starts and when it ends, however many probes fail in between, and that
// an answer seen elsewhere (a claim, a lease view) ends it too. The
// messages name the store: etcd, or the Kubernetes API server.
func TestStoreOutageLoggedOnce(t *testing.T) {
	for _, tc := range []struct {
		name, store string
		kube        bool
	}{
		{"etcd", "etcd", false},
		{"kubernetes", "Kubernetes API server", true},
	} {
		t.Run(tc.name, func(t *testing.T) { testStoreOutageLoggedOnce(t, tc.store, tc.kube) })
	}
}

func testStoreOutageLoggedOnce(t *testing.T, store string, kube bool) {
	h := newLeaseHarness(t)
	h.d.cfg.Kube.SubnetMgr = kube
	log, hook := logtest.NewNullLogger()
	h.d.log = log
	ctx := t.Context()
	count := func() (down, up int) {
		for _, e := range hook.AllEntries() {
			switch {
			case e.Message == store+" unreachable" && e.Level == logrus.WarnLevel:
				down++
			case e.Message == store+" reachable again" && e.Level == logrus.InfoLevel:
				up++
			}
		}
		return down, up
	}
	probes := func(n int) {
		for range n {
			_ = h.d.probe(ctx)
		}
	}

	probes(3) // reachable from the start: nothing to say
	if down, up := count(); down != 0 || up != 0 {
		t.Fatalf("store reachable: logged %d outages and %d recoveries, want none", down, up)
	}
	h.store.SetProbeError(errors.New("no leader"))
	probes(10)
	if down, up := count(); down != 1 || up != 0 {
		t.Fatalf("10 failed probes: logged %d outages and %d recoveries, want 1 and 0", down, up)
	}
	if h.d.reachable.Load() {
		t.Error("reachable after failed probes")
	}
	h.store.SetProbeError(nil)
	probes(3)
	if down, up := count(); down != 1 || up != 1 {
		t.Fatalf("store back: logged %d outages and %d recoveries, want 1 and 1", down, up)
	}
	// A second outage, ended by a lease view rather than a probe.
	h.store.SetProbeError(errors.New("no leader"))
	probes(4)
	h.d.setReachable(true)
	h.d.setReachable(true)
	if down, up := count(); down != 2 || up != 2 {
		t.Fatalf("second outage: logged %d outages and %d recoveries, want 2 and 2", down, up)
	}
}

// stuckProbe is a store whose probes wait for release, as a request to an
// etcd member without a leader waits, then fail.
type stuckProbe struct {
	subnet.Store
	entered chan struct{}
	release chan struct{}
}

func (s *stuckProbe) Probe(ctx context.Context) error {
	s.entered <- struct{}{}
	<-s.release
	return errors.New("probe etcd: context deadline exceeded")
}

// TestStaleProbeFailureIgnored: a probe that began during an outage and
// fails after the store answered elsewhere (the lease watch's view once
// quorum is back) does not report the store unreachable again; a probe
// that begins after that answer and fails does. CI once saw /status say
// "unreachable" for 3 s right after quorum came back, from such a probe.
func TestStaleProbeFailureIgnored(t *testing.T) {
	h := newLeaseHarness(t)
	log, hook := logtest.NewNullLogger()
	h.d.log = log
	st := &stuckProbe{Store: h.store, entered: make(chan struct{}), release: make(chan struct{})}
	h.d.store = st
	ctx := t.Context()
	outages := func() int {
		n := 0
		for _, e := range hook.AllEntries() {
			if e.Message == "etcd unreachable" {
				n++
			}
		}
		return n
	}
	probe := func(answer func()) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = h.d.probe(ctx)
		}()
		<-st.entered
		answer()
		close(st.release)
		<-done
		st.release = make(chan struct{})
	}

	probe(func() {}) // an outage begins
	if h.d.reachable.Load() || outages() != 1 {
		t.Fatalf("failed probe: reachable %t, %d outages logged; want false and 1", h.d.reachable.Load(), outages())
	}
	probe(func() { h.d.setReachable(true) }) // a view arrives while the probe waits
	if !h.d.reachable.Load() || outages() != 1 {
		t.Errorf("probe that failed after a view: reachable %t, %d outages logged; want true and 1 (the failure is stale)",
			h.d.reachable.Load(), outages())
	}
	probe(func() {}) // no answer while this one waits: a new outage
	if h.d.reachable.Load() || outages() != 2 {
		t.Errorf("probe that failed with no answer meanwhile: reachable %t, %d outages logged; want false and 2",
			h.d.reachable.Load(), outages())
	}
}
