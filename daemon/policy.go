// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/weftnet/weft/cni/antispoof"
	"github.com/weftnet/weft/cni/gate"
	"github.com/weftnet/weft/daemon/policy"
	"github.com/weftnet/weft/daemon/status"
	"github.com/weftnet/weft/subnet"
)

// policyPoll is how often the policy loop looks at the pod record
// directory for a change (one stat).
const policyPoll = 100 * time.Millisecond

// Modes of status.Policy.
const (
	policyModeEtcd        = "etcd"
	policyModeOff         = "off"
	policyModeUnsupported = "unsupported"
)

// policyState is what the policy loop did. Written by the policy loop
// (and its two watchers for the views); read by /status and /metrics.
type policyState struct {
	// mu guards the following.
	mu sync.Mutex
	// st is the /status section.
	st status.Policy
	// pols and eps are the latest views of the policy and endpoint
	// sources (nil until the first arrives; a failed listing keeps the
	// last one).
	pols *subnet.PolicyView
	eps  *subnet.EndpointView
	// rules are the counter IDs of the applied state; base the packets
	// they counted before the last apply (an apply restarts the kernel's
	// counters at zero).
	rules []string
	base  map[string]uint64
	// applied is the state the kernel holds, for GET /policy/explain.
	applied *appliedPolicy
	// podObjects is policySource's, set before the loop starts.
	podObjects bool
}

// policyInputs is what one compile is made of.
type policyInputs struct {
	pols  *subnet.PolicyView
	eps   *subnet.EndpointView
	local []antispoof.Record
	// admit are the addresses new pods hold at the gate (package
	// cni/gate) whose records are among those read: the state compiled
	// from these inputs includes them, and its apply releases them.
	admit []gate.Pending
}

// policyLoop enforces the network policies: in etcd mode it compiles the
// policies kept in etcd, with every node's published pod endpoints and this
// node's own pod records (authoritative for local pods), for this node's
// pods, and replaces weft's policy table (package daemon/policy/nft) in
// one transaction; in Kubernetes mode the same from the API server's
// NetworkPolicies, Namespaces and Pods (see policySource). It is
// level-triggered: it applies when a policy or
// namespace changed, when an endpoint or lease changed, when the pod
// record directory changed, and every resync interval (which repairs a
// table changed by hand). Until both views arrived it leaves the table as
// it is (a restarted weftd keeps enforcing the previous run's table); a
// source error keeps the last views. It never removes the table on exit.
func (d *daemon) policyLoop(ctx context.Context) error {
	if !d.cfg.NetworkPolicy {
		d.setPolicyStatus(func(p *status.Policy) {
			p.Mode, p.Problem = policyModeOff, "--network-policy=false: network policies are not enforced"
		})
		if err := removePolicyTable(); err != nil {
			d.log.WithError(err).Warn("network policy off: remove the policy table and the pod gate")
		}
		d.log.Warn("network policy off (--network-policy=false): policies are not enforced on this node")
		return nil
	}
	src, err := d.policySource()
	if src == nil || err != nil {
		problem := "this store has no policy source: not enforced (the policy table is left as it is)"
		if err != nil {
			problem = fmt.Sprintf("policy source: %v: not enforced (the policy table is left as it is)", err)
		}
		d.setPolicyStatus(func(p *status.Policy) { p.Mode, p.Problem = policyModeUnsupported, problem })
		d.log.Error("network policy " + problem)
		if err := removeGate(); err != nil {
			d.log.WithError(err).Warn("remove the pod gate (new pods would wait for a policy nobody applies)")
		}
		return nil
	}
	d.setPolicyStatus(func(p *status.Policy) { p.Mode, p.Problem = src.mode, src.waiting })
	d.pol.podObjects = src.podObjects
	wake := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dir := d.startPolicyWatchers(ctx, &wg, src, wake)
	d.startDropLog(ctx, &wg)
	var lastMtime, lastApply time.Time
	var lastIn *policyInputs
	for {
		var mtime time.Time
		if dir != "" {
			if fi, err := os.Stat(dir); err == nil {
				mtime = fi.ModTime()
			}
		}
		// The held addresses are listed before the records are read (see
		// package cni/gate).
		held, herr := listHeld()
		if herr != nil {
			d.log.WithError(herr).Debug("list the addresses held at the pod gate")
		}
		in, err := d.policyInputs(dir, held)
		switch {
		case err != nil:
			d.setPolicyStatus(func(p *status.Policy) { p.ApplyError = err.Error() })
		case in.pols == nil || in.eps == nil:
			// Not both views yet: the table stays as it is.
		case lastIn == nil || !mtime.Equal(lastMtime) || in.pols != lastIn.pols || in.eps != lastIn.eps ||
			!slices.EqualFunc(in.local, lastIn.local, sameRecord) || len(in.admit) > 0 || time.Since(lastApply) >= d.cfg.ResyncInterval:
			lastMtime, lastApply = mtime, time.Now()
			if d.applyPolicies(in) {
				lastIn = in
				held = slices.DeleteFunc(held, func(h gate.Pending) bool { return slices.Contains(in.admit, h) })
			}
		}
		if herr == nil {
			d.setHeld(len(held))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-time.After(policyPoll):
		}
	}
}

