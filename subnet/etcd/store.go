// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package etcd implements [subnet.Store] on etcd v3: the network config at
// <prefix>/config, one key per leased subnet at <prefix>/leases/<subnet>
// attached to an etcd lease, and released/ tombstones.
//
// Ownership rests on etcd transactions only:
//
//   - a claim creates a key only if it does not exist
//     (CreateRevision == 0); a dual-stack claim creates both keys in one
//     transaction, on one etcd lease;
//   - a node touches an existing key only after reading it, checking that
//     the record carries its node ID, and guarding the write with the
//     ModRevision it read. No write ever overwrites another node's key.
//
// Each lease key holds the node's [subnet.Record] as JSON plus the subnets
// of the lease (so that the IPv4 and IPv6 keys of a dual-stack lease name
// each other). A key's CreateRevision is the lease's epoch.
//
// [Open] connects to etcd and returns a Store that owns the connection;
// [New] uses a client of the caller's. Besides [subnet.Store], the Store has
// what only etcd has and only weftctl uses: writing the raw config,
// releasing and evicting leases (with tombstones), reading TTLs left.
package etcd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/subnet"
)

// Defaults of [Config].
const (
	DefaultPrefix      = "/weft"
	DefaultCallTimeout = 10 * time.Second
	DefaultReleasedTTL = time.Hour
	DefaultLeaseTTL    = 24 * time.Hour
)

// Config configures a [Store].
type Config struct {
	// Client is the etcd client (see [NewClient]); the caller closes it.
	// [Open] sets it to a client of its own.
	Client *clientv3.Client
	// Prefix is the key prefix (default /weft).
	Prefix string
	// Log receives the store's log lines (default: discarded).
	Log logrus.FieldLogger
	// CallTimeout bounds each etcd call (default 10 s).
	CallTimeout time.Duration
	// ReleasedTTL is how long a released/ tombstone lives (default 1 h).
	ReleasedTTL time.Duration
	// LeaseTTL is the TTL of the etcd lease a claim attaches its keys to
	// (default 24 h); KeepAlive renews it.
	LeaseTTL time.Duration
}

// Store is the etcd lease store. It is safe for concurrent use.
type Store struct {
	c           *clientv3.Client
	prefix      string
	log         logrus.FieldLogger
	callTimeout time.Duration
	releasedTTL time.Duration
	leaseTTL    time.Duration
	// ownsClient is set by Open: Close closes c.
	ownsClient bool
	// maxListKeys is MaxListKeys (lowered by tests).
	maxListKeys int

	// mu guards the following.
	mu sync.Mutex
	// ttls remembers the TTL each etcd lease was granted with, so that a
	// lease that must be replaced gets the same TTL.
	ttls map[clientv3.LeaseID]int64
	// warned holds the ModRevision of each lease key whose record did not
	// parse and was logged, so that each bad version is logged once.
	warned map[string]int64

	// claimConflicts counts claim transactions that lost a race;
	// claimLists counts claims' reads of all lease keys.
	claimConflicts atomic.Int64
	claimLists     atomic.Int64
	// alwaysList makes every claim read all lease keys, as claims did
	// before quickPlan (set by the benchmark for its reference).
	alwaysList bool

	// Test hooks, nil outside tests: testHookWatchListed runs in
	// WatchLeases between the list at rev and the start of the watch;
	// testHookHold runs when KeepAlive starts holding a lease.
	testHookWatchListed func(rev int64)
	testHookHold        func()
}

var _ subnet.Store = (*Store)(nil)

