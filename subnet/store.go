// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package subnet

import (
	"context"
	"errors"
	"fmt"
)

// Errors a caller of [Store] branches on.
var (
	// ErrNoConfig: there is no network config at <prefix>/config.
	ErrNoConfig = errors.New("no network config")
	// ErrNodeConflict: a live lease for this node name carries another
	// node ID. The error returned wraps it and names both IDs.
	ErrNodeConflict = errors.New("node name held by another node ID")
	// ErrExhausted: every subnet of the network is leased.
	ErrExhausted = errors.New("network exhausted")
	// ErrLeaseTaken: the subnet asked for is held by another node.
	ErrLeaseTaken = errors.New("subnet leased by another node")
	// ErrLeaseLost: our lease key is gone or no longer ours.
	ErrLeaseLost = errors.New("lease lost")
	// ErrNotAssigned: the store assigns subnets itself (Kubernetes:
	// Nodes' podCIDRs) and has not assigned one to this node yet; a
	// claim later may succeed. The error returned wraps it and says what
	// assigns subnets.
	ErrNotAssigned = errors.New("no subnet assigned to this node yet")
	// ErrSubnetRefused: the subnet the store assigned to this node does
	// not fit the network config. The error returned wraps it and names
	// both.
	ErrSubnetRefused = errors.New("the subnet assigned to this node does not fit the network config")
)

// ConfigError is returned for a network config that exists in the store but
// fails validation, as opposed to one that could not be read.
type ConfigError struct {
	// Key is where the config was read.
	Key string
	// Err is the validation error.
	Err error
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("network config at %s is invalid: %v", e.Key, e.Err)
}

// Unwrap returns the validation error.
func (e *ConfigError) Unwrap() error { return e.Err }

// ClaimRequest asks the store for a lease.
type ClaimRequest struct {
	// Config is the network to lease from.
	Config *Config
	// Record is the data to store (node name, ID, addresses, backend data).
	Record Record
	// Prev is the lease this node held before (from the store or its state
	// dir). When set, the store tries to get the same subnet(s) back
	// first; only if they are held by another node does it pick new ones.
	Prev *Lease
}

// View is a consistent picture of all leases.
type View struct {
	// Leases holds every lease, keyed by primary subnet string.
	Leases []Lease
	// Complete is true once the view holds a full list from the store
	// (false while only changes since a snapshot are known).
	Complete bool
	// Revision orders views and leases of one store: a view reflects every
	// write whose [Lease.ModRevision] is at most Revision. Zero when the
	// store does not say.
	Revision int64
	// Rejected lists the records the store holds that are not in Leases
	// because they failed a check (see [View.Check] and the store's own
	// checks of what it reads), sorted by key. A rejected record's subnet
	// still counts as taken for claims.
	Rejected []RejectedLease
}

// RejectedLease is a lease record that is not handed out as a lease, and
// why.
type RejectedLease struct {
	// Key is the record's name in the store: for etcd, its key below
	// <prefix>/leases/ (10.244.3.0-24), as weftctl leases rm takes it.
	Key string `json:"key"`
	// Reason says what is wrong, naming the field; it never quotes a
	// whole record.
	Reason string `json:"reason"`
}

// The store is split by consumer: the daemon's config handling, its lease
// loop, its peer view and its reachability report each depend on one part.
// [Store] is all of them, as subnet/etcd implements it; a store backed by
// another system (the Kubernetes API: Nodes' podCIDRs, per-node records, a
// ConfigMap) implements the same four parts in its own terms. How a store
// keeps a claim alive (etcd: a lease with a TTL), what it leaves behind on
// release (etcd: a tombstone) and how it numbers writes are its own
// business, set in its own configuration, not in these contracts.
//
// All methods of all parts are safe for concurrent use. Every call honours
// ctx; a caller bounds each call with a deadline.

