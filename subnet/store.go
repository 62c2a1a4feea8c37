// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package subnet

import (
	"context"
	"errors"
	"fmt"
	"time"
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
	// Prev is the lease this node held before (from etcd or its state
	// dir). When set, the store tries to get the same subnet(s) back
	// first; only if they are held by another node does it pick new ones.
	Prev *Lease
	// TTL of the etcd lease (default 24 h).
	TTL time.Duration
}

// View is a consistent picture of all leases.
type View struct {
	// Leases holds every lease, keyed by primary subnet string.
	Leases []Lease
	// Complete is true once the view holds a full list from the store
	// (false while only changes since a snapshot are known).
	Complete bool
	// Revision is the store revision the view reflects.
	Revision int64
}

// Store is the lease store. Implementations: subnet/etcd (real) and
// subnet/subnettest (in-memory fake for pure-logic tests only).
//
// All methods are safe for concurrent use. Every call honours ctx.
type Store interface {
	// GetConfig reads and validates the network config. It returns an error
	// wrapping ErrNoConfig when there is none, and a *ConfigError (with
	// the reason) when it is invalid; any other error means the store did
	// not answer.
	GetConfig(ctx context.Context) (*Config, error)
	// WatchConfig calls fn with each new config (or the error GetConfig
	// would return) until ctx is done. It calls fn once with the current config first.
	WatchConfig(ctx context.Context, fn func(*Config, error)) error

	// Claim gets a lease for req.Record's node: the node's existing live
	// record (same name and node ID) or req.Prev's subnet when free, or a
	// random free subnet avoiding released tombstones. It fails with
	// ErrNodeConflict, ErrExhausted (naming the network and its size) or
	// the store error.
	Claim(ctx context.Context, req ClaimRequest) (*Lease, error)
	// KeepAlive keeps the lease alive until ctx is done. When renewal
	// breaks it recovers: it reuses the etcd lease if still alive,
	// otherwise grants a new one and re-binds only our own key (guarded by
	// its ModRevision). It calls onChange with the lease after every
	// recovery. It returns ErrLeaseLost if our key is gone or another
	// node's; other errors are retried with back-off.
	KeepAlive(ctx context.Context, l *Lease, onChange func(*Lease)) error
	// UpdateRecord replaces our record's data, guarded by ModRevision and
	// node ID, and returns the updated lease.
	UpdateRecord(ctx context.Context, l *Lease, rec Record) (*Lease, error)
	// Release deletes our lease and writes a released/ tombstone.
	Release(ctx context.Context, l *Lease) error

	// List returns all leases (a complete view).
	List(ctx context.Context) (View, error)
	// WatchLeases calls fn with a full view after the initial list and
	// after every change, until ctx is done. On compaction or reconnect it
	// relists; fn always receives a consistent, complete view. Calls to fn
	// never run concurrently.
	WatchLeases(ctx context.Context, fn func(View)) error
}