// New returns a Store. It starts nothing and does not contact etcd.
func New(cfg Config) *Store {
	prefix := strings.TrimRight(cfg.Prefix, "/")
	if cfg.Prefix == "" {
		prefix = DefaultPrefix
	}
	log := cfg.Log
	if log == nil {
		l := logrus.New()
		l.Out = io.Discard
		log = l
	}
	s := &Store{
		c:           cfg.Client,
		prefix:      prefix,
		log:         log.WithField("component", "subnet/etcd"),
		callTimeout: cfg.CallTimeout,
		releasedTTL: cfg.ReleasedTTL,
		leaseTTL:    cfg.LeaseTTL,
		maxListKeys: MaxListKeys,
		ttls:        map[clientv3.LeaseID]int64{},
		warned:      map[string]int64{},
	}
	if s.callTimeout <= 0 {
		s.callTimeout = DefaultCallTimeout
	}
	if s.releasedTTL <= 0 {
		s.releasedTTL = DefaultReleasedTTL
	}
	return s
}

// Open connects to etcd as cc says and returns a Store on that connection
// configured by cfg (whose Client must be nil). The Store owns the client:
// [Store.Close] closes it. Like [NewClient], Open does not wait for etcd to
// be reachable.
func Open(cc ClientConfig, cfg Config) (*Store, error) {
	if cfg.Client != nil {
		return nil, errors.New("etcd store: Open makes its own client; Config.Client must be nil")
	}
	c, err := NewClient(cc)
	if err != nil {
		return nil, err
	}
	cfg.Client = c
	s := New(cfg)
	s.ownsClient = true
	return s, nil
}

// Close closes the etcd client if the Store owns it (made by [Open]); a
// Store made by [New] leaves its client to the caller. Calls on the Store
// fail after Close.
func (s *Store) Close() error {
	if !s.ownsClient {
		return nil
	}
	return s.c.Close()
}

// Probe checks that etcd answers now: a count-only read of the config key
// that needs a leader, bounded by ctx and the call timeout.
//
// With several endpoints the read goes to one member's connection, and a
// member cut off silently (no reset: its connection looks alive until
// gRPC keep-alive finds it dead, up to 15 s) would make the read hang and
// a store that has a quorum look down. So the read gets half of ctx's
// time, and when it fails every endpoint is asked for its status on a
// connection of its own: the store answers when one member does and knows
// a leader.
func (s *Store) Probe(ctx context.Context) error {
	eps := s.c.Endpoints()
	first := ctx
	if dl, ok := ctx.Deadline(); ok && len(eps) > 1 {
		var cancel context.CancelFunc
		first, cancel = context.WithTimeout(ctx, time.Until(dl)/2)
		defer cancel()
	}
	err := s.probeRead(first)
	if err == nil || len(eps) < 2 || ctx.Err() != nil {
		return err
	}
	if s.memberWithLeader(ctx, eps) {
		return nil
	}
	return err
}

func (s *Store) probeRead(ctx context.Context) error {
	cctx, cancel := s.call(clientv3.WithRequireLeader(ctx))
	defer cancel()
	if _, err := s.c.Get(cctx, s.ConfigKey(), clientv3.WithCountOnly()); err != nil {
		return fmt.Errorf("probe etcd: %w", err)
	}
	return nil
}

// memberWithLeader asks every endpoint for its status at once, each on a
// new connection, and reports whether one answered knowing a leader.
func (s *Store) memberWithLeader(ctx context.Context, eps []string) bool {
	cctx, cancel := s.call(ctx)
	defer cancel()
	led := make(chan bool, len(eps))
	for _, ep := range eps {
		go func() {
			st, err := s.c.Status(cctx, ep)
			led <- err == nil && st.Leader != 0
		}()
	}
	found := false
	for range eps {
		if <-led && !found {
			found = true
			cancel() // the others need not finish
		}
	}
	return found
}

// Prefix returns the store's key prefix, without a trailing slash.
func (s *Store) Prefix() string { return s.prefix }

// ConfigKey returns the key of the network config.
func (s *Store) ConfigKey() string { return s.prefix + "/config" }

// LeasesPrefix returns the prefix of the lease keys (ending in a slash).
func (s *Store) LeasesPrefix() string { return s.prefix + "/leases/" }

