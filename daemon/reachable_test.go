// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"errors"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
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
