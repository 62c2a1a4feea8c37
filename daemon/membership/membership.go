// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package membership

import (
	"context"
	"errors"
)

// ErrMetaTooLarge is returned by SetMeta for metadata that does not fit in
// [MaxMetaSize] bytes.
var ErrMetaTooLarge = errors.New("gossip metadata too large")

// Membership is this node's gossip member.
type Membership struct {
	cfg Config
}

// New checks cfg and returns a Membership. It starts nothing.
func New(cfg Config) (*Membership, error) { return &Membership{cfg: cfg}, nil }

// Run creates the member, joins, and gossips until ctx is done.
func (m *Membership) Run(ctx context.Context) error { return errors.New("not implemented yet") }

// SetMeta sets this node's metadata.
func (m *Membership) SetMeta(meta Meta) error { return errors.New("not implemented yet") }

// Join adds addresses to join.
func (m *Membership) Join(addrs []string) {}

// Members returns all known members except self, sorted by name.
func (m *Membership) Members() []Member { return nil }

// ReloadKeys re-reads the key file.
func (m *Membership) ReloadKeys() error { return nil }

// LocalAddr returns the advertised host:port.
func (m *Membership) LocalAddr() string { return "" }
