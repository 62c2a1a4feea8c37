// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package subnet

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

func mustConfig(t *testing.T, js string) *Config {
	t.Helper()
	c, err := ParseConfig([]byte(js))
	if err != nil {
		t.Fatalf("ParseConfig(%s): %v", js, err)
	}
	return c
}

func TestSpace(t *testing.T) {
	tests := []struct {
		name        string
		config      string
		v6          bool
		size        uint64
		first, last string
		sample      map[uint64]string // index → subnet
		notIn       []string
	}{
		{
			name: "IPv4 /16 in /24s", config: `{"Network": "10.244.0.0/16"}`,
			size: 256, first: "10.244.0.0/24", last: "10.244.255.0/24",
			sample: map[uint64]string{3: "10.244.3.0/24", 200: "10.244.200.0/24"},
			notIn:  []string{"10.245.0.0/24", "10.244.3.0/25", "10.244.0.0/16", "fd10::/64"},
		},
		{
			name: "IPv4 bounded", config: `{"Network": "10.244.0.0/16", "SubnetLen": 26, "SubnetMin": "10.244.1.64", "SubnetMax": "10.244.2.0"}`,
			size: 4, first: "10.244.1.64/26", last: "10.244.2.0/26",
			sample: map[uint64]string{1: "10.244.1.128/26", 2: "10.244.1.192/26"},
			notIn:  []string{"10.244.1.0/26", "10.244.2.64/26"},
		},
		{
			name: "IPv6 /56 in /64s", config: `{"IPv6Network": "fd10:244::/56"}`, v6: true,
			size: 256, first: "fd10:244::/64", last: "fd10:244:0:ff::/64",
			sample: map[uint64]string{1: "fd10:244:0:1::/64", 0xab: "fd10:244:0:ab::/64"},
			notIn:  []string{"fd10:244:0:100::/64", "fd10:244::/65", "10.0.0.0/24"},
		},
		{
			name: "IPv6 huge", config: `{"IPv6Network": "fd00:10::/32", "IPv6SubnetLen": 120}`, v6: true,
			size: ^uint64(0), first: "fd00:10::/120",
			sample: map[uint64]string{1: "fd00:10::100/120", 1 << 40: "fd00:10:0:0:1::/120"},
		},
		{
			name: "IPv6 crossing the 64-bit boundary", config: `{"IPv6Network": "fd10:244::/60", "IPv6SubnetLen": 68}`, v6: true,
			size: 256, first: "fd10:244::/68", last: "fd10:244:0:f:f000::/68",
			sample: map[uint64]string{1: "fd10:244:0:0:1000::/68", 16: "fd10:244:0:1::/68"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustConfig(t, tt.config)
			s := c.IPv4Space()
			if tt.v6 {
				s = c.IPv6Space()
				if c.IPv4Space().IsValid() {
					t.Errorf("IPv6-only network has an IPv4 space")
				}
			}
			if got := s.Size(); got != tt.size {
				t.Errorf("Size() = %d, want %d", got, tt.size)
			}
			if got := s.First().String(); got != tt.first {
				t.Errorf("First() = %s, want %s", got, tt.first)
			}
			if tt.last != "" {
				if got := s.Last().String(); got != tt.last {
					t.Errorf("Last() = %s, want %s", got, tt.last)
				}
			}
			for i, want := range tt.sample {
				p := s.Subnet(i)
				if p.String() != want {
					t.Errorf("Subnet(%d) = %s, want %s", i, p, want)
				}
				if j, ok := s.Index(p); !ok || j != i {
					t.Errorf("Index(%s) = %d, %v; want %d, true", p, j, ok, i)
				}
			}
			for _, p := range tt.notIn {
				if s.Contains(netip.MustParsePrefix(p)) {
					t.Errorf("Contains(%s) = true, want false", p)
				}
			}
		})
	}
}

