// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package ipam

import (
	"fmt"
	"net/netip"
	"testing"
)

// BenchmarkAddDel runs the store's share of one ADD (open, allocate) and
// one DEL (open, release) in a store that
// holds 50 other records, as on a node with 50 pods.
func BenchmarkAddDel(b *testing.B) {
	dir := b.TempDir()
	pools := Pools{V4: netip.MustParsePrefix("10.244.3.1/24"), V6: netip.MustParsePrefix("fd10:244:0:3::1/64")}
	s, err := Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	for i := range 50 {
		if _, _, err := s.Allocate(fmt.Sprint("other-", i), "eth0", pools); err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprint("pod-", i)
		s, err := Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := s.Allocate(id, "eth0", pools); err != nil {
			b.Fatal(err)
		}
		s.Close()
		if s, err = Open(dir); err != nil {
			b.Fatal(err)
		}
		if _, ok, err := s.Release(id, "eth0"); err != nil || !ok {
			b.Fatal(ok, err)
		}
		s.Close()
	}
}
