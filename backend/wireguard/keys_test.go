// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package wireguard

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func TestPrivateKeyCreatedOnceAndReused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	k1, created, err := loadOrCreateKey(dir)
	if err != nil || !created {
		t.Fatalf("first load: created %v, err %v", created, err)
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode %04o, want 0600", perm)
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := di.Mode().Perm(); perm != 0o700 {
		t.Errorf("state dir mode %04o, want 0700", perm)
	}
	k2, created, err := loadOrCreateKey(dir)
	if err != nil || created {
		t.Fatalf("second load: created %v, err %v", created, err)
	}
	if k1 != k2 {
		t.Fatal("second load generated a new key")
	}
	// The file is in wg(8)'s format.
	raw, err := os.ReadFile(filepath.Join(dir, KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(raw)); got != k1.String() {
		t.Fatalf("key file holds %q, want the base64 key", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("state dir has %d entries, want only the key (no temp files)", len(entries))
	}
}

func TestSecretFilePermissions(t *testing.T) {
	psk, err := wgtypes.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		mode    os.FileMode
		content string
		wantErr string
	}{
		{"0600", 0o600, psk.String() + "\n", ""},
		{"0400", 0o400, psk.String(), ""},
		{"group readable", 0o640, psk.String(), "has mode 0640, want 0600"},
		{"world readable", 0o644, psk.String(), "has mode 0644, want 0600"},
		{"garbage", 0o600, "not a key", "not a base64 WireGuard key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "psk")
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tt.mode); err != nil {
				t.Fatal(err)
			}
			got, err := readPSK(p)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("readPSK() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != psk {
				t.Fatal("wrong key read")
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		if _, err := readPSK(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("readPSK(missing) error = %v, want not-exist", err)
		}
	})
	t.Run("leaked private key refused", func(t *testing.T) {
		dir := t.TempDir()
		if _, _, err := loadOrCreateKey(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, KeyFileName), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, _, err := loadOrCreateKey(dir); err == nil || !strings.Contains(err.Error(), "want 0600") {
			t.Fatalf("loadOrCreateKey with a 0644 key: error = %v, want refusal", err)
		}
	})
}
