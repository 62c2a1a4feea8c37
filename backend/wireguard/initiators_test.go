// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package wireguard

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func TestSplitInitiators(t *testing.T) {
	key := func(b byte) wgtypes.Key {
		var k wgtypes.Key
		k[0], k[31] = b, 1
		return k
	}
	k1, k2, k3 := key(1), key(2), key(3)
	for _, tc := range []struct {
		name       string
		self       wgtypes.Key
		added      []wgtypes.Key
		now, later []wgtypes.Key
	}{
		{"lowest initiates with all", k1, []wgtypes.Key{k2, k3}, []wgtypes.Key{k2, k3}, nil},
		{"highest waits for all", k3, []wgtypes.Key{k1, k2}, nil, []wgtypes.Key{k1, k2}},
		{"middle", k2, []wgtypes.Key{k3, k1}, []wgtypes.Key{k3}, []wgtypes.Key{k1}},
		{"none added", k2, nil, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now, later := splitInitiators(tc.self, tc.added)
			if diff := cmp.Diff(tc.now, now); diff != "" {
				t.Errorf("now (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.later, later); diff != "" {
				t.Errorf("later (-want +got):\n%s", diff)
			}
		})
	}
	// Every pair has exactly one side that initiates at once.
	keys := []wgtypes.Key{k1, k2, k3}
	for _, a := range keys {
		for _, b := range keys {
			if a == b {
				continue
			}
			na, _ := splitInitiators(a, []wgtypes.Key{b})
			nb, _ := splitInitiators(b, []wgtypes.Key{a})
			if len(na)+len(nb) != 1 {
				t.Errorf("pair %s/%s: %d initiators at once, want 1", a, b, len(na)+len(nb))
			}
		}
	}
}
