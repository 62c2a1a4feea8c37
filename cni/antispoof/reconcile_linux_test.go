// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package antispoof

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"

	"github.com/weftnet/weft/e2e/netnstest"
)

// The reconcile tests run in a namespace of their own with no bridge: the
// table's elements are data, and the packet tests of package cni prove
// what they do to frames.

// add does what the plugin's ADD does: the record, then the elements.
func add(t *testing.T, dataDir string, r Record) {
	t.Helper()
	if err := WriteRecord(dataDir, r); err != nil {
		t.Fatal(err)
	}
	if err := AddPod(r); err != nil {
		t.Fatal(err)
	}
}

// del does what the plugin's DEL does: the record, then the elements.
func del(t *testing.T, dataDir string, port string) {
	t.Helper()
	if err := RemoveRecord(dataDir, port); err != nil {
		t.Fatal(err)
	}
	if err := RemovePort(port); err != nil {
		t.Fatal(err)
	}
}

func elementsOf(t *testing.T, rs ...Record) []Element {
	t.Helper()
	var out []Element
	for _, r := range rs {
		es, err := r.Elements()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, es...)
	}
	sortElements(out)
	return out
}

func current(t *testing.T) []Element {
	t.Helper()
	es, err := Elements()
	if err != nil {
		t.Fatal(err)
	}
	sortElements(es)
	return es
}

func inNS(t *testing.T, fn func()) {
	t.Helper()
	netnstest.SkipUnlessRoot(t)
	ns := netnstest.NewNS(t, "weftspoof")
	if err := ns.Do(func() error { fn(); return nil }); err != nil {
		t.Fatal(err)
	}
}

