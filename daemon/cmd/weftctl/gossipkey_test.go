// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package main

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
)

func TestGossipKey(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		size    int
		wantErr string
	}{
		{args: nil, size: 32},
		{args: []string{"-size", "16"}, size: 16},
		{args: []string{"-size", "24"}, size: 24},
		{args: []string{"-size", "20"}, wantErr: "want 16, 24 or 32"},
		{args: []string{"extra"}, wantErr: "unexpected argument"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out bytes.Buffer
			err := gossipKey(&out, tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			line := out.String()
			if !strings.HasSuffix(line, "\n") || strings.Count(line, "\n") != 1 {
				t.Fatalf("output %q is not one line", line)
			}
			key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(line))
			if err != nil || len(key) != tc.size {
				t.Fatalf("output %q: %d bytes, %v; want %d base64 bytes", line, len(key), err, tc.size)
			}
			var again bytes.Buffer
			if err := gossipKey(&again, tc.args); err != nil || again.String() == line {
				t.Fatalf("second key %q equals the first or failed: %v", again.String(), err)
			}
		})
	}
}