// startPolicyWatchers starts the goroutines that keep the latest views
// of the endpoints and policies in d.pol and wake the loop, and the pod
// record directory's watch; it returns that directory ("" without
// --cni-data-dir).
func (d *daemon) startPolicyWatchers(ctx context.Context, wg *sync.WaitGroup, src *policySource, wake chan struct{}) string {
	wg.Add(3)
	go func() {
		defer wg.Done()
		d.runPolicySource(ctx, src)
	}()
	go func() {
		defer wg.Done()
		_ = d.retry(ctx, "watch endpoints", func(ctx context.Context) error {
			return src.eps.WatchEndpoints(ctx, func(v subnet.EndpointView) {
				d.pol.mu.Lock()
				d.pol.eps = &v
				d.pol.mu.Unlock()
				poke(wake)
			})
		})
	}()
	go func() {
		defer wg.Done()
		_ = d.retry(ctx, "watch network policies", func(ctx context.Context) error {
			return d.followPolicies(ctx, src.pols, wake)
		})
	}()

	if d.cfg.CNIDataDir == "" {
		return ""
	}
	dir := antispoof.RecordDir(d.cfg.CNIDataDir)
	// A pod record renamed in or removed wakes the loop at once (inotify
	// on Linux); the loop's poll stays as the fallback.
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.notifyDir(ctx, dir, wake)
	}()
	return dir
}

// notifyDir pokes wake whenever dir's entries change, until ctx ends. It
// re-arms the watch when dir appears or is replaced; where inotify is
// missing it returns and the loop's poll does the work.
func (d *daemon) notifyDir(ctx context.Context, dir string, wake chan struct{}) {
	var n *dirNotify
	defer func() {
		if n != nil {
			n.close()
		}
	}()
	for ctx.Err() == nil {
		if n == nil {
			var err error
			if n, err = newDirNotify(dir); errors.Is(err, errors.ErrUnsupported) {
				return
			} else if err != nil {
				n = nil
				if sleep(ctx, policyPoll) != nil {
					return
				}
				continue
			}
			poke(wake) // a record may have landed before the watch
		}
		if n.wait(policyPoll) {
			poke(wake)
		}
		if n.gone {
			n.close()
			n = nil
		}
	}
}

// sameRecord compares the parts of two pod records the compiler uses.
func sameRecord(a, b antispoof.Record) bool {
	return a.Port == b.Port && a.IPv4 == b.IPv4 && a.IPv6 == b.IPv6 && a.Pod.Namespace == b.Pod.Namespace &&
		a.Pod.Name == b.Pod.Name && fmt.Sprint(a.Pod.Labels) == fmt.Sprint(b.Pod.Labels)
}

// followPolicies keeps d.pol.pols the source's latest view, waking the
// loop after each listing; it returns when the source fails.
func (d *daemon) followPolicies(ctx context.Context, src subnet.PolicySource, wake chan struct{}) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
		v, err := src.ListPolicies(cctx)
		cancel()
		if err != nil {
			return fmt.Errorf("list network policies: %w", err)
		}
		d.pol.mu.Lock()
		d.pol.pols = v
		d.pol.mu.Unlock()
		poke(wake)
		if err := src.WaitPolicies(ctx, v.Revision); err != nil {
			return err
		}
	}
}

// setHeld records how many addresses stay held at the pod gate after a
// turn of the policy loop.
func (d *daemon) setHeld(n int) {
	d.metrics.policyHeld.Set(float64(n))
	d.setPolicyStatus(func(p *status.Policy) { p.HeldAddresses = n })
}

