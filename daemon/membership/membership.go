// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package membership

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/sirupsen/logrus"
)

// ErrMetaTooLarge is returned (wrapped, with the size) by
// [Membership.SetMeta] for metadata whose encoding exceeds [MaxMetaSize].
var ErrMetaTooLarge = errors.New("gossip metadata too large")

const (
	// updateTimeout bounds how long SetMeta waits for the update to be
	// broadcast; gossip and push/pull spread it anyway.
	updateTimeout = time.Second
	// publishTries is how many times SetMeta hands memberlist the
	// metadata before it leaves the rest to the rejoin loop.
	publishTries = 3
	// leaveTimeout bounds how long Run waits for its leave message to go out.
	leaveTimeout = 2 * time.Second
	// addrTTL is how long an address learned from Join or from a member
	// is re-joined after it was last given or last answered. Seeds from
	// Config.Join are kept for ever.
	addrTTL = time.Hour
	// reannounceWindow is how long the rejoin loop keeps pushing this
	// node's state to live members after others were seen holding it at
	// an older address (a restart on a new port).
	reannounceWindow = 30 * time.Second
)

// Membership is this node's gossip member. Create it with [New] and run it
// with [Membership.Run]; the other methods are safe for concurrent use at
// any time, before, during or after Run.
//
// Lock order: memberlist calls its delegates (which take mu) while holding
// its own node lock, so mu is never held while calling into memberlist.
type Membership struct {
	cfg      Config
	log      logrus.FieldLogger
	bindHost string
	bindPort int
	advHost  string // "" unless Config.AdvertiseAddr is set
	advPort  int
	bootID   string
	started  atomic.Bool
	limiter  *rateLimiter

	// Test hooks: crash ends Run without a leave message (as a killed
	// process); wrapTransport wraps the transport (to cut links).
	crash         chan struct{}
	wrapTransport func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport
	// updateNode is memberlist's UpdateNode; a test replaces it to lose
	// an update as memberlist does when a refutation overtakes it.
	updateNode func(*memberlist.Memberlist) error
	// pubMu serialises publish.
	pubMu sync.Mutex

	// changed wakes the notifier goroutine, which calls OnChange.
	changed chan struct{}
	// wakeJoin wakes the rejoin loop (new addresses, a self conflict).
	wakeJoin chan struct{}

	// keyMu serialises key reloads.
	keyMu sync.Mutex

	// mu guards the following fields.
	mu        sync.Mutex
	ml        *memberlist.Memberlist // set while Run's memberlist exists
	keyring   *memberlist.Keyring    // nil without a key file
	keyStamp  string                 // what the key file looked like when last read
	localAddr string
	meta      Meta
	metaBytes []byte // wireMeta of meta and leaving
	// held is the metadata memberlist holds for this member, as its
	// events report it; it differs from metaBytes until an update is
	// taken (see publish).
	held    []byte
	leaving bool // Run is leaving the cluster
	members map[string]*Member
	addrs   map[string]*knownAddr
	// keep holds the names the authority's view names (nil until the
	// first Prune); extra counts the members whose name is not in keep.
	keep  map[string]bool
	extra int
	// refused counts new member names refused because the table was full.
	refused uint64
	// reannounceUntil is set when other members hold this node at an
	// older address: until then the rejoin loop pushes our state to live
	// members too, so that they accept us once the old address is dead.
	reannounceUntil time.Time
}

// wireMeta is the metadata as gossiped: Meta plus the leaving flag a
// member sets just before it leaves.
type wireMeta struct {
	Meta
	Leaving bool `json:"leaving,omitempty"`
}

// knownAddr is an address the rejoin loop may join.
type knownAddr struct {
	seed bool      // from Config.Join: never forgotten
	last time.Time // last given by Join, seen on a member, or joined
}

