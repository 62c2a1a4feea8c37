// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcd

import (
	"encoding/json"
	"net/netip"
	"slices"
)

// The lengths marker (<prefix>/subnet-lengths) records which prefix
// lengths the lease keys have, per family, as {"ipv4":[24],"ipv6":[64]}.
// It lets a claim know in one Get that no lease of another length than its
// own exists (the common case: SubnetLen never changed), so that it need
// not list every lease key to guard against overlaps.
//
// Its invariant: the length of every lease key is in the marker. Every
// claim transaction compares the marker's ModRevision with the one it
// read. A claim that skipped the listing writes only keys of a length the
// marker holds (adding its own length to the marker if missing, which
// keeps the invariant). A claim that listed the keys rewrites the marker
// to exactly the lengths it saw (less the keys it deletes, plus its own)
// and then also requires that no lease key changed since its listing. Keys
// only disappear otherwise (expiry, release, eviction), which leaves the
// marker a superset. A missing or unreadable marker makes the next claim
// list and write it.
//
// Writers that do not know the marker (releases before it, or keys put by
// hand) can break the invariant; so can only a lease key of a length the
// marker lacks, which only a SubnetLen change makes.

// lengthSet is the value of the lengths marker.
type lengthSet struct {
	IPv4 []int `json:"ipv4"`
	IPv6 []int `json:"ipv6"`
}

// parseLengths parses a marker value; it returns nil when it does not
// parse (the claim then lists and rewrites it).
func parseLengths(data []byte) *lengthSet {
	var ls lengthSet
	if err := json.Unmarshal(data, &ls); err != nil {
		return nil
	}
	return &ls
}

func (ls *lengthSet) family(v4 bool) *[]int {
	if v4 {
		return &ls.IPv4
	}
	return &ls.IPv6
}

// add adds p's length to ls, keeping each family sorted.
func (ls *lengthSet) add(p netip.Prefix) {
	f := ls.family(p.Addr().Is4())
	if i, found := slices.BinarySearch(*f, p.Bits()); !found {
		*f = slices.Insert(*f, i, p.Bits())
	}
}

// has reports whether p's length is in ls.
func (ls *lengthSet) has(p netip.Prefix) bool {
	return slices.Contains(*ls.family(p.Addr().Is4()), p.Bits())
}

// only reports whether the family of length bits holds no other length.
func (ls *lengthSet) only(v4 bool, bits int) bool {
	for _, b := range *ls.family(v4) {
		if b != bits {
			return false
		}
	}
	return true
}

func (ls *lengthSet) equal(o *lengthSet) bool {
	return o != nil && slices.Equal(ls.IPv4, o.IPv4) && slices.Equal(ls.IPv6, o.IPv6)
}

func (ls *lengthSet) clone() *lengthSet {
	return &lengthSet{IPv4: slices.Clone(ls.IPv4), IPv6: slices.Clone(ls.IPv6)}
}

func (ls *lengthSet) encode() string {
	c := ls.clone()
	if c.IPv4 == nil {
		c.IPv4 = []int{}
	}
	if c.IPv6 == nil {
		c.IPv6 = []int{}
	}
	b, _ := json.Marshal(c)
	return string(b)
}
