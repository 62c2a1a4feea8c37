// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kubetest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestToolsDir(t *testing.T) {
	full := t.TempDir()
	for _, n := range Tools {
		if err := os.WriteFile(filepath.Join(full, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	partial := t.TempDir()
	if err := os.WriteFile(filepath.Join(partial, "kube-apiserver"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	notExec := t.TempDir()
	for _, n := range Tools {
		if err := os.WriteFile(filepath.Join(notExec, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name              string
		env               map[string]string
		wantDir, wantSkip bool
		wantErr           string
	}{
		{name: "unset", env: nil, wantSkip: true},
		{name: "unset under CI", env: map[string]string{"CI": "true"}, wantErr: "unset under CI"},
		{name: "complete", env: map[string]string{ToolsEnv: full, "CI": "true"}, wantDir: true},
		{name: "missing program", env: map[string]string{ToolsEnv: partial}, wantErr: "kube-controller-manager missing"},
		{name: "not executable", env: map[string]string{ToolsEnv: notExec}, wantErr: "not an executable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, skip, err := toolsDir(func(k string) string { return tc.env[k] }, os.Stat)
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
			case err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantSkip:
				if skip == "" || !strings.Contains(skip, "make kube-tools") {
					t.Fatalf("skip = %q, want a reason naming make kube-tools", skip)
				}
			case tc.wantDir:
				if dir != tc.env[ToolsEnv] || skip != "" {
					t.Fatalf("dir, skip = %q, %q; want %q, no skip", dir, skip, tc.env[ToolsEnv])
				}
			}
		})
	}
}
