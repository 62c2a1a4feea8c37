// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/daemon/membership"
	"github.com/weftnet/weft/daemon/status"
	"github.com/weftnet/weft/subnet"
)

// Timings of the start sequence and the loops.
const (
	// debounceDelay collects a burst of triggers into one reconcile.
	debounceDelay = 75 * time.Millisecond
	// storeCallTimeout bounds one store request (and connecting to etcd).
	storeCallTimeout = 5 * time.Second
	// storeProbeTimeout bounds the reachability probe.
	storeProbeTimeout = 2 * time.Second
	// startWait is how long a first start (nothing saved) waits for the
	// store before giving up with an error.
	startWait = 30 * time.Second
	// maxBackoff caps retry back-offs.
	maxBackoff = 30 * time.Second
)

// gossip is what the daemon uses of daemon/membership (defined here, by its
// consumer; *membership.Membership implements it).
type gossip interface {
	Run(ctx context.Context) error
	SetMeta(meta membership.Meta) error
	Join(addrs []string)
	Members() []membership.Member
	Prune(keep []string) int
	ReloadKeys() error
}

var _ gossip = (*membership.Membership)(nil)

// Run runs weftd until ctx is done (then it returns nil, leaving the data
// plane and the lease in place) or until something fatal happens (it
// returns why). See the package doc for the sequence.
func Run(ctx context.Context, cfg *Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	log := cfg.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	log = log.WithField("component", "weftd")
	if os.Getenv("GOMEMLIMIT") == "" && cfg.MemoryLimit > 0 {
		debug.SetMemoryLimit(cfg.MemoryLimit)
	}
	d, err := newDaemon(cfg, log)
	if err != nil {
		return err
	}
	return d.run(ctx)
}

// daemon is one running weftd.
//
// Its goroutines, all started and waited for by run:
//
//	start          the start sequence (start); it ends before any loop runs
//	http           /healthz, /readyz, /status, /metrics: reads only
//	reconcile      the reconcile loop (reconcileLoop)
//	lease          the lease loop (leaseLoop) and the KeepAlive call it runs
//	lease watch    WatchLeases, calling onView
//	config watch   WatchConfig, calling onConfig
//	reachability   the store's reachability (reachabilityLoop): a probe
//	               every 5 s, or the store's own report of its watches
//	network mark   once ready, the store's report of it, when the store
//	               takes one (markNetworkAvailable: the Node's condition)
//	reload         SIGHUP handling (reloadLoop)
//	endpoints      this node's pod endpoints into the store (endpointLoop)
//	policy         the policy table (policyLoop) and its two watchers
//	gossip         membership's own goroutines; they only call trigger
//
// The mutable state is grouped by owner, one lock per group; each group
// names the goroutines that write it. No two of these locks are ever held
// at once: code that needs several groups takes one after the other, so
// there is no lock order to keep.
type daemon struct {
	// Set by newDaemon; read-only afterwards.
	cfg      *Config
	log      logrus.FieldLogger
	nodeName string
	nodeID   string
	under    underlay
	state    *stateDir
	metrics  *metrics

	// Set by start before any loop runs; read-only afterwards. The HTTP
	// handlers, which run during start, read none of them.
	store  subnet.Store
	be     backend.Backend
	gossip gossip // nil when gossip is off

	// Wake-ups, buffered with capacity 1 (see poke).
	kick    chan struct{} // any goroutine → the reconcile loop (debounced)
	lostc   chan struct{} // lease watch → lease loop: our lease is gone, re-claim
	updatec chan struct{} // lease watch, lease loop → lease loop: write our data to our record

	started   atomic.Bool  // start finished (written by start)
	heartbeat atomic.Int64 // unix nanos of the reconcile loop's last turn (written by it)
	// reachable is whether the store answered when last asked (written
	// by the probe loop, the lease watch, and claims in start and the
	// lease loop).
	reachable atomic.Bool
	// reachLog is the reachability last logged (reachUnknown before the
	// first answer) and unreachableAt when it went unreachable (unix
	// nanos): an outage is logged when it starts and when it ends, not
	// per failed request.
	reachLog      atomic.Int32
	unreachableAt atomic.Int64
	// answeredAt is when the store last answered (any request), as
	// time.Since(monoStart): a probe that fails after it began is stale.
	answeredAt atomic.Int64

	netconf  netconfState
	lease    leaseState
	progress progressState
	recon    reconState
	masq     masqState
	spoof    spoofState
	bridgeNF bridgeNFState
	applied  appliedState // the reconcile loop's own (apply.go)
	pol      policyState
}

