// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package wireguard

import "testing"

func TestReleaser(t *testing.T) {
	// Each step is the number of packets moved during one tick.
	for _, tc := range []struct {
		name  string
		steps []uint64
		want  []bool // release after each step
	}{
		{"idle device never releases", []uint64{0, 10, 0, 0, 0}, []bool{false, false, false, false, false}},
		{"released once, a second after a burst", []uint64{50000, 80000, 0, 0, 0, 0}, []bool{false, false, false, true, false, false}},
		{"keepalives do not keep it busy", []uint64{5000, 150, 150, 0}, []bool{false, false, true, false}},
		{"moderate traffic delays the release", []uint64{5000, 1000, 1000, 0, 0}, []bool{false, false, false, false, true}},
		{"a second burst releases again", []uint64{5000, 0, 0, 9000, 0, 0}, []bool{false, false, true, false, false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r releaser
			var count uint64
			for i, d := range tc.steps {
				count += d
				if got := r.tick(count); got != tc.want[i] {
					t.Fatalf("step %d (%d packets): release %v, want %v", i, d, got, tc.want[i])
				}
			}
		})
	}
}