func TestReconcileRepairsDrift(t *testing.T) {
	inNS(t, func() {
		dataDir := t.TempDir()
		dir := RecordDir(dataDir)
		r1, r2 := testRecord(1), testRecord(2)
		add(t, dataDir, r1)
		add(t, dataDir, r2)

		// Nothing to do on a converged table.
		res, err := Reconcile(dir)
		if err != nil || res.Changed() {
			t.Fatalf("reconcile of a converged table: %+v %v", res, err)
		}

		// An element deleted by hand comes back; one added by hand
		// (no record asks for it) goes.
		c, err := nftables.New()
		if err != nil {
			t.Fatal(err)
		}
		lost := Element{Port: r1.Port, MAC: [6]byte{2, 0, 0, 0, 0, 1}, IP: r1.IPv4}
		stranger := Element{Port: "weft0000ffff", MAC: [6]byte{2, 0, 0, 0, 0, 0x99}, IP: netip.MustParseAddr("10.244.3.99")}
		if err := queueElements(c, []Element{lost}, true); err != nil {
			t.Fatal(err)
		}
		if err := queueElements(c, []Element{stranger}, false); err != nil {
			t.Fatal(err)
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		res, err = Reconcile(dir)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]Element{lost}, res.Added, cmpAddr); diff != "" {
			t.Errorf("added (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]Element{stranger}, res.Removed, cmpAddr); diff != "" {
			t.Errorf("removed (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(elementsOf(t, r1, r2), current(t), cmpAddr); diff != "" {
			t.Errorf("elements after the reconcile (-want +got):\n%s", diff)
		}

		// A flushed chain and a deleted set come back; the other sets
		// keep their elements (and the deleted one gets its elements).
		c.FlushChain(&nftables.Chain{Name: chainIPv6, Table: tableRef()})
		// The rules of these two refer to the IPv4 set.
		c.FlushChain(&nftables.Chain{Name: chainIPv4, Table: tableRef()})
		c.FlushChain(&nftables.Chain{Name: chainARP, Table: tableRef()})
		c.DelSet(sets(tableRef())[1])
		if err := c.Flush(); err != nil {
			t.Fatalf("break the table: %v", err)
		}
		res, err = Reconcile(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !res.RulesRestored || len(res.Added) != 2 || len(res.Removed) != 0 {
			t.Errorf("reconcile of a broken table: restored %v, added %v, removed %v; want restored and the 2 IPv4 elements added", res.RulesRestored, res.Added, res.Removed)
		}
		st, err := readState(c, true)
		if err != nil || !st.intact {
			t.Errorf("table after the repair: intact %v, %v", st.intact, err)
		}

		// The whole table deleted (nft flush ruleset): rebuilt.
		c.DelTable(tableRef())
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		if res, err = Reconcile(dir); err != nil || !res.RulesRestored || len(res.Added) != 10 {
			t.Errorf("reconcile of a deleted table: %+v %v", res, err)
		}
		if diff := cmp.Diff(elementsOf(t, r1, r2), current(t), cmpAddr); diff != "" {
			t.Errorf("elements after the rebuild (-want +got):\n%s", diff)
		}
	})
}

// TestReconcileRacesAddDel runs an ADD and a DEL between the reconcile's
// read of the records and its write: the new pod's elements survive, the
// deleted pod's elements are not brought back, and a stale element the
// reconcile and a DEL both delete costs a retry, not an error.
func TestReconcileRacesAddDel(t *testing.T) {
	inNS(t, func() {
		dataDir := t.TempDir()
		dir := RecordDir(dataDir)
		r1, r2, r3 := testRecord(1), testRecord(2), testRecord(3)
		add(t, dataDir, r1)
		add(t, dataDir, r2)
		races := 0
		res, err := reconcile(dir, func() {
			races++
			if races > 1 {
				return
			}
			add(t, dataDir, r3)      // ADD after the read
			del(t, dataDir, r2.Port) // DEL after the read
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Changed() {
			t.Errorf("the reconcile changed something: %+v", res)
		}
		if diff := cmp.Diff(elementsOf(t, r1, r3), current(t), cmpAddr); diff != "" {
			t.Errorf("elements after the race (-want +got):\n%s", diff)
		}
		// The next resync sees the same.
		if res, err := Reconcile(dir); err != nil || res.Changed() {
			t.Errorf("next reconcile: %+v %v", res, err)
		}

		// Elements of a pod whose record is gone (a crashed DEL), which
		// the reconcile deletes while a DEL deletes them too: one
		// retry.
		if err := RemoveRecord(dataDir, r1.Port); err != nil {
			t.Fatal(err)
		}
		races = 0
		res, err = reconcile(dir, func() {
			races++
			if races == 1 {
				if err := RemovePort(r1.Port); err != nil {
					t.Error(err)
				}
			}
		})
		if err != nil {
			t.Fatalf("reconcile racing a DEL: %v", err)
		}
		if races != 2 {
			t.Errorf("the reconcile read the records %d times, want 2 (one retry)", races)
		}
		if diff := cmp.Diff(elementsOf(t, r3), current(t), cmpAddr); diff != "" {
			t.Errorf("elements (-want +got):\n%s", diff)
		}
	})
}

// TestReconcileReadsNothingDeletesNothing: a missing or unreadable
// record directory changes nothing; a record that cannot be read keeps
// its port's elements.
func TestReconcileReadsNothingDeletesNothing(t *testing.T) {
	inNS(t, func() {
		dataDir := t.TempDir()
		r1, r2 := testRecord(1), testRecord(2)
		add(t, dataDir, r1)
		add(t, dataDir, r2)
		want := elementsOf(t, r1, r2)

		_, err := Reconcile(filepath.Join(dataDir, "no-such-dir"))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("reconcile of a missing directory: %v, want not-exist", err)
		}
		if diff := cmp.Diff(want, current(t), cmpAddr); diff != "" {
			t.Errorf("elements after reading nothing (-want +got):\n%s", diff)
		}

		// r2's record damaged: its elements stay, and it is reported.
		if err := os.WriteFile(filepath.Join(RecordDir(dataDir), r2.Port+".json"), []byte(`{"port":`), 0o644); err != nil {
			t.Fatal(err)
		}
		res, err := Reconcile(RecordDir(dataDir))
		if err != nil {
			t.Fatal(err)
		}
		if res.Changed() || res.Bad[r2.Port] == nil {
			t.Errorf("reconcile with a damaged record: %+v", res)
		}
		if diff := cmp.Diff(want, current(t), cmpAddr); diff != "" {
			t.Errorf("elements (-want +got):\n%s", diff)
		}
	})
}

// TestCountersWithoutTable: before any pod is added (no table) every drop
// reason is counted at 0, so that a dashboard's panels are not empty.
func TestCountersWithoutTable(t *testing.T) {
	inNS(t, func() {
		got, err := Counters()
		if err != nil {
			t.Fatal(err)
		}
		want := dropReasons()
		if len(want) < 10 {
			t.Fatalf("drop reasons %v: expected every drop rule's reason", want)
		}
		for _, r := range want {
			if n, ok := got[r]; !ok || n != 0 {
				t.Errorf("reason %q: %d, present %v; want 0, present", r, n, ok)
			}
		}
		if len(got) != len(want) {
			t.Errorf("counters %v, want exactly the reasons %v", got, want)
		}
	})
}