// netconfState is the network config. Writers: start (loadConfig) and the
// config watch (onConfig).
type netconfState struct {
	// mu guards the following.
	mu sync.Mutex
	// inForce is the network config in force; saved the one last written
	// to the state dir (or read from it).
	inForce *subnet.Config
	saved   *subnet.Config
	// err is why the store's config is not used ("" when it is).
	err string
	// pendingRestart lists the changes of the store's config that need a
	// restart of weftd to apply.
	pendingRestart []string
}

// leaseState is this node's own data, its lease, and the lease view.
type leaseState struct {
	// mu guards the following.
	mu sync.Mutex
	// data is this node's own data with its version (written by start,
	// and by the lease loop when a claim shows a higher version); attrs
	// what the backend's Setup reported (written by start).
	data  ownData
	attrs backend.Attrs
	// cur is our lease; ok is true once the store confirmed it in this
	// run (false while started from the saved lease with the store
	// away). Written by start and the lease loop (including the
	// KeepAlive it runs).
	cur *subnet.Lease
	ok  bool
	// view is the last lease view from the store (haveView once a
	// complete one came), written by the lease watch; snapshot is the
	// saved peer view, loaded by start.
	view     subnet.View
	haveView bool
	snapshot *subnet.View
	// joined holds gossip addresses already handed to Join (written by
	// joinFrom: from loops before the lease watch starts, then from the
	// lease watch).
	joined map[string]bool
	// rejectedLogged holds the rejected lease records of the last view,
	// each logged once (written by the lease watch).
	rejectedLogged map[subnet.RejectedLease]bool
	// checker checks the views against the network config (used by the
	// lease watch only).
	checker subnet.ViewChecker
}

// progressState is how far start got, for /readyz and /status. Written by
// start only.
type progressState struct {
	// mu guards the following.
	mu sync.Mutex
	// phase is the start phase ("" once start is done).
	phase             string
	subnetFileWritten bool
	// forwardingProblem is why IP forwarding could not be turned on.
	forwardingProblem string
	// gossipKeySource is where the gossip key came from (keySource*).
	gossipKeySource string
}

// reconState is what the reconcile loop found. Written by the reconcile
// loop only.
type reconState struct {
	// mu guards the following.
	mu            sync.Mutex
	reconciled    bool // a reconcile of a complete peer list succeeded after the subnet file was written
	err           string
	last          time.Time
	lastDesired   backend.Desired
	peers         []membership.PeerView
	members       []membership.Member
	problems      map[string]string
	rejected      []status.RejectedPeer // entries refused by the checks (recordRejected)
	savedSnapshot uint64                // leasesDigest of the snapshot last written to the state dir
}

func newDaemon(cfg *Config, log logrus.FieldLogger) (*daemon, error) {
	name := cfg.nodeName()
	if name == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("node name: no --node-name and no hostname: %w", err)
		}
		name = h
	}
	u, err := resolveUnderlay(cfg.Iface, cfg.PublicIP, cfg.PublicIPv6)
	if err != nil {
		return nil, err
	}
	st, err := openStateDir(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	id, err := st.nodeID()
	if err != nil {
		return nil, err
	}
	d := &daemon{
		cfg:      cfg,
		log:      log.WithField("node", name),
		nodeName: name,
		nodeID:   id,
		under:    u,
		state:    st,
		metrics:  newMetrics(),
		kick:     make(chan struct{}, 1),
		lostc:    make(chan struct{}, 1),
		updatec:  make(chan struct{}, 1),
	}
	d.metrics.reg.MustRegister(spoofCollector{}, policyCollector{d})
	d.metrics.storeReachable.WithLabelValues(d.storeLabel()).Set(0)
	d.progress.phase = "starting"
	d.log.WithFields(fields(logrus.Fields{
		"nodeID": id, "iface": u.Iface, "publicIP": u.PublicIP, "publicIPv6": u.PublicIPv6,
	})).Info("weftd starting")
	return d, nil
}