// New checks cfg, applies defaults and returns a Membership. It starts
// nothing.
func New(cfg Config) (*Membership, error) {
	if cfg.Name == "" {
		return nil, errors.New("gossip member name is empty")
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = DefaultBindAddr
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.ProbeInterval, DefaultProbeInterval)
	def(&cfg.ProbeTimeout, DefaultProbeTimeout)
	def(&cfg.GossipInterval, DefaultGossipInterval)
	def(&cfg.PushPullInterval, DefaultPushPullInterval)
	def(&cfg.GossipToTheDeadTime, DefaultGossipToTheDeadTime)
	def(&cfg.DeadNodeReclaimTime, DefaultDeadNodeReclaimTime)
	def(&cfg.RejoinInterval, DefaultRejoinInterval)
	def(&cfg.KeyCheckInterval, DefaultKeyCheckInterval)
	def(&cfg.ForgetAfter, DefaultForgetAfter)
	cfg.ForgetAfter = max(cfg.ForgetAfter, cfg.GossipToTheDeadTime)
	if cfg.MaxMembers <= 0 {
		cfg.MaxMembers = DefaultMaxMembers
	}
	if cfg.SuspicionMult <= 0 {
		cfg.SuspicionMult = DefaultSuspicionMult
	}
	if cfg.ProbeTimeout >= cfg.ProbeInterval {
		return nil, fmt.Errorf("gossip probe timeout %s must be shorter than the probe interval %s", cfg.ProbeTimeout, cfg.ProbeInterval)
	}
	if cfg.Log == nil {
		l := logrus.New()
		l.Out = io.Discard
		cfg.Log = l
	}
	m := &Membership{
		cfg:      cfg,
		log:      cfg.Log.WithField("component", "membership"),
		changed:  make(chan struct{}, 1),
		wakeJoin: make(chan struct{}, 1),
		members:  make(map[string]*Member),
		addrs:    make(map[string]*knownAddr),
		limiter:  newRateLimiter(10 * time.Second),
		crash:    make(chan struct{}),
	}
	m.updateNode = func(ml *memberlist.Memberlist) error { return ml.UpdateNode(updateTimeout) }
	var err error
	if m.bindHost, m.bindPort, err = splitHostPort(cfg.BindAddr, DefaultPort); err != nil {
		return nil, fmt.Errorf("gossip bind address: %w", err)
	}
	if cfg.AdvertiseAddr != "" {
		if m.advHost, m.advPort, err = splitHostPort(cfg.AdvertiseAddr, 0); err != nil {
			return nil, fmt.Errorf("gossip advertise address: %w", err)
		}
	}
	if cfg.KeyFile != "" && len(cfg.Keys) > 0 {
		return nil, errors.New("gossip keys given both as a key file and directly: give one")
	}
	if cfg.KeyFile != "" {
		// Fail early on a bad key file; Run reads it again.
		if _, _, err := readKeyFile(cfg.KeyFile); err != nil {
			return nil, err
		}
	}
	if len(cfg.Keys) > 0 {
		keys, err := checkKeys(cfg.Keys)
		if err != nil {
			return nil, err
		}
		cfg.Keys = keys
	}
	haveKeys := cfg.KeyFile != "" || len(cfg.Keys) > 0
	switch cfg.Encryption {
	case EncryptionAuto:
		cfg.Encryption = EncryptionOff
		if haveKeys {
			cfg.Encryption = EncryptionOn
		}
	case EncryptionOff:
		if haveKeys {
			return nil, errors.New("gossip encryption is off but gossip keys are given")
		}
	case EncryptionAccept, EncryptionSend, EncryptionOn:
		if !haveKeys {
			return nil, fmt.Errorf("gossip encryption mode %q needs a gossip key", cfg.Encryption)
		}
	default:
		return nil, fmt.Errorf("unknown gossip encryption mode %q (want off, accept, send or on)", cfg.Encryption)
	}
	for _, p := range cfg.AllowedCIDRs {
		if !p.IsValid() {
			return nil, errors.New("gossip allowed source range is not a valid prefix")
		}
	}
	m.cfg.Keys, m.cfg.Encryption = cfg.Keys, cfg.Encryption
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("boot id: %w", err)
	}
	m.bootID = hex.EncodeToString(b[:])
	m.meta = Meta{BootID: m.bootID}
	m.metaBytes, _ = json.Marshal(wireMeta{Meta: m.meta})
	now := time.Now()
	for _, a := range cfg.Join {
		a, err := normaliseAddr(a)
		if err != nil {
			return nil, fmt.Errorf("gossip seed: %w", err)
		}
		m.addrs[a] = &knownAddr{seed: true, last: now}
	}
	return m, nil
}