// ReleasedPrefix returns the prefix of the tombstones (ending in a slash).
func (s *Store) ReleasedPrefix() string { return s.prefix + "/released/" }

// LeaseKey returns the key of subnet p.
func (s *Store) LeaseKey(p netip.Prefix) string { return s.LeasesPrefix() + subnet.KeyName(p) }

// LengthsKey returns the key of the lengths marker: which prefix lengths
// the lease keys have (see lengths.go).
func (s *Store) LengthsKey() string { return s.prefix + "/subnet-lengths" }

// NameKey returns the key of node name's index entry: which subnets the
// node's latest claim took (a hint that Claim checks against the lease
// keys; see claim.go).
func (s *Store) NameKey(name string) string { return s.prefix + "/names/" + name }

// ReleasedKey returns the tombstone key of subnet p.
func (s *Store) ReleasedKey(p netip.Prefix) string { return s.ReleasedPrefix() + subnet.KeyName(p) }

// call derives the context of one etcd call.
func (s *Store) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.callTimeout)
}

// cleanup derives a context for best-effort clean-up that must run even
// when ctx was cancelled.
func (s *Store) cleanup(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), s.callTimeout)
}

// value is what a lease key holds.
type value struct {
	subnet.Record
	// Subnet and IPv6Subnet are the subnets of the lease this key belongs
	// to (both set for a dual-stack lease).
	Subnet     netip.Prefix `json:"subnet,omitzero"`
	IPv6Subnet netip.Prefix `json:"ipv6Subnet,omitzero"`
}

// tombstone is what a released/ key holds.
type tombstone struct {
	NodeName   string    `json:"nodeName"`
	NodeID     string    `json:"nodeID"`
	ReleasedAt time.Time `json:"releasedAt"`
}

// entry is one lease key as read from etcd. It keeps the parsed record and
// the key's revisions, not the key and value as read: a watch holds one
// entry for every node, and the raw bytes would double what each costs.
// The key is [Store.LeaseKey] of subnet (only canonical keys are entries).
type entry struct {
	subnet netip.Prefix
	kv     keyRevs
	val    value
	// ok is false when the value fails parseValue (reason says why): the
	// key is then still taken, but belongs to no one we can name.
	ok     bool
	reason string
}

// keyRevs is what an entry keeps of its key's metadata.
type keyRevs struct {
	CreateRevision, ModRevision int64
	// Lease is the etcd lease the key is attached to (0: none).
	Lease int64
}

// snapshot is the lease keys and tombstones at one revision.
type snapshot struct {
	rev      int64
	leases   map[netip.Prefix]*entry
	released map[netip.Prefix]bool
	// stray holds the keys under leases/ that name no subnet, by key
	// name, with the reason.
	stray map[string]string
	// lengths is the lengths marker at rev (nil when it is missing or
	// does not parse), lengthsRev its ModRevision (0 when missing).
	lengths    *lengthSet
	lengthsRev int64
}

func (s *Store) snapshotOf(rev int64, leases, released []*mvccpb.KeyValue) *snapshot {
	sn := &snapshot{rev: rev, leases: map[netip.Prefix]*entry{}, released: map[netip.Prefix]bool{}, stray: map[string]string{}}
	for _, kv := range leases {
		s.addEntry(sn.leases, sn.stray, kv)
	}
	for _, kv := range released {
		if p, err := parseLeaseKey(strings.TrimPrefix(string(kv.Key), s.ReleasedPrefix())); err == nil {
			sn.released[p] = true
		}
	}
	return sn
}

// readAll reads the lease keys and the tombstones at one revision.
func (s *Store) readAll(ctx context.Context) (*snapshot, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.c.Txn(cctx).Then(s.listOps()...).Commit()
	if err != nil {
		return nil, fmt.Errorf("read leases from etcd: %w", err)
	}
	return s.snapshotFromTxn(resp)
}