// run owns every goroutine of the daemon: it serves HTTP while start sets
// the node up, then runs the loops, and returns after all stopped.
func (d *daemon) run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	if d.cfg.HTTPAddr != "" {
		ln, err := listenHTTP(d.cfg.HTTPAddr)
		if err != nil {
			return err
		}
		g.Go(func() error { return d.serveHTTP(gctx, ln) })
	}
	g.Go(func() error {
		if err := d.start(gctx); err != nil {
			return err
		}
		return d.loops(gctx)
	})
	err := g.Wait()
	d.close()
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = nil
	}
	if err == nil {
		d.log.Info("weftd stopped; data plane and lease left in place")
	}
	return err
}

// loops runs the long-running goroutines until ctx is done or one of them
// fails (then it stops the others), and returns after all have stopped.
func (d *daemon) loops(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	if d.gossip != nil {
		// An offline start took the saved lease without adopting it:
		// publish it before Run, so that gossip starts with it.
		d.pushMeta()
		g.Go(func() error { return d.gossip.Run(ctx) })
		d.lease.mu.Lock()
		snap := d.lease.snapshot
		d.lease.mu.Unlock()
		if snap != nil {
			d.joinFrom(*snap)
			d.pruneGossip(*snap)
		}
	}
	g.Go(func() error { return d.reconcileLoop(ctx) })
	g.Go(func() error { return d.leaseLoop(ctx) })
	g.Go(func() error {
		return d.retry(ctx, "watch leases", func(ctx context.Context) error { return d.store.WatchLeases(ctx, d.onView) })
	})
	g.Go(func() error {
		return d.retry(ctx, "watch config", func(ctx context.Context) error { return d.store.WatchConfig(ctx, d.onConfig) })
	})
	g.Go(func() error { return d.reachabilityLoop(ctx) })
	g.Go(func() error { return d.markNetworkAvailable(ctx) })
	g.Go(func() error { return d.endpointLoop(ctx) })
	g.Go(func() error { return d.policyLoop(ctx) })
	if d.cfg.Reload != nil {
		g.Go(func() error { return d.reloadLoop(ctx) })
	}
	d.trigger()
	return g.Wait()
}

// close releases resources without tearing down the data plane.
func (d *daemon) close() {
	if d.be != nil {
		if err := d.be.Close(); err != nil {
			d.log.WithError(err).Warn("close backend")
		}
	}
	if c, ok := d.store.(io.Closer); ok {
		if err := c.Close(); err != nil {
			d.log.WithError(err).Debug("close store")
		}
	}
}

// monoStart is the origin of daemon.answeredAt, on the monotonic clock.
var monoStart = time.Now()

// probe asks the store whether it answers, and records the result. A
// failure is not recorded when the store answered another request while
// the probe waited (a view after quorum came back, say, while the probe
// was stuck on a member without a leader): that answer is newer news,
// and the next probe tells whether it still holds.
func (d *daemon) probe(ctx context.Context) error {
	began := int64(time.Since(monoStart))
	cctx, cancel := context.WithTimeout(ctx, storeProbeTimeout)
	defer cancel()
	err := d.store.Probe(cctx)
	if err != nil && d.answeredAt.Load() > began {
		d.log.WithError(err).Debug("store probe failed, but the store answered meanwhile: not counted")
		return err
	}
	d.noteReachable(err)
	return err
}

// noteReachable records whether the store answers (err nil) or not, and
// logs an outage when it starts.
func (d *daemon) noteReachable(err error) {
	d.setReachable(err == nil)
	if err != nil && d.reachLog.Swap(reachDown) != reachDown {
		d.unreachableAt.Store(time.Now().UnixNano())
		d.log.WithError(err).WithField("store", d.storeLabel()).Warn(d.cfg.storeKind() + " unreachable")
	}
}

// storeLabel is the kind of store weftd uses, as /status, /metrics and
// the log's store field name it: status.StoreEtcd or status.StoreKube.
func (d *daemon) storeLabel() string {
	if d.cfg.Kube.SubnetMgr {
		return status.StoreKube
	}
	return status.StoreEtcd
}

// Values of daemon.reachLog.
const (
	reachUnknown int32 = iota
	reachUp
	reachDown
)

func (d *daemon) setReachable(ok bool) {
	d.metrics.etcdReachable.Set(boolGauge(ok))
	d.metrics.storeReachable.WithLabelValues(d.storeLabel()).Set(boolGauge(ok))
	d.reachable.Store(ok)
	if ok {
		d.answeredAt.Store(int64(time.Since(monoStart)))
	}
	if ok && d.reachLog.Swap(reachUp) == reachDown {
		down := time.Since(time.Unix(0, d.unreachableAt.Load()))
		d.log.WithFields(logrus.Fields{"store": d.storeLabel(), "unreachableFor": down.Seconds()}).Info(d.cfg.storeKind() + " reachable again")
	}
}

