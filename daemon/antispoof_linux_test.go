// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/weftnet/weft/cni/antispoof"
	"github.com/weftnet/weft/e2e/netnstest"
)

// TestRepairAntispoof runs the daemon's part of anti-spoofing in a
// namespace of its own: the resync's repair of a pod's entries from its
// record, the log lines, the drift count, and the drop counters in
// /metrics.
func TestRepairAntispoof(t *testing.T) {
	netnstest.SkipUnlessRoot(t)
	ns := netnstest.NewNS(t, "weftd-spoof")
	dataDir := t.TempDir()
	logger, hook := test.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	d := &daemon{cfg: &Config{CNIDataDir: dataDir}, log: logger, metrics: newMetrics()}
	rec := antispoof.Record{
		ContainerID: "ctr", IfName: "eth0", Port: "weft0000abcd", MAC: "02:00:00:00:ab:cd",
		IPv4: netip.MustParseAddr("10.244.3.7"),
	}
	err := ns.Do(func() error {
		// No records yet: nothing done, said once.
		if d.repairAntispoof() || d.repairAntispoof() {
			t.Error("repair without a record directory changed something")
		}
		if err := antispoof.WriteRecord(dataDir, rec); err != nil {
			return err
		}
		// The record is there, its entries are not (an ADD killed
		// between the two, or entries deleted by hand): repaired.
		if !d.repairAntispoof() {
			t.Error("the entries of a record were not added")
		}
		if d.repairAntispoof() {
			t.Error("a converged table was changed")
		}
		es, err := antispoof.Elements()
		if err != nil {
			return err
		}
		if len(es) != 3 {
			t.Errorf("elements %v, want its port, MAC and IPv4", es)
		}
		// A damaged record: reported once, its entries kept.
		if err := os.WriteFile(filepath.Join(antispoof.RecordDir(dataDir), rec.Port+".json"), []byte("{"), 0o644); err != nil {
			return err
		}
		if d.repairAntispoof() || d.repairAntispoof() {
			t.Error("a damaged record changed the entries")
		}
		// Collect on this thread, which is in the namespace (the
		// registry collects from goroutines of its own; weftd runs wholly
		// in its namespace).
		ch := make(chan prometheus.Metric, 64)
		spoofCollector{}.Collect(ch)
		close(ch)
		reasons := map[string]bool{}
		for m := range ch {
			var pb dto.Metric
			if err := m.Write(&pb); err != nil {
				return err
			}
			for _, l := range pb.GetLabel() {
				if l.GetName() == "reason" && pb.GetCounter() != nil && strings.Contains(m.Desc().String(), "weft_antispoof_dropped_packets_total") {
					reasons[l.GetValue()] = true
				}
			}
		}
		for _, r := range []string{"ether-saddr", "ipv4-saddr", "arp-spa", "nd-target", "router-advert"} {
			if !reasons[r] {
				t.Errorf("/metrics lacks weft_antispoof_dropped_packets_total{reason=%q} (has %v)", r, reasons)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, e := range hook.AllEntries() {
		lines = append(lines, e.Level.String()+": "+e.Message)
	}
	want := []string{
		"info: no pod records yet",
		"info: anti-spoofing entries reconciled with the pod records",
		"warning: anti-spoofing entries differed from the pod records; repaired",
		"warning: pod record unusable",
	}
	got := strings.Join(lines, "\n")
	for _, w := range want {
		if strings.Count(got, w) != 1 {
			t.Errorf("log lacks %q once:\n%s", w, got)
		}
	}
}
