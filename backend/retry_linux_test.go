// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package backend

import (
	"errors"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestRetryDump(t *testing.T) {
	other := errors.New("permission denied")
	tests := []struct {
		name        string
		failures    int   // interrupted dumps before success
		err         error // returned after the failures (nil: success)
		wantCalls   int
		wantErr     error
		wantResults int
	}{
		{"first try", 0, nil, 1, nil, 2},
		{"interrupted twice", 2, nil, 3, nil, 2},
		{"always interrupted", 100, nil, dumpAttempts, netlink.ErrDumpInterrupted, 0},
		{"other error not retried", 0, other, 1, other, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			res, err := retryDump("test", func() ([]int, error) {
				calls++
				if calls <= tt.failures {
					return []int{1}, netlink.ErrDumpInterrupted // partial result
				}
				if tt.err != nil {
					return nil, tt.err
				}
				return []int{1, 2}, nil
			})
			if calls != tt.wantCalls {
				t.Errorf("calls = %d, want %d", calls, tt.wantCalls)
			}
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if len(res) != tt.wantResults {
				t.Errorf("results = %v, want %d (never a partial dump)", res, tt.wantResults)
			}
		})
	}
}
