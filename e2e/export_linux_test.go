// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2e

import (
	"time"

	"github.com/vishvananda/netlink"
)

// Internals the external tests (package e2e_test) use.
var (
	UAPISocket  = uapiSocket
	IPNetPrefix = ipNetPrefix
	FileSize    = fileSize
	CleanEnv    = cleanEnv
	CheckBinary = checkBinary
)

// Sent returns how many echoes s has sent so far.
func (s *Stream) Sent() int64 { return s.sent.Load() }

// LastReply returns when s last got a reply (zero before the first).
func (s *Stream) LastReply() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastRx
}

// NewNS makes a namespace named with the cluster's prefix that the
// cluster's teardown removes.
func (c *Cluster) NewNS(name string) (NS, error) { return c.newNS(name) }

// Cluster returns the cluster n belongs to.
func (n *Node) Cluster() *Cluster { return n.c }

// WithHandle calls fn with a netlink handle in the namespace.
func (n NS) WithHandle(fn func(h *netlink.Handle) error) error { return n.withHandle(fn) }
