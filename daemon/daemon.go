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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/daemon/membership"
	"github.com/weftnet/weft/subnet"
	subnetetcd "github.com/weftnet/weft/subnet/etcd"
)

// Timings of the start sequence and the loops.
const (
	// debounceDelay collects a burst of triggers into one reconcile.
	debounceDelay = 75 * time.Millisecond
	// etcdCallTimeout bounds one etcd request.
	etcdCallTimeout = 5 * time.Second
	// etcdProbeTimeout bounds the reachability probe.
	etcdProbeTimeout = 2 * time.Second
	// startWait is how long a first start (nothing saved) waits for etcd
	// before giving up with an error.
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
type daemon struct {
	cfg      *Config
	log      logrus.FieldLogger
	nodeName string
	nodeID   string
	under    underlay
	state    *stateDir
	metrics  *metrics

	// Set during start, read-only afterwards.
	store  subnet.Store
	be     backend.Backend
	gossip gossip // nil when gossip is off

	kick    chan struct{} // reconcile trigger (debounced)
	lostc   chan struct{} // our lease key is gone: re-claim
	updatec chan struct{} // our record's data differs from ours: update it

	started   atomic.Bool  // the start sequence finished
	heartbeat atomic.Int64 // unix nanos of the reconcile loop's last turn

	// mu guards the fields below.
	mu sync.Mutex
	// data is this node's own data with its version; attrs what the
	// backend's Setup reported.
	data  ownData
	attrs backend.Attrs
	// netCfg is the network config in force; savedCfg the one last
	// written to the state dir (or read from it).
	netCfg   *subnet.Config
	savedCfg *subnet.Config
	// lease is our lease; leaseOK is true once etcd confirmed it in this
	// run (false while started from the saved lease with etcd away).
	lease   *subnet.Lease
	leaseOK bool
	// view is the last lease view from etcd (haveView once one came);
	// snapshot is the saved peer view loaded at start.
	view     subnet.View
	haveView bool
	snapshot *subnet.View
	// savedSnap is the snapshot last written to the state dir.
	savedSnap []subnet.Lease
	// joined holds gossip addresses already handed to Join.
	joined map[string]bool
	// Status.
	phase             string // start phase while not started
	subnetFileWritten bool
	reconciled        bool
	reconcileErr      string
	lastReconcile     time.Time
	lastDesired       backend.Desired
	peers             []membership.PeerView
	members           []membership.Member
	problems          map[string]string
	cfgErr            string
	pendingRestart    []string
	forwardingProblem string
	masqProblem       string
	masqCfg           masqConfig
	masqOn            bool // masquerade rules installed: repaired on resync
	forwardDropWarn   string
	etcdReachable     bool
}

func newDaemon(cfg *Config, log logrus.FieldLogger) (*daemon, error) {
	name := cfg.NodeName
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
		joined:   map[string]bool{},
		phase:    "starting",
	}
	d.log.WithFields(fields(logrus.Fields{
		"nodeID": id, "iface": u.Iface, "publicIP": u.PublicIP, "publicIPv6": u.PublicIPv6,
	})).Info("weftd starting")
	return d, nil
}

// run owns every goroutine of the daemon and returns after all stopped.
func (d *daemon) run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	if d.cfg.HTTPAddr != "" {
		ln, err := listenHTTP(d.cfg.HTTPAddr)
		if err != nil {
			return err
		}
		g.Go(func() error { return d.serveHTTP(gctx, ln) })
	}
	g.Go(func() error { return d.start(gctx, g) })
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

func (d *daemon) setPhase(p string) {
	d.mu.Lock()
	d.phase = p
	d.mu.Unlock()
}

