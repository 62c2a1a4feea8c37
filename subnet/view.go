// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package subnet

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
)

// CheckLease reports why l cannot be a lease of network c, or nil: each of
// its subnets must be a subnet of c's network of that family, at c's
// subnet length (SubnetMin and SubnetMax bound new claims only, so a lease
// outside them is still one of the network's), and its record must pass
// [Record.Validate]. c must be valid (defaults applied).
func (c *Config) CheckLease(l *Lease) error {
	if !l.Subnet.IsValid() && !l.IPv6Subnet.IsValid() {
		return fmt.Errorf("the lease has no subnet")
	}
	for _, f := range []struct {
		what    string
		p       netip.Prefix
		network netip.Prefix
		bits    int
		v6      bool
	}{
		{"subnet", l.Subnet, c.Network, c.SubnetLen, false},
		{"IPv6 subnet", l.IPv6Subnet, c.IPv6Network, c.IPv6SubnetLen, true},
	} {
		if !f.p.IsValid() {
			continue
		}
		if f.p.Addr().Is6() != f.v6 {
			return fmt.Errorf("%s %s is of the wrong address family", f.what, f.p)
		}
		if !f.network.IsValid() {
			return fmt.Errorf("%s %s: the network has no %s part", f.what, f.p, family(f.v6))
		}
		if !newSpace(f.network, f.bits).Contains(f.p) {
			return fmt.Errorf("%s %s is not a /%d of network %s", f.what, f.p, f.bits, f.network)
		}
	}
	if err := l.Record.Validate(); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	return nil
}

func family(v6 bool) string {
	if v6 {
		return "IPv6"
	}
	return "IPv4"
}

// Check returns v with every lease that fails [Config.CheckLease] against
// c moved from Leases to Rejected (keyed by [KeyName] of its primary
// subnet). v itself is not modified; when every lease passes, the result
// shares v's Leases (a view of thousands of leases is not copied for
// nothing).
func (v View) Check(c *Config) View {
	out := v
	out.Rejected = slices.Clone(v.Rejected)
	copied := false // out.Leases is a copy (a lease was rejected)
	for i := range v.Leases {
		l := &v.Leases[i]
		if err := c.CheckLease(l); err != nil {
			if !copied {
				out.Leases = make([]Lease, i, len(v.Leases)-1)
				copy(out.Leases, v.Leases[:i])
				copied = true
			}
			out.Rejected = append(out.Rejected, RejectedLease{Key: KeyName(l.Primary()), Reason: err.Error()})
			continue
		}
		if copied {
			out.Leases = append(out.Leases, *l)
		}
	}
	SortRejected(out.Rejected)
	return out
}

// A ViewChecker checks a stream of views as [View.Check] does, and within
// one config checks again only the leases that differ from the last view's
// when that view passed whole: a lease watch's views differ by a lease or
// two, and a check of thousands of records on every change was the largest
// part of taking a view in. The zero value is ready; it is not safe for
// concurrent use.
type ViewChecker struct {
	cfg *Config
	// last are the leases of the last view checked with cfg, when every
	// one passed (nil otherwise). It is that view's own slice: nothing is
	// copied or kept beyond what the caller keeps.
	last []Lease
}

// Check is v.Check(c).
func (vc *ViewChecker) Check(v View, c *Config) View {
	if c == vc.cfg && vc.last != nil && len(v.Leases) == len(vc.last) {
		passed := true
		for i := range v.Leases {
			if v.Leases[i] != vc.last[i] && c.CheckLease(&v.Leases[i]) != nil {
				passed = false
				break
			}
		}
		if passed {
			vc.last = v.Leases
			out := v
			out.Rejected = slices.Clone(v.Rejected)
			SortRejected(out.Rejected)
			return out
		}
	}
	out := v.Check(c)
	vc.cfg, vc.last = c, nil
	if len(out.Leases) == len(v.Leases) {
		vc.last = v.Leases
	}
	return out
}

// SortRejected sorts rejected records by key.
func SortRejected(r []RejectedLease) {
	slices.SortFunc(r, func(a, b RejectedLease) int { return cmp.Compare(a.Key, b.Key) })
}
