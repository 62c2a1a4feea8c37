// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package subnet

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"strings"
)

// Space is the set of subnets one address family of a network hands out:
// the subnets of length Bits inside Network, limited to SubnetMin..SubnetMax
// for IPv4. Subnets are numbered from 0 (the first one in the space).
//
// Only the first 2^64 subnets of a network are addressable; an IPv6
// network with more subnets than that behaves as if it had 2^64 (no
// cluster comes close).
type Space struct {
	// Network is the cluster network of this family.
	Network netip.Prefix
	// Bits is the prefix length of each subnet.
	Bits int
	// lo and hi are the inclusive bounds of the space as indexes of the
	// network's subnets.
	lo, hi uint64
}

// IPv4Space returns the space of IPv4 subnets, or the zero Space when the
// network has no IPv4 part. c must be valid (defaults applied).
func (c *Config) IPv4Space() Space {
	if !c.Network.IsValid() {
		return Space{}
	}
	s := newSpace(c.Network, c.SubnetLen)
	if c.SubnetMin.IsValid() {
		if i, ok := s.netIndex(netip.PrefixFrom(c.SubnetMin, c.SubnetLen)); ok {
			s.lo = i
		}
	}
	if c.SubnetMax.IsValid() {
		if i, ok := s.netIndex(netip.PrefixFrom(c.SubnetMax, c.SubnetLen)); ok {
			s.hi = i
		}
	}
	return s
}

// IPv6Space returns the space of IPv6 subnets, or the zero Space when the
// network has no IPv6 part. c must be valid (defaults applied).
func (c *Config) IPv6Space() Space {
	if !c.IPv6Network.IsValid() {
		return Space{}
	}
	return newSpace(c.IPv6Network, c.IPv6SubnetLen)
}

func newSpace(network netip.Prefix, bits int) Space {
	return Space{Network: network.Masked(), Bits: bits, hi: subnetCount(network.Bits(), bits) - 1}
}

// IsValid reports whether s is a non-zero space.
func (s Space) IsValid() bool { return s.Network.IsValid() }

// Size is the number of subnets in s (saturated at the largest uint64).
func (s Space) Size() uint64 {
	if !s.IsValid() {
		return 0
	}
	n := s.hi - s.lo + 1
	if n == 0 { // the whole uint64 range
		return ^uint64(0)
	}
	return n
}

// Subnet returns the subnet with index i (0 ≤ i < Size()).
func (s Space) Subnet(i uint64) netip.Prefix {
	return s.netSubnet(s.lo + i)
}

// First and Last return the first and the last subnet of s.
func (s Space) First() netip.Prefix { return s.netSubnet(s.lo) }

// Last returns the last subnet of s.
func (s Space) Last() netip.Prefix { return s.netSubnet(s.hi) }

// Index returns the index of subnet p in s, and whether p is one of s's
// subnets (right family and length, aligned, inside the bounds).
func (s Space) Index(p netip.Prefix) (uint64, bool) {
	i, ok := s.netIndex(p)
	if !ok || i < s.lo || i > s.hi {
		return 0, false
	}
	return i - s.lo, true
}

// Contains reports whether p is one of s's subnets.
func (s Space) Contains(p netip.Prefix) bool {
	_, ok := s.Index(p)
	return ok
}

// shift is how many low address bits a subnet index skips, counted on the
// 128-bit form of the address.
func (s Space) shift() int {
	if s.Network.Addr().Is4() {
		return 32 - s.Bits
	}
	return 128 - s.Bits
}

func (s Space) netSubnet(i uint64) netip.Prefix {
	base := toU128(s.Network.Addr())
	a := base.add(u128{lo: i}.shl(s.shift()))
	return netip.PrefixFrom(a.addr(s.Network.Addr().Is4()), s.Bits)
}

func (s Space) netIndex(p netip.Prefix) (uint64, bool) {
	if !s.IsValid() || !p.IsValid() || p.Bits() != s.Bits || p.Addr().Is4() != s.Network.Addr().Is4() ||
		p.Masked() != p || !s.Network.Contains(p.Addr()) {
		return 0, false
	}
	d := toU128(p.Addr()).sub(toU128(s.Network.Addr())).shr(s.shift())
	if d.hi != 0 {
		return 0, false
	}
	return d.lo, true
}

// Overlapping returns the subnets of s's network at s's length that
// overlap q, or false when there are more than limit. q of another family,
// or outside the network, overlaps none. (The bounds of s are ignored: a
// subnet outside them overlaps q just the same.)
func (s Space) Overlapping(q netip.Prefix, limit int) ([]netip.Prefix, bool) {
	if !s.IsValid() || !q.IsValid() || q.Addr().Is4() != s.Network.Addr().Is4() || !s.Network.Overlaps(q) {
		return nil, true
	}
	q = q.Masked()
	if q.Bits() >= s.Bits {
		return []netip.Prefix{netip.PrefixFrom(q.Addr(), s.Bits).Masked()}, true
	}
	inner := q
	if s.Network.Bits() > q.Bits() {
		inner = s.Network // q holds the whole network
	}
	n := s.Bits - inner.Bits()
	if n >= 63 || 1<<n > limit {
		return nil, false
	}
	sub := newSpace(inner, s.Bits)
	out := make([]netip.Prefix, 0, 1<<n)
	for i := uint64(0); i < 1<<n; i++ {
		out = append(out, sub.Subnet(i))
	}
	return out, true
}