// start runs the start sequence, then starts the long-running loops in g.
func (d *daemon) start(ctx context.Context, g *errgroup.Group) error {
	store, err := subnetetcd.Open(subnetetcd.ClientConfig{
		Endpoints:   d.cfg.EtcdEndpoints,
		CAFile:      d.cfg.EtcdCAFile,
		CertFile:    d.cfg.EtcdCertFile,
		KeyFile:     d.cfg.EtcdKeyFile,
		Username:    d.cfg.EtcdUsername,
		Password:    d.cfg.EtcdPassword,
		DialTimeout: etcdCallTimeout,
	}, subnetetcd.Config{
		Prefix:   d.cfg.EtcdPrefix,
		LeaseTTL: d.cfg.LeaseTTL,
		Log:      d.log.WithField("component", "etcd"),
	})
	if err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	d.store = store

	// 1. Network config: etcd, or the last good one saved.
	d.setPhase("getting the network config")
	nc, online, err := d.loadConfig(ctx)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.netCfg = nc
	d.mu.Unlock()

	// 2. Backend.
	d.setPhase("setting up the " + nc.Backend.Type + " backend")
	be, err := newBackend(d.cfg, nc, d.under, d.log)
	if err != nil {
		return fmt.Errorf("%s backend: %w", nc.Backend.Type, err)
	}
	d.be = be
	attrs, err := be.Setup(ctx)
	if err != nil {
		return fmt.Errorf("set up %s backend: %w", nc.Backend.Type, err)
	}
	d.mu.Lock()
	d.attrs = attrs
	d.mu.Unlock()

	// 3. Own data and its version.
	gaddr, err := d.gossipAdvertise()
	if err != nil {
		return err
	}
	data, err := d.state.dataVersion(ownData{
		PublicIP: d.under.PublicIP, PublicIPv6: d.under.PublicIPv6, GossipAddr: gaddr,
		BackendType: nc.Backend.Type, BackendData: attrs.Data,
	})
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.data = data
	d.mu.Unlock()
	if d.cfg.GossipBind != "" {
		m, err := membership.New(membership.Config{
			Name:             d.nodeName,
			BindAddr:         d.cfg.GossipBind,
			AdvertiseAddr:    gaddr,
			Join:             d.cfg.GossipJoin,
			KeyFile:          d.cfg.GossipKeyFile,
			ProbeInterval:    d.cfg.GossipProbeInterval,
			ProbeTimeout:     d.cfg.GossipProbeTimeout,
			GossipInterval:   d.cfg.GossipInterval,
			PushPullInterval: d.cfg.GossipPushPullInterval,
			SuspicionMult:    d.cfg.GossipSuspicionMult,
			Log:              d.log.WithField("component", "membership"),
			OnChange:         d.trigger,
		})
		if err != nil {
			return fmt.Errorf("gossip: %w", err)
		}
		d.gossip = m
	}

	// 4. Lease.
	d.setPhase("claiming a subnet")
	lease, err := d.acquireLease(ctx, nc, online)
	if err != nil {
		return err
	}
	snap, err := d.state.snapshot()
	if err != nil {
		d.log.WithError(err).Warn("ignoring the saved peer snapshot")
	}
	d.mu.Lock()
	d.snapshot = snap
	if snap != nil {
		d.savedSnap = normLeases(snap.Leases)
	}
	d.mu.Unlock()

	// 5. Forwarding, subnet file, masquerade.
	d.setPhase("writing the subnet file")
	if err := enableForwarding(nc.Network.IsValid(), nc.IPv6Network.IsValid()); err != nil {
		d.log.WithError(err).Error("IP FORWARDING IS OFF: pods on other nodes cannot reach this node's pods; enable it (sysctl) or run weftd with the privileges to do so")
		d.mu.Lock()
		d.forwardingProblem = err.Error()
		d.mu.Unlock()
	}
	sf := &subnet.SubnetFile{
		Network: nc.Network, Subnet: subnet.GatewayPrefix(lease.Subnet),
		IPv6Network: nc.IPv6Network, IPv6Subnet: subnet.GatewayPrefix(lease.IPv6Subnet),
		MTU: attrs.MTU, IPMasq: d.cfg.IPMasq,
	}
	if err := subnet.WriteSubnetFile(d.cfg.SubnetFile, sf); err != nil {
		return err
	}
	d.mu.Lock()
	d.subnetFileWritten = true
	d.mu.Unlock()
	d.log.WithFields(fields(logrus.Fields{"file": d.cfg.SubnetFile, "subnet": lease.Subnet, "ipv6Subnet": lease.IPv6Subnet, "mtu": attrs.MTU})).Info("subnet file written")
	d.applyMasquerade(nc, lease)

	if ok, err := sd.SdNotify(false, sd.SdNotifyReady); err != nil {
		d.log.WithError(err).Warn("systemd notify")
	} else if ok {
		d.log.Debug("notified systemd: ready")
	}

	// 6. The loops.
	d.setPhase("")
	d.started.Store(true)
	d.heartbeat.Store(time.Now().UnixNano())
	if d.gossip != nil {
		// An offline start took the saved lease without adopting it:
		// publish it before Run, so that gossip starts with it.
		d.pushMeta()
		g.Go(func() error { return d.gossip.Run(ctx) })
		if snap != nil {
			d.joinFrom(*snap)
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
	g.Go(func() error { return d.probeLoop(ctx) })
	if d.cfg.Reload != nil {
		g.Go(func() error { return d.reloadLoop(ctx) })
	}
	d.trigger()
	return nil
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

// loadConfig returns the network config from etcd, or the last good one
// saved in the state dir when etcd is unreachable (online false). With
// neither it keeps trying: forever while etcd answers that there is no
// (valid) config, for startWait while etcd does not answer.
func (d *daemon) loadConfig(ctx context.Context) (*subnet.Config, bool, error) {
	saved, serr := d.state.config()
	if serr != nil {
		d.log.WithError(serr).Warn("ignoring the saved network config")
	}
	d.mu.Lock()
	d.savedCfg = saved
	d.mu.Unlock()
	deadline := time.Now().Add(startWait)
	var waitedFor string
	for attempt := 0; ; attempt++ {
		if perr := d.probeEtcd(ctx); perr != nil {
			if saved != nil {
				d.log.WithError(perr).Warn("etcd unreachable: starting with the last good network config saved in the state dir")
				return saved, false, nil
			}
			if time.Now().After(deadline) {
				return nil, false, fmt.Errorf("cannot start: etcd (%s) is unreachable (%w) and %s has no saved network config (the first start of a node needs etcd)",
					strings.Join(d.cfg.EtcdEndpoints, ","), perr, d.cfg.StateDir)
			}
			d.log.WithError(perr).Warn("etcd unreachable; retrying")
		} else {
			cctx, cancel := context.WithTimeout(ctx, etcdCallTimeout)
			c, err := d.store.GetConfig(cctx)
			cancel()
			if err == nil {
				d.mu.Lock()
				d.saveConfigLocked(c)
				d.mu.Unlock()
				return c, true, nil
			}
			if ctx.Err() != nil {
				return nil, false, ctx.Err()
			}
			reason := err.Error()
			if saved != nil {
				d.log.WithError(err).Error("network config in etcd unusable: starting with the last good one saved in the state dir")
				d.mu.Lock()
				d.cfgErr = reason
				d.mu.Unlock()
				return saved, true, nil
			}
			if reason != waitedFor {
				waitedFor = reason
				d.log.WithError(err).Errorf("waiting for a valid network config at %s/config (write one with 'weftctl config set')", d.cfg.EtcdPrefix)
				d.setPhase("waiting for a valid network config: " + reason)
				d.mu.Lock()
				d.cfgErr = reason
				d.mu.Unlock()
			}
			deadline = time.Now().Add(startWait)
		}
		if err := sleep(ctx, min(backoff(attempt), max(time.Until(deadline), 100*time.Millisecond))); err != nil {
			return nil, false, err
		}
	}
}

// probeEtcd asks the store whether etcd answers, and records the result.
func (d *daemon) probeEtcd(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, etcdProbeTimeout)
	defer cancel()
	err := d.store.Probe(cctx)
	d.setEtcdReachable(err == nil)
	return err
}

func (d *daemon) setEtcdReachable(ok bool) {
	d.metrics.etcdReachable.Set(boolGauge(ok))
	d.mu.Lock()
	d.etcdReachable = ok
	d.mu.Unlock()
}

func (d *daemon) probeLoop(ctx context.Context) error {
	t := time.NewTicker(min(d.cfg.ResyncInterval, 5*time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			_ = d.probeEtcd(ctx)
		}
	}
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
	for attempt := 0; ; attempt++ {
		err := fn(ctx)
		if ctx.Err() != nil {
			return nil
		}
		d.log.WithError(err).Warnf("%s failed; retrying", what)
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

// onView handles a complete lease view from etcd.
func (d *daemon) onView(v subnet.View) {
	d.setEtcdReachable(true)
	d.mu.Lock()
	d.view = v
	d.haveView = d.haveView || v.Complete
	lease, leaseOK, data := d.lease, d.leaseOK, d.data
	d.mu.Unlock()
	if lease != nil && !leaseOK {
		// Started from the saved lease, or re-claiming: etcd answers
		// again, so the lease loop should retry now.
		poke(d.lostc)
	}
	if lease != nil && leaseOK && v.Revision >= lease.ModRevision {
		own, other := findOwn(v, lease.Primary(), d.nodeID)
		switch {
		case own == nil && other != nil:
			d.log.WithFields(logrus.Fields{"subnet": lease.Primary(), "holder": other.NodeName}).Error("our subnet is held by another node in etcd")
			poke(d.lostc)
		case own == nil:
			d.log.WithField("subnet", lease.Primary()).Warn("our lease key is gone from etcd; re-claiming the same subnet")
			poke(d.lostc)
		case !recordMatches(own.Record, d.record(data)):
			poke(d.updatec)
		}
	}
	d.joinFrom(v)
	d.trigger()
}

// joinFrom hands the gossip addresses of v's records to gossip (each
// address once).
func (d *daemon) joinFrom(v subnet.View) {
	if d.gossip == nil {
		return
	}
	var fresh []string
	d.mu.Lock()
	for _, a := range gossipAddrs(v, d.nodeID) {
		if !d.joined[a] {
			d.joined[a] = true
			fresh = append(fresh, a)
		}
	}
	d.mu.Unlock()
	if len(fresh) > 0 {
		d.gossip.Join(fresh)
	}
}

// onConfig handles a network config (or its error) from etcd.
func (d *daemon) onConfig(c *subnet.Config, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		var invalid *subnet.ConfigError
		if !errors.As(err, &invalid) && !errors.Is(err, subnet.ErrNoConfig) {
			// etcd did not answer: nothing is wrong with the config in
			// force, and the etcd probe reports the outage.
			d.log.WithError(err).Debug("cannot read the network config from etcd; keeping the one in force")
			return
		}
		reason := err.Error()
		if errors.Is(err, subnet.ErrNoConfig) {
			reason = "the network config was deleted from etcd"
		}
		if reason != d.cfgErr {
			d.log.WithField("reason", reason).Error("invalid network config in etcd; keeping the last good one in force")
			d.metrics.configErrors.Inc()
		}
		d.cfgErr = reason
		return
	}
	if d.cfgErr != "" {
		d.log.Info("network config in etcd is valid again")
	}
	d.cfgErr = ""
	changes := restartChanges(d.netCfg, c)
	if len(changes) > 0 {
		if strings.Join(changes, "; ") != strings.Join(d.pendingRestart, "; ") {
			d.log.WithField("changes", strings.Join(changes, "; ")).Warn("restart weftd on every node to apply: " + strings.Join(changes, "; "))
		}
		d.pendingRestart = changes
	} else {
		if d.pendingRestart != nil {
			d.log.Info("network config is back to the one in force; no restart needed")
		}
		d.pendingRestart = nil
		if c.SubnetMin != d.netCfg.SubnetMin || c.SubnetMax != d.netCfg.SubnetMax {
			d.log.WithFields(fields(logrus.Fields{"subnetMin": c.SubnetMin, "subnetMax": c.SubnetMax})).Info("network config updated (applies to future claims)")
		}
		d.netCfg = c
	}
	d.saveConfigLocked(c)
}

// saveConfigLocked writes c to the state dir unless it is the one saved
// there already (start-up reads the config from etcd, then the config
// watch delivers the same one again).
func (d *daemon) saveConfigLocked(c *subnet.Config) {
	if d.savedCfg != nil && *d.savedCfg == *c {
		return
	}
	if err := d.state.saveConfig(c); err != nil {
		d.log.WithError(err).Warn("save network config")
		return
	}
	d.savedCfg = c
}

// record returns this node's lease record for data.
func (d *daemon) record(data ownData) subnet.Record {
	return subnet.Record{
		NodeName:    d.nodeName,
		NodeID:      d.nodeID,
		PublicIP:    data.PublicIP,
		PublicIPv6:  data.PublicIPv6,
		GossipAddr:  data.GossipAddr,
		BackendType: data.BackendType,
		BackendData: data.BackendData,
		Version:     data.Version,
	}
}

func recordMatches(have, want subnet.Record) bool { return have == want }

// pushMeta publishes our metadata by gossip.
func (d *daemon) pushMeta() {
	if d.gossip == nil {
		return
	}
	d.mu.Lock()
	l, data := d.lease, d.data
	d.mu.Unlock()
	if l == nil {
		return
	}
	err := d.gossip.SetMeta(membership.Meta{
		NodeID: d.nodeID,
		Subnet: l.Subnet, IPv6Subnet: l.IPv6Subnet,
		PublicIP: data.PublicIP, PublicIPv6: data.PublicIPv6,
		Data: data.BackendData, Epoch: l.Epoch, Version: data.Version,
	})
	if err != nil {
		d.log.WithError(err).Error("publish gossip metadata")
	}
}

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
