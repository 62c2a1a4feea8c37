// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package gate

import "testing"

func TestTag(t *testing.T) {
	for _, c := range []struct {
		name, comment string
		port, mac     string
		ok            bool
	}{
		{"round trip", Tag("weft0123abcd", "02:AA:bb:00:00:01"), "weft0123abcd", "02:aa:bb:00:00:01", true},
		{"foreign comment", "held by hand", "", "", false},
		{"no mac", "weft0123abcd ", "", "", false},
		{"no port", " 02:aa:bb:00:00:01", "", "", false},
		{"empty", "", "", "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			port, mac, ok := parseTag(c.comment)
			if port != c.port || mac != c.mac || ok != c.ok {
				t.Errorf("parseTag(%q) = %q, %q, %t; want %q, %q, %t", c.comment, port, mac, ok, c.port, c.mac, c.ok)
			}
		})
	}
}