// listOps are the two prefix Gets of readAll, each limited to one key
// more than a listing may hold, and the Get of the lengths marker.
func (s *Store) listOps() []clientv3.Op {
	return []clientv3.Op{
		clientv3.OpGet(s.LeasesPrefix(), clientv3.WithPrefix(), clientv3.WithLimit(int64(s.maxListKeys)+1)),
		clientv3.OpGet(s.ReleasedPrefix(), clientv3.WithPrefix(), clientv3.WithLimit(int64(s.maxListKeys)+1)),
		clientv3.OpGet(s.LengthsKey()),
	}
}

// snapshotFromTxn builds a snapshot from a response whose (Then or Else)
// branch was listOps, last in the branch.
func (s *Store) snapshotFromTxn(resp *clientv3.TxnResponse) (*snapshot, error) {
	r := resp.Responses
	leases := r[len(r)-3].GetResponseRange()
	released := r[len(r)-2].GetResponseRange()
	marker := r[len(r)-1].GetResponseRange()
	if err := s.checkListed(s.LeasesPrefix(), leases.Kvs, leases.More); err != nil {
		return nil, err
	}
	if err := s.checkListed(s.ReleasedPrefix(), released.Kvs, released.More); err != nil {
		return nil, err
	}
	sn := s.snapshotOf(resp.Header.Revision, leases.Kvs, released.Kvs)
	if len(marker.Kvs) == 1 {
		sn.lengths, sn.lengthsRev = parseLengths(marker.Kvs[0].Value), marker.Kvs[0].ModRevision
	}
	return sn, nil
}

// viewOf makes the complete view of the lease keys at revision rev: the
// leases of entries, and as rejected the entries that failed parseValue
// and the stray keys.
func viewOf(rev int64, entries map[netip.Prefix]*entry, stray map[string]string) subnet.View {
	return viewWith(rev, leasesOf(entries), entries, stray)
}

// viewWith is viewOf with the leases of entries already made.
func viewWith(rev int64, leases []subnet.Lease, entries map[netip.Prefix]*entry, stray map[string]string) subnet.View {
	v := subnet.View{Leases: leases, Complete: true, Revision: rev}
	for _, e := range entries {
		if !e.ok {
			v.Rejected = append(v.Rejected, subnet.RejectedLease{Key: subnet.KeyName(e.subnet), Reason: e.reason})
		}
	}
	for k, why := range stray {
		v.Rejected = append(v.Rejected, subnet.RejectedLease{Key: k, Reason: why})
	}
	subnet.SortRejected(v.Rejected)
	return v
}