func TestKeyName(t *testing.T) {
	for _, tt := range []struct{ p, key string }{
		{"10.244.3.0/24", "10.244.3.0-24"},
		{"fd10:244:0:3::/64", "fd10:244:0:3::-64"},
		{"fd10:244::/64", "fd10:244::-64"},
	} {
		p := netip.MustParsePrefix(tt.p)
		if got := KeyName(p); got != tt.key {
			t.Errorf("KeyName(%s) = %q, want %q", p, got, tt.key)
		}
		back, err := ParseKeyName(tt.key)
		if err != nil || back != p {
			t.Errorf("ParseKeyName(%q) = %v, %v; want %s", tt.key, back, err, p)
		}
	}
	for _, bad := range []string{"", "10.244.3.0", "10.244.3.0/24", "10.244.3.1-24", "10.244.3.0-33", "x-24", "fe80::%eth0-64"} {
		if p, err := ParseKeyName(bad); err == nil {
			t.Errorf("ParseKeyName(%q) = %s, want error", bad, p)
		}
	}
}

func TestPick(t *testing.T) {
	pfx := netip.MustParsePrefix
	r := rand.New(rand.NewPCG(1, 2))
	t.Run("never a taken one, until exhausted", func(t *testing.T) {
		s := mustConfig(t, `{"Network": "10.244.0.0/28", "SubnetLen": 30}`).IPv4Space()
		taken := map[netip.Prefix]bool{}
		for range s.Size() {
			p, ok := s.Pick(r, taken, nil)
			if !ok {
				t.Fatalf("Pick failed with %d of %d taken", len(taken), s.Size())
			}
			if taken[p] || !s.Contains(p) {
				t.Fatalf("Pick returned %s (taken %v, in space %v)", p, taken[p], s.Contains(p))
			}
			taken[p] = true
		}
		if p, ok := s.Pick(r, taken, nil); ok {
			t.Fatalf("Pick on a full space returned %s", p)
		}
		err := s.Exhausted()
		if !errors.Is(err, ErrExhausted) {
			t.Errorf("Exhausted() does not wrap ErrExhausted: %v", err)
		}
		if want := "network exhausted: all 4 /30 subnets of 10.244.0.0/28 are leased"; err.Error() != want {
			t.Errorf("Exhausted() = %q, want %q", err, want)
		}
	})
	t.Run("bounded exhaustion names the bounds", func(t *testing.T) {
		s := mustConfig(t, `{"Network": "10.244.0.0/16", "SubnetMin": "10.244.10.0", "SubnetMax": "10.244.11.0"}`).IPv4Space()
		want := "network exhausted: all 2 /24 subnets of 10.244.0.0/16 between 10.244.10.0/24 and 10.244.11.0/24 are leased"
		if got := s.Exhausted().Error(); got != want {
			t.Errorf("Exhausted() = %q, want %q", got, want)
		}
	})
	t.Run("avoids tombstones while others are free", func(t *testing.T) {
		s := mustConfig(t, `{"Network": "10.244.0.0/29", "SubnetLen": 30}`).IPv4Space()
		avoid := map[netip.Prefix]bool{pfx("10.244.0.0/30"): true}
		for range 50 {
			if p, _ := s.Pick(r, nil, avoid); p != pfx("10.244.0.4/30") {
				t.Fatalf("Pick = %s, want the only subnet without a tombstone", p)
			}
		}
		taken := map[netip.Prefix]bool{pfx("10.244.0.4/30"): true}
		if p, ok := s.Pick(r, taken, avoid); !ok || p != pfx("10.244.0.0/30") {
			t.Fatalf("Pick = %s, %v; want the tombstoned subnet once nothing else is free", p, ok)
		}
	})
	t.Run("random, not first-free", func(t *testing.T) {
		s := mustConfig(t, `{"Network": "10.244.0.0/16"}`).IPv4Space()
		seen := map[netip.Prefix]bool{}
		for range 100 {
			p, _ := s.Pick(r, nil, nil)
			seen[p] = true
		}
		if len(seen) < 50 {
			t.Errorf("100 picks gave only %d distinct subnets", len(seen))
		}
	})
	t.Run("large space samples", func(t *testing.T) {
		s := mustConfig(t, `{"Network": "10.0.0.0/8", "SubnetLen": 30}`).IPv4Space()
		taken := map[netip.Prefix]bool{}
		for i := uint64(0); i < 20000; i++ {
			taken[s.Subnet(i)] = true
		}
		for range 1000 {
			p, ok := s.Pick(r, taken, nil)
			if !ok || taken[p] || !s.Contains(p) {
				t.Fatalf("Pick = %s, %v", p, ok)
			}
		}
	})
	t.Run("scan", func(t *testing.T) {
		s := mustConfig(t, `{"Network": "10.244.0.0/16"}`).IPv4Space()
		taken, avoid := map[netip.Prefix]bool{}, map[netip.Prefix]bool{}
		for i := uint64(0); i < 256; i++ {
			switch {
			case i == 7:
				avoid[s.Subnet(i)] = true
			case i == 3:
			default:
				taken[s.Subnet(i)] = true
			}
		}
		for _, start := range []uint64{0, 4, 200, 255} {
			if p, ok := s.scan(start, taken, avoid); !ok || p != s.Subnet(3) {
				t.Errorf("scan from %d = %s, %v; want the free subnet %s", start, p, ok, s.Subnet(3))
			}
		}
		taken[s.Subnet(3)] = true
		if p, ok := s.scan(100, taken, avoid); !ok || p != s.Subnet(7) {
			t.Errorf("scan = %s, %v; want the avoided subnet once nothing else is free", p, ok)
		}
		taken[s.Subnet(7)] = true
		if p, ok := s.scan(100, taken, avoid); ok {
			t.Errorf("scan of a full space = %s", p)
		}
	})
}