// policyInputs returns the latest views, this node's pod records with an
// identity, and those of held whose pod has a record (with or without an
// identity) and, in Kubernetes mode, a Pod object this node has seen. A
// missing record directory is no local pod.
func (d *daemon) policyInputs(dir string, held []gate.Pending) (*policyInputs, error) {
	d.pol.mu.Lock()
	in := &policyInputs{pols: d.pol.pols, eps: d.pol.eps}
	d.pol.mu.Unlock()
	if dir == "" {
		return in, nil
	}
	recs, err := antispoof.ReadRecords(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read pod records (the table stays as it is): %w", err)
	}
	byPort := map[string]antispoof.Record{}
	for _, r := range recs.Good {
		byPort[r.Port] = r
		if !r.Pod.IsZero() {
			in.local = append(in.local, r)
		}
	}
	var objs map[podKey]subnet.Endpoint
	if in.eps != nil {
		objs = d.localPodObjects(in.eps)
	}
	for _, h := range held {
		r, ok := byPort[h.Port]
		if !ok || !strings.EqualFold(r.MAC, h.MAC) {
			continue
		}
		// In Kubernetes mode a pod's labels come from its Pod object (the
		// kubelet passes none): until this node has seen it, the pod
		// stays held rather than be released on a state without them.
		if _, seen := objs[podKey{r.Pod.Namespace, r.Pod.Name}]; d.pol.podObjects && !r.Pod.IsZero() && !seen {
			continue
		}
		in.admit = append(in.admit, h)
	}
	return in, nil
}

// compileInput builds the compiler's input for this node: the published
// endpoints of the other nodes and this node's own pod records.
func (d *daemon) compileInput(in *policyInputs) (policy.Input, int, int) {
	pi := policy.Input{Node: d.nodeName, Policies: in.pols.Policies}
	for _, ns := range in.pols.Namespaces {
		pi.Namespaces = append(pi.Namespaces, policy.Namespace{Name: ns.Name, Labels: ns.Labels})
	}
	pod := func(node string, id subnet.PodIdentity, v4, v6 netip.Addr) policy.Pod {
		p := policy.Pod{Namespace: id.Namespace, Name: id.Name, Labels: id.Labels, Node: node}
		for _, a := range []netip.Addr{v4, v6} {
			if a.IsValid() {
				p.IPs = append(p.IPs, a)
			}
		}
		return p
	}
	remote := 0
	for _, e := range in.eps.Endpoints {
		if e.Node == d.nodeName {
			continue // the pod records below are authoritative
		}
		p := pod(e.Node, e.PodIdentity, e.IPv4, e.IPv6)
		p.Ports = policyPorts(e.Ports)
		pi.Pods = append(pi.Pods, p)
		remote++
	}
	objs := d.localPodObjects(in.eps)
	for _, r := range in.local {
		p := pod(d.nodeName, r.Pod, r.IPv4, r.IPv6)
		if o, ok := objs[podKey{r.Pod.Namespace, r.Pod.Name}]; ok {
			p.Labels, p.Ports = o.Labels, policyPorts(o.Ports)
		}
		pi.Pods = append(pi.Pods, p)
	}
	return pi, len(in.local), remote
}

// applyPolicies compiles in and replaces the policy table; it reports
// whether the table holds the result. On failure the kernel keeps the last
// table (the replacement is one transaction).
func (d *daemon) applyPolicies(in *policyInputs) bool {
	pi, local, remote := d.compileInput(in)
	st := policy.Compile(pi)
	st.DropLog = d.dropLog()
	start := time.Now()
	before, cerr := readPolicyCounters()
	err := applyPolicyTable(st, in.admit, d.cfg.CNIDataDir != "")
	took := time.Since(start)
	d.metrics.policyApplyDuration.Observe(took.Seconds())
	bn := d.bridgeNetfilter()

	prev, cur := d.recordApply(in, st, local, remote, before, cerr, err, bn)
	d.metrics.policies.Set(float64(cur.Policies))
	d.metrics.policyEnforced.Set(boolGauge(cur.Enforced))
	log := d.log.WithField("table", "inet weft-policy")
	if err != nil {
		d.metrics.policyApplyErrors.Inc()
		if prev.ApplyError != cur.ApplyError {
			log.WithError(err).Error("apply network policies: the table in the kernel stays as it was")
		}
		return false
	}
	d.metrics.policyApplies.Inc()
	d.setAppliedPolicy(pi, st, cur)
	fields := logrus.Fields{"policies": cur.Policies, "localPods": local, "remotePods": remote,
		"revision": cur.Revision, "rules": len(st.Ingress) + len(st.Egress), "took": took.Round(time.Microsecond).String()}
	if len(in.admit) > 0 {
		fields["released"] = len(in.admit)
	}
	switch {
	case prev.Applies == 0 || prev.ApplyError != "":
		log.WithFields(fields).Info("network policies applied")
	case prev.Revision != cur.Revision || prev.LocalPods != cur.LocalPods || prev.EndpointRevision != cur.EndpointRevision:
		log.WithFields(fields).Debug("network policies applied")
	}
	if cur.Problem != prev.Problem && cur.Problem != "" {
		log.Error("network policy " + cur.Problem)
	}
	if len(cur.Skipped) != len(prev.Skipped) {
		for _, s := range cur.Skipped {
			log.WithFields(logrus.Fields{"policy": s.Policy, "field": s.Field}).Warn("policy part not enforced (skipped): " + s.Detail)
		}
	}
	if len(cur.Rejected) != len(prev.Rejected) {
		for _, r := range cur.Rejected {
			log.WithFields(logrus.Fields{"key": r.Key, "kept": r.Kept}).Warn("stored policy entry rejected: " + r.Reason)
		}
	}
	return true
}