// reachabilityLoop keeps d.reachable: from the store's own report when it
// gives one (subnet.ReachabilityWatcher: Kubernetes mode's informers, no
// request of their own), else from a probe every 5 s (etcd).
func (d *daemon) reachabilityLoop(ctx context.Context) error {
	if w, ok := d.store.(subnet.ReachabilityWatcher); ok {
		return d.retry(ctx, "follow the store's reachability", func(ctx context.Context) error {
			return w.WatchReachability(ctx, d.noteReachable)
		})
	}
	return d.probeLoop(ctx)
}

func (d *daemon) probeLoop(ctx context.Context) error {
	t := time.NewTicker(min(d.cfg.ResyncInterval, 5*time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			_ = d.probe(ctx)
		}
	}
}

// gossipAdvertise returns the gossip address to publish: --gossip-advertise,
// or the public IP with the bind port. Empty when gossip is off.
func (d *daemon) gossipAdvertise() (string, error) {
	if d.cfg.GossipBind == "" {
		return "", nil
	}
	if d.cfg.GossipAdvertise != "" {
		return d.cfg.GossipAdvertise, nil
	}
	h, port, err := splitPort(d.cfg.GossipBind)
	if err != nil {
		return "", fmt.Errorf("--gossip-bind: %w", err)
	}
	if port == 0 {
		return "", fmt.Errorf("--gossip-bind %s has port 0: set --gossip-advertise", d.cfg.GossipBind)
	}
	host := d.under.PublicIP.String()
	if ip, err := netip.ParseAddr(h); err == nil && !ip.IsUnspecified() {
		host = ip.String()
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

func (d *daemon) reloadLoop(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.cfg.Reload:
			if d.gossip == nil || d.cfg.GossipKeyFile == "" {
				d.log.Info("reload: no gossip key file, nothing to reload")
				continue
			}
			if err := d.gossip.ReloadKeys(); err != nil {
				d.log.WithError(err).Error("reload gossip keys")
			} else {
				d.log.Info("gossip keys reloaded")
			}
		}
	}
}

// retry runs fn until ctx is done, restarting it with back-off when it
// fails.
func (d *daemon) retry(ctx context.Context, what string, fn func(context.Context) error) error {
	d.log.Debugf("%s: started", what)
	defer d.log.Debugf("%s: stopped", what)
	reported := false
	for attempt := 0; ; attempt++ {
		began := time.Now()
		err := fn(ctx)
		if ctx.Err() != nil {
			return nil
		}
		// Say it once per failure streak: a store outage makes fn fail on
		// every retry, and the outage itself is reported by the
		// reachability loop. A call that ran for a while before failing was
		// working, so its failure starts a new streak.
		if time.Since(began) >= retryStreakReset {
			reported = false
		}
		entry := d.log.WithError(err).WithField("attempt", attempt+1)
		if reported {
			entry.Debugf("%s failed again; retrying", what)
		} else {
			entry.Warnf("%s failed; retrying", what)
			reported = true
		}
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return nil
		}
	}
}

// trigger asks for a (debounced) reconcile. It never blocks.
func (d *daemon) trigger() { poke(d.kick) }

// poke signals c (buffered, capacity 1) without blocking.
func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// retryStreakReset is how long a retried call must have run before its
// failure counts as a new failure streak (and is logged at warning level
// again).
const retryStreakReset = time.Minute

// backoff returns the wait before retry number attempt (0-based).
func backoff(attempt int) time.Duration {
	b := 500 * time.Millisecond
	for range min(attempt, 8) {
		b *= 2
	}
	return min(b, maxBackoff)
}

// sleep waits for d or until ctx is done (then it returns ctx's error).
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// fields drops zero addresses and prefixes from f, so logs do not show
// "invalid IP" for what is simply not set.
func fields(f logrus.Fields) logrus.Fields {
	for k, v := range f {
		switch x := v.(type) {
		case netip.Addr:
			if !x.IsValid() {
				delete(f, k)
			}
		case netip.Prefix:
			if !x.IsValid() {
				delete(f, k)
			}
		}
	}
	return f
}
