// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/weftnet/weft/daemon/membership"
)

// metrics are weftd's Prometheus metrics, in a registry of their own (no
// global registration, so several daemons can live in one test process).
type metrics struct {
	reg *prometheus.Registry

	peers             prometheus.Gauge
	reconciles        prometheus.Counter
	reconcileErrors   prometheus.Counter
	reconcileDuration prometheus.Histogram
	changes           *prometheus.CounterVec
	driftRepairs      prometheus.Counter
	leaseRenewals     prometheus.Counter
	leaseRecoveries   prometheus.Counter
	leaseClaims       prometheus.Counter
	members           *prometheus.GaugeVec
	etcdReachable     prometheus.Gauge // deprecated name of storeReachable
	storeReachable    *prometheus.GaugeVec
	ready             prometheus.Gauge
	configErrors      prometheus.Counter
	rejected          *prometheus.GaugeVec
	rejections        *prometheus.CounterVec
	// Network policy (policy.go).
	policies            prometheus.Gauge
	policyEnforced      prometheus.Gauge
	policyHeld          prometheus.Gauge
	policyApplies       prometheus.Counter
	policyApplyErrors   prometheus.Counter
	policyApplyDuration prometheus.Histogram
	// The drop log (droplog.go).
	policyDropsLogged, policyDropsNotLogged, policyDropLogOverruns prometheus.Counter
	// refused reads the gossip member's refused-names count (set once
	// gossip exists; 0 before and without gossip).
	refused atomic.Pointer[func() uint64]
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := promauto.With(m.reg)
	m.peers = f.NewGauge(prometheus.GaugeOpts{
		Name: "weft_peers", Help: "Peers in the desired set handed to the backend.",
	})
	m.reconciles = f.NewCounter(prometheus.CounterOpts{
		Name: "weft_reconcile_total", Help: "Reconciles run (changes and periodic resyncs).",
	})
	m.reconcileErrors = f.NewCounter(prometheus.CounterOpts{
		Name: "weft_reconcile_errors_total", Help: "Reconciles that returned an error.",
	})
	m.reconcileDuration = f.NewHistogram(prometheus.HistogramOpts{
		Name:    "weft_reconcile_duration_seconds",
		Help:    "Time one backend reconcile took.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	})
	m.changes = f.NewCounterVec(prometheus.CounterOpts{
		Name: "weft_reconcile_changes_total", Help: "Kernel objects changed by reconciles, by operation.",
	}, []string{"op"})
	m.driftRepairs = f.NewCounter(prometheus.CounterOpts{
		Name: "weft_drift_repairs_total", Help: "Reconciles that changed the kernel without any change of their input (drift repaired).",
	})
	m.leaseRenewals = f.NewCounter(prometheus.CounterOpts{
		Name: "weft_lease_renewals_total", Help: "Times the lease keep-alive was (re)established with etcd.",
	})
	m.leaseRecoveries = f.NewCounter(prometheus.CounterOpts{
		Name: "weft_lease_recoveries_total", Help: "Lease recoveries: re-bound to a new etcd lease, or own key re-claimed after it was lost.",
	})
	m.leaseClaims = f.NewCounter(prometheus.CounterOpts{
		Name: "weft_lease_claims_total", Help: "Successful lease claims.",
	})
	m.members = f.NewGaugeVec(prometheus.GaugeOpts{
		Name: "weft_members", Help: "Gossip members (other nodes) by state.",
	}, []string{"state"})
	m.etcdReachable = f.NewGauge(prometheus.GaugeOpts{
		Name: "weft_etcd_reachable", Help: "Deprecated: read weft_store_reachable. The same value, in both store modes.",
	})
	m.storeReachable = f.NewGaugeVec(prometheus.GaugeOpts{
		Name: "weft_store_reachable", Help: "1 while the store (label store: etcd or kube) answers, 0 otherwise.",
	}, []string{"store"})
	m.ready = f.NewGauge(prometheus.GaugeOpts{
		Name: "weft_ready", Help: "1 once the subnet file is written and the first complete list of peers is programmed.",
	})
	m.configErrors = f.NewCounter(prometheus.CounterOpts{
		Name: "weft_config_errors_total", Help: "Invalid network configs seen in etcd (the last good one stayed in force).",
	})
	m.rejected = f.NewGaugeVec(prometheus.GaugeOpts{
		Name: "weft_peers_rejected", Help: "Peer entries refused by the checks at the last reconcile (none reaches the data plane), by source and reason.",
	}, []string{"source", "reason"})
	m.rejections = f.NewCounterVec(prometheus.CounterOpts{
		Name: "weft_peer_rejections_total", Help: "Peer entries refused by the checks, each counted once when it appears or changes, by source and reason.",
	}, []string{"source", "reason"})
	f.NewCounterFunc(prometheus.CounterOpts{
		Name: "weft_gossip_members_refused_total", Help: "New gossip member names refused because the member table held its cap of members the store does not name.",
	}, func() float64 {
		if fn := m.refused.Load(); fn != nil {
			return float64((*fn)())
		}
		return 0
	})
	m.addPolicyMetrics(f)
	for _, s := range rejectionSources {
		for _, r := range rejectionReasons {
			m.rejected.WithLabelValues(s, r)
			m.rejections.WithLabelValues(s, r)
		}
	}
	for _, op := range []string{"added", "updated", "removed"} {
		m.changes.WithLabelValues(op)
	}
	m.setMembers(nil)
	return m
}

// addPolicyMetrics creates the network policy loop's metrics (policy.go).
func (m *metrics) addPolicyMetrics(f promauto.Factory) {
	m.policies = f.NewGauge(prometheus.GaugeOpts{
		Name: "weft_policies", Help: "Network policies in the policy table last applied.",
	})
	m.policyEnforced = f.NewGauge(prometheus.GaugeOpts{
		Name: "weft_policy_enforced", Help: "1 while network policy is enforced on this node (see /status policy.problem when 0).",
	})
	m.policyHeld = f.NewGauge(prometheus.GaugeOpts{
		Name: "weft_policy_held_addresses", Help: "New pods' addresses held at the pod gate that weftd has not released yet (dropped until released).",
	})
	m.policyApplies = f.NewCounter(prometheus.CounterOpts{
		Name: "weft_policy_applies_total", Help: "Successful replacements of the network policy table (changes and periodic resyncs).",
	})
	m.policyApplyErrors = f.NewCounter(prometheus.CounterOpts{
		Name: "weft_policy_apply_errors_total", Help: "Failed replacements of the network policy table (the last good table stayed).",
	})
	m.policyApplyDuration = f.NewHistogram(prometheus.HistogramOpts{
		Name:    "weft_policy_apply_duration_seconds",
		Help:    "Time one replacement of the network policy table took (counters read, table built and committed).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	})
	m.policyDropsLogged = f.NewCounter(prometheus.CounterOpts{
		Name: "weft_policy_drops_logged_total", Help: "Dropped packets the drop log (--policy-log-drops) wrote a line for.",
	})
	m.policyDropsNotLogged = f.NewCounter(prometheus.CounterOpts{
		Name: "weft_policy_drops_not_logged_total", Help: "Dropped packets that reached weftd's drop log beyond its rate (--policy-log-drops) and got no line.",
	})
	m.policyDropLogOverruns = f.NewCounter(prometheus.CounterOpts{
		Name: "weft_policy_drop_log_overruns_total", Help: "Times the kernel dropped drop log messages because weftd's socket buffer was full.",
	})
}

// setMembers sets the members-by-state gauge (every state, zeros too).
func (m *metrics) setMembers(ms []membership.Member) {
	counts := map[membership.State]int{
		membership.StateAlive: 0, membership.StateSuspect: 0, membership.StateDead: 0, membership.StateLeft: 0,
	}
	for _, x := range ms {
		counts[x.State]++
	}
	for s, n := range counts {
		m.members.WithLabelValues(string(s)).Set(float64(n))
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