// recordApply updates d.pol after an apply of st (err: its failure;
// before, cerr: the counters read just before it) and returns the /status
// section before and after.
func (d *daemon) recordApply(in *policyInputs, st *policy.State, local, remote int, before map[string]uint64, cerr, err error, bn status.BridgeNetfilter) (prev, cur status.Policy) {
	d.pol.mu.Lock()
	defer d.pol.mu.Unlock()
	prev = d.pol.st
	p := &d.pol.st
	if err != nil {
		p.ApplyError = err.Error()
	} else {
		if cerr == nil {
			if d.pol.base == nil {
				d.pol.base = map[string]uint64{}
			}
			for id, n := range before {
				d.pol.base[id] += n
			}
		}
		d.pol.rules = counterIDs(st)
		p.ApplyError = ""
		p.Applies++
		p.LastApply = time.Now()
		p.Policies, p.Namespaces = len(in.pols.Policies), len(in.pols.Namespaces)
		p.LocalPods, p.RemotePods = local, remote
		p.LocalPodsWithoutObject = d.podsWithoutObject(in)
		p.Revision, p.EndpointRevision = in.pols.Revision, in.eps.Revision
		p.Rejected = nil
		for _, r := range in.pols.Rejected {
			p.Rejected = append(p.Rejected, status.PolicyRejected{Key: r.Key, Reason: r.Err.Error(), Kept: r.Kept})
		}
		p.Skipped = nil
		for _, pr := range st.Problems {
			p.Skipped = append(p.Skipped, status.PolicySkipped{Policy: pr.Policy, Field: pr.Field, Detail: pr.Detail})
		}
	}
	applied := p.Applies > 0
	switch {
	case !applied:
		p.Enforced, p.Problem = false, "the policy table could not be installed: "+p.ApplyError
	case d.cfg.CNIDataDir == "":
		p.Enforced, p.Problem = false, "no --cni-data-dir: this node's pods are unknown, so no policy selects them"
	case !bn.Loaded || bn.Problem != "":
		p.Enforced, p.Problem = false, "not enforced between pods on this node's bridge: "+bn.Problem
	case err != nil:
		p.Enforced, p.Problem = true, "the last apply failed; the kernel enforces the last good table: "+p.ApplyError
	default:
		p.Enforced, p.Problem = true, ""
	}
	cur = *p
	return prev, cur

}

// counterIDs lists the counter IDs of st's rules as the table has them.
func counterIDs(st *policy.State) []string {
	var ids []string
	for _, r := range st.Ingress {
		ids = append(ids, r.ID)
	}
	for _, r := range st.Egress {
		ids = append(ids, r.ID)
	}
	ids = append(ids, fixedCounterIDs()...)
	slices.Sort(ids)
	return slices.Compact(ids)
}

// setPolicyStatus changes the /status section under its lock.
func (d *daemon) setPolicyStatus(fn func(*status.Policy)) {
	d.pol.mu.Lock()
	fn(&d.pol.st)
	d.pol.mu.Unlock()
}

// policyStatus returns the /status section.
func (d *daemon) policyStatus() *status.Policy {
	d.pol.mu.Lock()
	defer d.pol.mu.Unlock()
	p := d.pol.st
	p.Rejected, p.Skipped = slices.Clone(p.Rejected), slices.Clone(p.Skipped)
	return &p
}

// policyCollector exports the packet counters of the policy table's rules,
// read from the kernel at each scrape and added to what they counted
// before the last apply, as weft_policy_packets_total{rule}: every rule of
// the applied state, zeros included.
type policyCollector struct{ d *daemon }

var policyPacketsDesc = prometheus.NewDesc("weft_policy_packets_total",
	"Packets matched by the rules of the network policy table, by rule (the policy rule, peer and port it comes from, or a default deny; see docs/network-policy.md).",
	[]string{"rule"}, nil)

func (c policyCollector) Describe(ch chan<- *prometheus.Desc) { ch <- policyPacketsDesc }

func (c policyCollector) Collect(ch chan<- prometheus.Metric) {
	counts, rules := c.d.policyPacketCounts()
	for _, id := range rules {
		ch <- prometheus.MustNewConstMetric(policyPacketsDesc, prometheus.CounterValue, float64(counts[id]), id)
	}
}