// splitHostPort splits "host:port", "host" (port def) or ":port" (host
// 0.0.0.0). Hosts must be IP addresses.
func splitHostPort(s string, def int) (string, int, error) {
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		host, portStr = strings.Trim(s, "[]"), ""
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return "", 0, fmt.Errorf("%q: host must be an IP address", s)
	}
	port := def
	if portStr != "" {
		if port, err = strconv.Atoi(portStr); err != nil || port < 0 || port > 65535 {
			return "", 0, fmt.Errorf("%q: bad port", s)
		}
	}
	return host, port, nil
}

// normaliseAddr returns addr as host:port, adding the default port.
func normaliseAddr(addr string) (string, error) {
	host, port, err := splitHostPort(addr, DefaultPort)
	if err != nil {
		return "", err
	}
	if port == 0 {
		return "", fmt.Errorf("%q: port 0", addr)
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// BootID returns the boot ID New generated, which SetMeta puts in Meta.
func (m *Membership) BootID() string { return m.bootID }

// LocalAddr returns the advertised gossip address host:port, or "" before
// Run has created the member.
func (m *Membership) LocalAddr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.localAddr
}

// SetMeta sets this node's metadata (BootID is filled in) and, while Run
// is running, announces it. Metadata whose JSON encoding exceeds
// [MaxMetaSize] bytes is refused with an error wrapping [ErrMetaTooLarge]
// and the previous metadata stays in force.
func (m *Membership) SetMeta(meta Meta) error {
	meta.BootID = m.bootID
	b, err := json.Marshal(wireMeta{Meta: meta})
	if err != nil {
		return fmt.Errorf("encode gossip metadata: %w", err)
	}
	// The leaving announcement must fit too.
	if n := len(b) + len(`,"leaving":true`); n > MaxMetaSize {
		return fmt.Errorf("%w: %d bytes encoded, the limit is %d", ErrMetaTooLarge, n, MaxMetaSize)
	}
	m.mu.Lock()
	if m.leaving {
		b, _ = json.Marshal(wireMeta{Meta: meta, Leaving: true})
	}
	m.meta, m.metaBytes = meta, b
	ml := m.ml
	m.mu.Unlock()
	if ml != nil {
		m.publish(ml, publishTries, "metadata update")
	}
	return nil
}

// publish hands memberlist this member's metadata, up to tries times,
// until memberlist holds it. memberlist numbers an update (its
// incarnation) before it takes the lock that applies it; a refutation
// that lands in between (a restarted member learning the number of its
// previous life from the others) leaves the update with a lower number,
// which memberlist drops without a word, keeping the metadata it had and
// gossiping that for ever. The next update is numbered above the
// refutation and is taken. What is still not taken after tries, the
// rejoin loop publishes again (republish).
func (m *Membership) publish(ml *memberlist.Memberlist, tries int, what string) {
	// memberlist's UpdateNode is not safe to run twice at once (it reads
	// this member's address outside its lock).
	m.pubMu.Lock()
	defer m.pubMu.Unlock()
	m.publishLocked(ml, tries, what)
}

func (m *Membership) publishLocked(ml *memberlist.Memberlist, tries int, what string) {
	for try := 1; ; try++ {
		err := m.updateNode(ml)
		if m.metaHeld() {
			if err != nil {
				// Taken; gossip and push/pull spread it later.
				m.log.WithError(err).Debug(what + " not yet broadcast")
			}
			return
		}
		if try >= tries {
			m.log.WithField("tries", try).Info(what + " not taken by gossip yet; the rejoin loop tries again")
			return
		}
		m.log.WithField("try", try).Debug(what + " dropped by gossip (overtaken by a refutation); publishing again")
	}
}

// republish publishes the metadata once more if memberlist does not hold
// it (see publish), no publish is under way, and Run is not leaving.
func (m *Membership) republish(ml *memberlist.Memberlist) {
	if !m.pubMu.TryLock() {
		return
	}
	defer m.pubMu.Unlock()
	m.mu.Lock()
	leaving := m.leaving
	m.mu.Unlock()
	if !leaving && !m.metaHeld() {
		m.publishLocked(ml, 1, "metadata update")
	}
}

// metaHeld says whether memberlist holds this member's current metadata.
func (m *Membership) metaHeld() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.Equal(m.held, m.metaBytes)
}