// leasesOf groups lease keys into leases: a dual-stack lease is its IPv4
// key plus the IPv6 key that names it back. An IPv6 key whose IPv4 partner
// is missing is shown as a lease of its own. Keys whose value failed
// parseValue are left out. The result is sorted by primary subnet.
func leasesOf(entries map[netip.Prefix]*entry) []subnet.Lease {
	// The keys are sorted, not the leases: a lease is large to move.
	keys := make([]netip.Prefix, 0, len(entries))
	for p, e := range entries {
		if e.ok {
			keys = append(keys, p)
		}
	}
	// Addr.Compare puts IPv4 before IPv6.
	slices.SortFunc(keys, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	out := make([]subnet.Lease, 0, len(keys))
	for _, p := range keys {
		e := entries[p]
		if p.Addr().Is6() {
			if partner := entries[e.val.Subnet]; e.val.Subnet.IsValid() && partner != nil && partner.ok &&
				partner.val.NodeID == e.val.NodeID && partner.val.IPv6Subnet == p {
				continue // listed with its IPv4 key
			}
			out = append(out, leaseOf(e, nil))
			continue
		}
		var six *entry
		if q := e.val.IPv6Subnet; q.IsValid() {
			if c := entries[q]; c != nil && c.ok && c.val.NodeID == e.val.NodeID && c.val.Subnet == p {
				six = c
			}
		}
		out = append(out, leaseOf(e, six))
	}
	return out
}

// leaseList is the lease watch's list of leases (leasesOf), kept from one
// event to the next. Most events change a record and not who holds which
// subnets (a node's new address, its tunnel data, a renewed version): then
// the list keeps its order and grouping, and a copy of it with the changed
// leases remade costs a copy of memory rather than a sort and a lookup of
// every key. Anything else (a key added, deleted, refused, or joined to
// another) makes the list anew.
type leaseList struct {
	// leases is the list last made: handed out in views, never written
	// again.
	leases []subnet.Lease
	// at is the index in leases of each key's lease (an IPv6 key joined to
	// its IPv4 key: the lease of both).
	at map[netip.Prefix]int
	// remake is set when the list must be made anew; dirty are the keys
	// whose leases changed in place since it was made.
	remake bool
	dirty  []netip.Prefix
}

func newLeaseList(entries map[netip.Prefix]*entry) *leaseList {
	ll := &leaseList{remake: true}
	ll.refresh(entries)
	return ll
}

// put notes that key p's entry is replaced by cur (was: nil when it had
// none), before entries holds cur.
func (ll *leaseList) put(p netip.Prefix, was, cur *entry) {
	if was == nil || !was.ok || !sameHolder(was, cur) {
		ll.remake = true
		return
	}
	ll.dirty = append(ll.dirty, p)
}

// deleted notes that a key's entry was deleted.
func (ll *leaseList) deleted() { ll.remake = true }

// refresh brings the list up to date with entries and returns it.
func (ll *leaseList) refresh(entries map[netip.Prefix]*entry) []subnet.Lease {
	switch {
	case ll.remake:
		ll.leases = leasesOf(entries)
		ll.at = make(map[netip.Prefix]int, len(entries))
		for i, l := range ll.leases {
			for _, p := range []netip.Prefix{l.Subnet, l.IPv6Subnet} {
				if p.IsValid() {
					ll.at[p] = i
				}
			}
		}
	case len(ll.dirty) > 0:
		out := slices.Clone(ll.leases)
		for _, p := range ll.dirty {
			i := ll.at[p]
			l := &out[i]
			if l.Subnet.IsValid() {
				var six *entry
				if l.IPv6Subnet.IsValid() {
					six = entries[l.IPv6Subnet]
				}
				*l = leaseOf(entries[l.Subnet], six)
			} else {
				*l = leaseOf(entries[l.IPv6Subnet], nil)
			}
		}
		ll.leases = out
	}
	ll.remake, ll.dirty = false, ll.dirty[:0]
	return ll.leases
}

// leaseOf makes the lease of primary key e and, dual-stack, its IPv6 key.
func leaseOf(e, six *entry) subnet.Lease {
	l := subnet.Lease{
		Record:      e.val.Record,
		Epoch:       e.kv.CreateRevision,
		ModRevision: e.kv.ModRevision,
		LeaseID:     e.kv.Lease,
	}
	if e.subnet.Addr().Is4() {
		l.Subnet = e.subnet
		if six != nil {
			l.IPv6Subnet = six.subnet
		}
	} else {
		l.IPv6Subnet = e.subnet
	}
	return l
}

// GetConfig reads and validates the network config.
func (s *Store) GetConfig(ctx context.Context) (*subnet.Config, error) {
	raw, err := s.GetConfigRaw(ctx)
	if err != nil {
		return nil, err
	}
	return s.parseConfig(raw)
}

func (s *Store) noConfig() error {
	return fmt.Errorf("%w at %s: run weftctl config set --network <CIDR> (e.g. 10.244.0.0/16) to write one", subnet.ErrNoConfig, s.ConfigKey())
}

func (s *Store) parseConfig(data []byte) (*subnet.Config, error) {
	c, err := subnet.ParseConfig(data)
	if err != nil {
		return nil, &subnet.ConfigError{Key: s.ConfigKey(), Err: err}
	}
	return c, nil
}

// PutConfig validates raw with [subnet.ParseConfig] and writes it to the
// config key unchanged. An invalid config is not written.
func (s *Store) PutConfig(ctx context.Context, raw []byte) error {
	if _, err := subnet.ParseConfig(raw); err != nil {
		return fmt.Errorf("invalid network config: %w", err)
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	if _, err := s.c.Put(cctx, s.ConfigKey(), string(raw)); err != nil {
		return fmt.Errorf("write network config to %s: %w", s.ConfigKey(), err)
	}
	return nil
}

// GetConfigRaw returns the config key's value as stored (not validated),
// or an error wrapping [subnet.ErrNoConfig].
func (s *Store) GetConfigRaw(ctx context.Context) ([]byte, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.c.Get(cctx, s.ConfigKey())
	if err != nil {
		return nil, fmt.Errorf("read network config from etcd: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, s.noConfig()
	}
	return resp.Kvs[0].Value, nil
}

// List returns all leases (a complete view), and the keys it rejected
// with the reason. Expiry is not filled in: see [Store.FillExpiry].
func (s *Store) List(ctx context.Context) (subnet.View, error) {
	sn, err := s.listLeases(ctx)
	if err != nil {
		return subnet.View{}, err
	}
	return viewOf(sn.rev, sn.leases, sn.stray), nil
}

// listLeases reads and parses the lease keys (not the tombstones).
func (s *Store) listLeases(ctx context.Context) (*snapshot, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.c.Get(cctx, s.LeasesPrefix(), clientv3.WithPrefix(), clientv3.WithLimit(int64(s.maxListKeys)+1))
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	if err := s.checkListed(s.LeasesPrefix(), resp.Kvs, resp.More); err != nil {
		return nil, err
	}
	return s.snapshotOf(resp.Header.Revision, resp.Kvs, nil), nil
}

// FillExpiry sets the Expiry of each lease from etcd, with one TimeToLive
// call per distinct etcd lease (not per key). Leases whose etcd lease is
// gone get the zero Expiry.
func (s *Store) FillExpiry(ctx context.Context, leases []subnet.Lease) error {
	ttl := map[int64]time.Time{}
	for i := range leases {
		id := leases[i].LeaseID
		if id == 0 {
			continue
		}
		exp, ok := ttl[id]
		if !ok {
			cctx, cancel := s.call(ctx)
			resp, err := s.c.TimeToLive(cctx, clientv3.LeaseID(id))
			cancel()
			if err != nil {
				return fmt.Errorf("read TTL of etcd lease %x: %w", id, err)
			}
			if resp.TTL > 0 {
				exp = time.Now().Add(time.Duration(resp.TTL) * time.Second)
			}
			ttl[id] = exp
		}
		leases[i].Expiry = exp
	}
	return nil
}

// sleep waits d or until ctx is done; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// backoff doubles a delay from min up to max.
type backoff struct{ cur, min, max time.Duration }

func newBackoff(min, max time.Duration) *backoff { return &backoff{cur: min, min: min, max: max} }

func (b *backoff) next() time.Duration {
	d := b.cur
	b.cur = min(b.cur*2, b.max)
	return d
}

func (b *backoff) reset() { b.cur = b.min }

// isLost reports whether err means our lease is gone.
func isLost(err error) bool { return errors.Is(err, subnet.ErrLeaseLost) }

// leaseFields returns log fields naming lease l.
func leaseFields(l *subnet.Lease) logrus.Fields {
	f := logrus.Fields{"lease": fmt.Sprintf("%x", l.LeaseID)}
	if l.Subnet.IsValid() {
		f["subnet"] = l.Subnet.String()
	}
	if l.IPv6Subnet.IsValid() {
		f["ipv6Subnet"] = l.IPv6Subnet.String()
	}
	return f
}