func TestSpaceOverlapping(t *testing.T) {
	p := netip.MustParsePrefix
	s24 := newSpace(p("10.244.0.0/16"), 24)
	s64 := newSpace(p("fd10:244::/56"), 64)
	tests := []struct {
		name  string
		s     Space
		q     netip.Prefix
		limit int
		want  []netip.Prefix
		ok    bool
	}{
		{"longer inside", s24, p("10.244.3.128/25"), 10, []netip.Prefix{p("10.244.3.0/24")}, true},
		{"same", s24, p("10.244.3.0/24"), 10, []netip.Prefix{p("10.244.3.0/24")}, true},
		{"shorter", s24, p("10.244.2.0/23"), 10, []netip.Prefix{p("10.244.2.0/24"), p("10.244.3.0/24")}, true},
		{"shorter over the limit", s24, p("10.244.0.0/20"), 10, nil, false},
		{"holds the network, over the limit", s24, p("0.0.0.0/1"), 255, nil, false},
		{"outside", s24, p("10.245.0.0/24"), 10, nil, true},
		{"other family", s24, p("fd10:244::/64"), 10, nil, true},
		{"IPv6 shorter", s64, p("fd10:244:0:4::/63"), 10, []netip.Prefix{p("fd10:244:0:4::/64"), p("fd10:244:0:5::/64")}, true},
		{"IPv6 huge", s64, p("fd10:244::/56"), 1 << 16, []netip.Prefix(nil), true},
	}
	tests[len(tests)-1].want = make([]netip.Prefix, 256)
	for i := range 256 {
		tests[len(tests)-1].want[i] = s64.Subnet(uint64(i))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.s.Overlapping(tt.q, tt.limit)
			if ok != tt.ok || !slices.Equal(got, tt.want) {
				t.Errorf("Overlapping(%s, %d) = %v, %t; want %v, %t", tt.q, tt.limit, got, ok, tt.want, tt.ok)
			}
		})
	}
}