// Join adds gossip addresses (host:port, or host with the default port)
// for the rejoin loop, for example those in the lease records, and wakes
// it. It does not block. Addresses that are not seeds are forgotten an
// hour after they were last given and last answered.
func (m *Membership) Join(addrs []string) {
	now := time.Now()
	added := false
	m.mu.Lock()
	for _, a := range addrs {
		a, err := normaliseAddr(a)
		if err != nil || a == m.localAddr {
			continue
		}
		if k, ok := m.addrs[a]; ok {
			k.last = now
			continue
		}
		m.addrs[a] = &knownAddr{last: now}
		added = true
	}
	m.mu.Unlock()
	if added {
		wake(m.wakeJoin)
	}
}

// Members returns every member known since Run started, except self,
// sorted by name. Dead and left members stay listed.
func (m *Membership) Members() []Member {
	m.mu.Lock()
	out := make([]Member, 0, len(m.members))
	for _, mb := range m.members {
		out = append(out, *mb)
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Prune tells the member which names the authority's view names (every
// lease holder) and forgets the members it does not name that have been
// dead or left for Config.ForgetAfter. Members keep names are always
// admitted to the table; the others count against Config.MaxMembers. The
// rejoin loop repeats the forgetting with the last keep set, so one call
// per change of the view is enough. It returns how many members it forgot.
func (m *Membership) Prune(keep []string) int {
	set := make(map[string]bool, len(keep))
	for _, n := range keep {
		set[n] = true
	}
	m.mu.Lock()
	m.keep = set
	n := m.pruneLocked(time.Now())
	m.mu.Unlock()
	if n > 0 {
		wake(m.changed)
	}
	return n
}

// pruneLocked forgets members not in keep that have been dead or left for
// ForgetAfter, and recounts extra. It does nothing before the first Prune.
func (m *Membership) pruneLocked(now time.Time) int {
	if m.keep == nil {
		return 0
	}
	forgot := 0
	m.extra = 0
	for name, mb := range m.members {
		if m.keep[name] {
			continue
		}
		if (mb.State == StateDead || mb.State == StateLeft) && now.Sub(mb.Since) >= m.cfg.ForgetAfter {
			delete(m.members, name)
			forgot++
			continue
		}
		m.extra++
	}
	return forgot
}

// Refused returns how many new member names were refused since New
// because the member table was full.
func (m *Membership) Refused() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.refused
}

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Run creates the memberlist member, joins the seeds, and keeps gossiping
// until ctx is done; then it leaves the cluster, shuts the member down and
// returns after all its goroutines have ended. Run may be called once.
func (m *Membership) Run(ctx context.Context) error {
	if !m.started.CompareAndSwap(false, true) {
		return errors.New("membership: Run called twice")
	}
	logger := log.New(&logWriter{m: m}, "", 0)

	var ring *memberlist.Keyring
	if m.cfg.KeyFile != "" || len(m.cfg.Keys) > 0 {
		m.keyMu.Lock()
		keys, stamp := m.cfg.Keys, ""
		if m.cfg.KeyFile != "" {
			var err error
			if keys, stamp, err = readKeyFile(m.cfg.KeyFile); err != nil {
				m.keyMu.Unlock()
				return err
			}
		}
		var err error
		if ring, err = memberlist.NewKeyring(keys[1:], keys[0]); err != nil {
			m.keyMu.Unlock()
			return fmt.Errorf("gossip keyring: %w", err)
		}
		m.mu.Lock()
		m.keyring, m.keyStamp = ring, stamp
		m.mu.Unlock()
		m.keyMu.Unlock()
	}

	if m.advHost == "" {
		if a, _ := netip.ParseAddr(m.bindHost); a.Is6() && a.IsUnspecified() {
			// memberlist would advertise "::" itself.
			return fmt.Errorf("gossip bound to [::] needs an advertise address")
		}
	}
	tr, err := newTransport(m.bindHost, m.bindPort, logger)
	if err != nil {
		return err
	}
	port := tr.GetAutoBindPort()
	advHost, advPort := m.advHost, m.advPort
	if advHost != "" && advPort == 0 {
		advPort = port
	}
	ip, aport, err := tr.FinalAdvertiseAddr(advHost, advPort)
	if err != nil {
		tr.Shutdown()
		return fmt.Errorf("gossip advertise address: %w", err)
	}
	local := net.JoinHostPort(ip.String(), strconv.Itoa(aport))
	if a, ok := netip.AddrFromSlice(ip); ok && len(m.cfg.AllowedCIDRs) > 0 &&
		!slices.ContainsFunc(m.cfg.AllowedCIDRs, func(p netip.Prefix) bool { return p.Contains(a.Unmap()) }) {
		tr.Shutdown()
		return fmt.Errorf("gossip advertise address %s is outside the allowed source ranges %v", a.Unmap(), m.cfg.AllowedCIDRs)
	}

	d := &delegate{m: m}
	mlc := memberlist.DefaultLANConfig()
	mlc.Name = m.cfg.Name
	mlc.Transport = tr
	if m.wrapTransport != nil {
		mlc.Transport = m.wrapTransport(tr)
	}
	mlc.BindAddr, mlc.BindPort = m.bindHost, port
	mlc.AdvertiseAddr, mlc.AdvertisePort = ip.String(), aport
	mlc.ProbeInterval = m.cfg.ProbeInterval
	mlc.ProbeTimeout = m.cfg.ProbeTimeout
	mlc.SuspicionMult = m.cfg.SuspicionMult
	mlc.GossipInterval = m.cfg.GossipInterval
	mlc.PushPullInterval = m.cfg.PushPullInterval
	mlc.GossipToTheDeadTime = m.cfg.GossipToTheDeadTime
	mlc.DeadNodeReclaimTime = m.cfg.DeadNodeReclaimTime
	mlc.Keyring = ring
	mlc.GossipVerifyIncoming = m.cfg.Encryption == EncryptionOn
	mlc.GossipVerifyOutgoing = m.cfg.Encryption == EncryptionOn || m.cfg.Encryption == EncryptionSend
	for _, p := range m.cfg.AllowedCIDRs {
		p = p.Masked()
		mlc.CIDRsAllowed = append(mlc.CIDRsAllowed, net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())})
	}
	mlc.Alive = d
	mlc.Delegate = d
	mlc.Events = d
	mlc.Conflict = d
	mlc.Ping = d
	mlc.Logger = logger

	ml, err := memberlist.Create(mlc)
	if err != nil {
		tr.Shutdown()
		return fmt.Errorf("create gossip member %s on %s: %w", m.cfg.Name, local, err)
	}
	m.mu.Lock()
	m.ml, m.localAddr = ml, local
	delete(m.addrs, local)
	m.mu.Unlock()
	m.log.WithFields(logrus.Fields{"addr": local, "encrypted": ring != nil, "encryption": m.cfg.Encryption, "boot": m.bootID}).Info("gossip member started")

	var wg sync.WaitGroup
	loopCtx, stopLoops := context.WithCancel(context.Background())
	wg.Go(func() { m.notifyLoop(loopCtx) })
	wg.Go(func() { m.rejoinLoop(loopCtx, ml) })
	if m.cfg.KeyFile != "" {
		wg.Go(func() { m.keyLoop(loopCtx) })
	}

	leave := true
	select {
	case <-ctx.Done():
	case <-m.crash:
		leave = false
	}
	stopLoops()
	if leave {
		// Announce that we are leaving, so that others record "left"
		// rather than "dead" (memberlist's leave event does not say).
		m.mu.Lock()
		m.leaving = true
		m.metaBytes, _ = json.Marshal(wireMeta{Meta: m.meta, Leaving: true})
		m.mu.Unlock()
		m.publish(ml, publishTries, "leaving announcement")
		if err := ml.Leave(leaveTimeout); err != nil {
			m.log.WithError(err).Warn("gossip leave not broadcast")
		}
	}
	m.mu.Lock()
	m.ml = nil
	m.mu.Unlock()
	// Shutdown cancels dials in flight, so the rejoin loop's joins end.
	err = ml.Shutdown()
	wg.Wait()
	m.log.Info("gossip member stopped")
	if err != nil {
		return fmt.Errorf("shut down gossip member: %w", err)
	}
	return nil
}