// ConfigSource serves the network config.
type ConfigSource interface {
	// GetConfig reads and validates the network config. It returns an error
	// wrapping ErrNoConfig when there is none, and a *ConfigError (with
	// the reason) when it is invalid; any other error means the store did
	// not answer.
	GetConfig(ctx context.Context) (*Config, error)
	// WatchConfig calls fn with each new config (or the error GetConfig
	// would return) until ctx is done. It calls fn once with the current
	// config first. Calls to fn never run concurrently.
	WatchConfig(ctx context.Context, fn func(*Config, error)) error
}

// Leaser holds this node's lease: the store's attribution of one subnet
// (and, dual-stack, one IPv6 subnet) to one node. The store is the only
// authority for it.
type Leaser interface {
	// Claim gets a lease for req.Record's node: the node's existing live
	// lease (same name and node ID) or req.Prev's subnet when free, or a
	// free subnet of req.Config's network. It fails with ErrNodeConflict,
	// ErrExhausted (naming the network and its size), ErrLeaseTaken (a
	// store that assigns subnets itself, when the one it assigns is
	// another node's) or the store error. The lease's Epoch identifies
	// this claim: a later claim of the same subnet has a higher one.
	Claim(ctx context.Context, req ClaimRequest) (*Lease, error)
	// KeepAlive holds l until ctx is done, recovering by itself from the
	// store's transient failures; it calls onChange with the lease
	// whenever the store changed it while holding it (as after a
	// recovery). It returns ErrLeaseLost when the store no longer
	// attributes l's subnet to this node; it never takes the subnet back
	// from another node.
	KeepAlive(ctx context.Context, l *Lease, onChange func(*Lease)) error
	// UpdateRecord replaces our record's data, only if the store still
	// holds l as ours unchanged since it was read (else ErrLeaseLost or a
	// conflict error), and returns the updated lease.
	UpdateRecord(ctx context.Context, l *Lease, rec Record) (*Lease, error)
}

// PeerSource serves every node's lease: the peer view.
type PeerSource interface {
	// List returns all leases (a complete view).
	List(ctx context.Context) (View, error)
	// WatchLeases calls fn with a full view after the initial list and
	// after every change, until ctx is done. When it misses changes (a
	// reconnect, etcd's compaction) it lists again; fn always receives a
	// consistent, complete view. Calls to fn never run concurrently.
	WatchLeases(ctx context.Context, fn func(View)) error
}

// Prober reports whether the store answers.
type Prober interface {
	// Probe makes the cheapest request that proves the store can serve
	// reads and writes now (etcd: a count-only read that needs a leader).
	// It returns nil when it can.
	Probe(ctx context.Context) error
}

// ReachabilityWatcher is implemented by a store that learns whether it
// answers from the requests it makes anyway (Kubernetes: its informers'
// lists and watches). The daemon then follows it instead of calling
// Probe periodically, so a quiet cluster costs no request besides the
// watches.
type ReachabilityWatcher interface {
	// WatchReachability calls fn with nil when the store's requests
	// succeed and with an error when they fail: for the first outcome and
	// then at each change, until ctx is done. Calls to fn never run
	// concurrently.
	WatchReachability(ctx context.Context, fn func(error)) error
}

// GossipKeys keeps the cluster's gossip encryption key in the store, for
// clusters whose nodes are given no key file: whoever can read the store
// can already do more than the key allows (rewrite any lease), so the
// store is as good a place for it as any, and needs no operator step.
type GossipKeys interface {
	// GossipKey returns the cluster's gossip key, creating it if the
	// store has none: 32 random bytes (AES-256), created once by
	// whichever caller comes first (create-if-absent, one atomic step);
	// every caller, concurrent or later, on any node, gets the same key.
	// A key an operator stored (16, 24 or 32 bytes) is returned as it is;
	// a stored value that is no such key is an error, never replaced.
	// The key is a secret: implementations and callers never log it.
	GossipKey(ctx context.Context) ([]byte, error)
}

// Store is the whole store, as the daemon uses it. Implementations:
// subnet/etcd (real) and subnet/subnettest (in-memory fake for pure-logic
// tests only).
type Store interface {
	ConfigSource
	Leaser
	PeerSource
	Prober
}
