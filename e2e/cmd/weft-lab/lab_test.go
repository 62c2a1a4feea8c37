// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package main

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestArgs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lab")
	cases := []struct {
		name    string
		args    []string
		wantErr string // "" for success
	}{
		{"no command", []string{}, "no command given"},
		{"unknown command", []string{"sideways"}, "unknown command"},
		{"bad backend", []string{"up", "--dir", dir, "--backend", "geneve"}, "--backend"},
		{"too many nodes", []string{"up", "--dir", dir, "--nodes", "99"}, "--nodes"},
		{"negative pods", []string{"up", "--dir", dir, "--pods", "-1"}, "--pods"},
		{"stray argument", []string{"up", "--dir", dir, "extra"}, "unexpected arguments"},
		// With nothing up, down and status say so and succeed.
		{"down with nothing up", []string{"down", "--dir", dir}, ""},
		{"status with nothing up", []string{"status", "--dir", dir}, ""},
		{"restart with nothing up", []string{"restart", "--dir", dir, "node1"}, "no lab is up"},
		{"restart without a name", []string{"restart", "--dir", dir}, "usage"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := run(t.Context(), tc.args)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("err = %v, want success", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