// notifyLoop calls OnChange after changes, never concurrently.
func (m *Membership) notifyLoop(ctx context.Context) {
	m.log.Debug("notify loop started")
	defer m.log.Debug("notify loop stopped")
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.changed:
			if m.cfg.OnChange != nil {
				m.cfg.OnChange()
			}
		}
	}
}

// rejoinLoop joins, every RejoinInterval and when woken, each known
// address at which no live member is known: seeds and addresses given to
// Join (the daemon gives those of the store's records), never an address
// only a member advertised. This
// heals partitions longer than memberlist's GossipToTheDeadTime, after
// which memberlist itself stops contacting dead members. Each address
// has at most one join in flight.
func (m *Membership) rejoinLoop(ctx context.Context, ml *memberlist.Memberlist) {
	m.log.Debug("rejoin loop started")
	defer m.log.Debug("rejoin loop stopped")
	var wg sync.WaitGroup
	defer wg.Wait()
	var mu sync.Mutex
	inflight := make(map[string]bool)
	lastConnected := time.Now()

	t := time.NewTicker(m.cfg.RejoinInterval)
	defer t.Stop()
	for {
		if !m.metaHeld() {
			// republish returns at once beside a publish under way.
			wg.Go(func() { m.republish(ml) })
		}
		targets, anyAlive := m.joinTargets()
		if anyAlive {
			lastConnected = time.Now()
		} else if len(targets) > 0 && time.Since(lastConnected) > 30*time.Second {
			if m.limiter.allow("not connected") {
				m.log.WithField("addrs", targets).Warn("gossip: no live member; still trying to join")
			}
		}
		for _, a := range targets {
			mu.Lock()
			busy := inflight[a]
			inflight[a] = true
			mu.Unlock()
			if busy {
				continue
			}
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(inflight, a)
					mu.Unlock()
				}()
				n, err := ml.Join([]string{a})
				if err != nil {
					if why := keyProblem(err.Error()); why != "" {
						if m.limiter.allow("join key " + a) {
							m.log.WithFields(logrus.Fields{"addr": a, "reason": why}).WithError(err).
								Warn("gossip join rejected: wrong or missing gossip key")
						}
						return
					}
					m.log.WithField("addr", a).WithError(err).Debug("gossip join failed")
					return
				}
				m.mu.Lock()
				if k, ok := m.addrs[a]; ok {
					k.last = time.Now()
				}
				m.mu.Unlock()
				m.log.WithFields(logrus.Fields{"addr": a, "members": n}).Debug("gossip joined")
			})
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.wakeJoin:
		}
	}
}

// joinTargets returns the known addresses without a live member (all
// addresses of live members too when a re-announce is due) and whether
// any other member is alive. It forgets stale addresses, and members as
// Prune does.
func (m *Membership) joinTargets() (targets []string, anyAlive bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	if m.pruneLocked(now) > 0 {
		wake(m.changed)
	}
	live := make(map[string]bool)
	for _, mb := range m.members {
		if mb.State == StateAlive || mb.State == StateSuspect {
			live[mb.Addr] = true
			anyAlive = true
		}
	}
	for a, k := range m.addrs {
		if !k.seed && now.Sub(k.last) > addrTTL {
			delete(m.addrs, a)
			continue
		}
		if a == m.localAddr || (live[a] && !now.Before(m.reannounceUntil)) {
			continue
		}
		targets = append(targets, a)
	}
	slices.Sort(targets)
	return targets, anyAlive
}
