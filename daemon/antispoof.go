// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"errors"
	"io/fs"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/weftnet/weft/cni/antispoof"
)

// spoofState is what the last reconcile of the anti-spoofing entries
// found. Written by the reconcile loop only.
type spoofState struct {
	// mu guards the following.
	mu sync.Mutex
	// problem is why the last reconcile failed ("" when it did not);
	// bad the pod records it could not use, by port.
	problem string
	bad     map[string]string
}

// repairAntispoof converges the anti-spoofing entries (package antispoof)
// to the CNI plugin's pod records, and reports whether it changed the
// kernel. Each problem is logged when it appears or changes.
func (d *daemon) repairAntispoof() bool {
	if d.cfg.CNIDataDir == "" {
		return false
	}
	dir := antispoof.RecordDir(d.cfg.CNIDataDir)
	res, err := antispoof.Reconcile(dir)
	problem := ""
	if err != nil {
		problem = err.Error()
	}
	bad := map[string]string{}
	for port, why := range res.Bad {
		bad[port] = why.Error()
	}
	d.spoof.mu.Lock()
	prevProblem, prevBad := d.spoof.problem, d.spoof.bad
	d.spoof.problem, d.spoof.bad = problem, bad
	d.spoof.mu.Unlock()

	log := d.log.WithField("records", dir)
	if problem != prevProblem {
		switch {
		case err == nil:
			log.Info("anti-spoofing entries reconciled with the pod records")
		case errors.Is(err, fs.ErrNotExist):
			log.Info("no pod records yet (no pod was added on this node): the anti-spoofing entries are left as they are")
		case errors.Is(err, errors.ErrUnsupported):
			log.WithError(err).Warn("anti-spoofing entries are not reconciled")
		default:
			log.WithError(err).Error("reconcile anti-spoofing entries: left as they are")
		}
	}
	for port, why := range bad {
		if prevBad[port] != why {
			log.WithFields(logrus.Fields{"port": port, "problem": why}).Warn("pod record unusable: its anti-spoofing entries are left as they are")
		}
	}
	if !res.Changed() {
		return false
	}
	log.WithFields(logrus.Fields{
		"added": len(res.Added), "removed": len(res.Removed), "rulesRestored": res.RulesRestored,
	}).Warn("anti-spoofing entries differed from the pod records; repaired")
	return true
}

// spoofCollector exports the drop counters of the anti-spoofing rules,
// read from the kernel at each scrape, as
// weft_antispoof_dropped_packets_total{reason}. Nothing is exported while
// the table does not exist or cannot be read.
type spoofCollector struct{}

var spoofDropsDesc = prometheus.NewDesc("weft_antispoof_dropped_packets_total",
	"Frames dropped at a pod's bridge port because they were not from the pod's own MAC or addresses, by reason (see docs/cni.md, Anti-spoofing).",
	[]string{"reason"}, nil)

func (spoofCollector) Describe(ch chan<- *prometheus.Desc) { ch <- spoofDropsDesc }

func (spoofCollector) Collect(ch chan<- prometheus.Metric) {
	counts, err := antispoof.Counters()
	if err != nil {
		return
	}
	for reason, n := range counts {
		ch <- prometheus.MustNewConstMetric(spoofDropsDesc, prometheus.CounterValue, float64(n), reason)
	}
}