// Exhausted returns the error for a space with no free subnet: it wraps
// [ErrExhausted] and names the network and its number of subnets.
func (s Space) Exhausted() error {
	bounds := ""
	if s.lo != 0 || s.hi != subnetCount(s.Network.Bits(), s.Bits)-1 {
		bounds = fmt.Sprintf(" between %s and %s", s.First(), s.Last())
	}
	return fmt.Errorf("%w: all %s of %s%s are leased", ErrExhausted, plural(s.Size(), fmt.Sprintf("/%d subnet", s.Bits)), s.Network, bounds)
}

// Pick enumerates spaces of up to denseLimit subnets; it samples larger
// ones first and enumerates them (up to enumerateLimit) only when sampling
// finds them nearly full.
const (
	denseLimit     = 1 << 12
	enumerateLimit = 1 << 20
	samples        = 64
)

// Pick chooses a subnet of s at random among those not in taken. It avoids
// subnets in avoid (released tombstones) while any other is free. It
// returns false when every subnet of s is taken.
//
// Picking at random, not first-free, keeps racing claimers apart: they
// rarely try the same key.
func (s Space) Pick(r *rand.Rand, taken, avoid map[netip.Prefix]bool) (netip.Prefix, bool) {
	size := s.Size()
	if size == 0 {
		return netip.Prefix{}, false
	}
	if size > denseLimit {
		// Uniform among the free, non-avoided subnets, like the
		// enumeration below, and cheap while the space is not nearly full.
		for range samples {
			p := s.Subnet(r.Uint64N(size))
			if !taken[p] && !avoid[p] {
				return p, true
			}
		}
	}
	if size <= enumerateLimit {
		var free, avoided []netip.Prefix
		for i := uint64(0); i < size; i++ {
			p := s.Subnet(i)
			switch {
			case taken[p]:
			case avoid[p]:
				avoided = append(avoided, p)
			default:
				free = append(free, p)
			}
		}
		if len(free) == 0 {
			free = avoided
		}
		if len(free) == 0 {
			return netip.Prefix{}, false
		}
		return free[r.IntN(len(free))], true
	}
	// Too many to list: scan from a random start.
	return s.scan(r.Uint64N(size), taken, avoid)
}

// scan looks for a free subnet from index start on, wrapping around. It
// needs at most len(taken)+len(avoid)+1 steps to find one that is neither
// taken nor avoided, if there is one; then at most len(taken)+1 steps for
// one that is only not taken.
func (s Space) scan(start uint64, taken, avoid map[netip.Prefix]bool) (netip.Prefix, bool) {
	size := s.Size()
	for _, skipAvoided := range []bool{true, false} {
		steps := uint64(len(taken)) + 1
		if skipAvoided {
			steps += uint64(len(avoid))
		}
		for j := uint64(0); j < steps && j < size; j++ {
			p := s.Subnet((start + j) % size)
			if !taken[p] && !(skipAvoided && avoid[p]) {
				return p, true
			}
		}
	}
	return netip.Prefix{}, false
}

// KeyName returns the etcd key name of subnet p below leases/ or
// released/: its CIDR with "/" written as "-" (10.244.3.0-24).
func KeyName(p netip.Prefix) string {
	return strings.Replace(p.String(), "/", "-", 1)
}

// ParseKeyName parses a key name written by [KeyName].
func ParseKeyName(name string) (netip.Prefix, error) {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return netip.Prefix{}, fmt.Errorf("lease key %q is not <address>-<prefix length>", truncate(name))
	}
	p, err := netip.ParsePrefix(name[:i] + "/" + name[i+1:])
	if err != nil || p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("lease key %q does not name a subnet", truncate(name))
	}
	return p, nil
}

// u128 is a 128-bit unsigned integer for address arithmetic.
type u128 struct{ hi, lo uint64 }

func toU128(a netip.Addr) u128 {
	b := a.As16()
	return u128{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:])}
}

func (u u128) addr(v4 bool) netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], u.hi)
	binary.BigEndian.PutUint64(b[8:], u.lo)
	a := netip.AddrFrom16(b)
	if v4 {
		return a.Unmap()
	}
	return a
}

func (u u128) add(v u128) u128 {
	lo, carry := bits.Add64(u.lo, v.lo, 0)
	hi, _ := bits.Add64(u.hi, v.hi, carry)
	return u128{hi: hi, lo: lo}
}

func (u u128) sub(v u128) u128 {
	lo, borrow := bits.Sub64(u.lo, v.lo, 0)
	hi, _ := bits.Sub64(u.hi, v.hi, borrow)
	return u128{hi: hi, lo: lo}
}

func (u u128) shl(n int) u128 {
	switch {
	case n == 0:
		return u
	case n >= 128:
		return u128{}
	case n >= 64:
		return u128{hi: u.lo << (n - 64)}
	}
	return u128{hi: u.hi<<n | u.lo>>(64-n), lo: u.lo << n}
}

func (u u128) shr(n int) u128 {
	switch {
	case n == 0:
		return u
	case n >= 128:
		return u128{}
	case n >= 64:
		return u128{lo: u.hi >> (n - 64)}
	}
	return u128{hi: u.hi >> n, lo: u.lo>>n | u.hi<<(64-n)}
}
