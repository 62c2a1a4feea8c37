// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package backend

import "testing"

func TestValidIfName(t *testing.T) {
	for _, name := range []string{"eth0", "weft.1", "weft0", "a", "fifteen-chars-x", "wg-weft"} {
		if err := ValidIfName(name); err != nil {
			t.Errorf("ValidIfName(%q) = %v, want nil", name, err)
		}
	}
	for _, name := range []string{
		"", "sixteen-chars-xy", ".", "..", "a/b", "a:b", "a b",
		"a\tb", "a\nb", "a\vb", "a\fb", "a\rb", "a\x00b",
	} {
		if err := ValidIfName(name); err == nil {
			t.Errorf("ValidIfName(%q) = nil, want an error", name)
		}
	}
}
