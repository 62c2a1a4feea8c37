// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestTLSFilesChecked: the TLS files are checked before the etcd client
// reads them; a link, a FIFO, a key others can read, a foreign owner are
// refused at once, naming the file and the reason.
func TestTLSFilesChecked(t *testing.T) {
	const pem = "-----BEGIN PRIVATE KEY-----\nczNjcmV0\n-----END PRIVATE KEY-----\n"
	ep := []string{"https://127.0.0.1:1"}
	tests := []struct {
		name     string
		needRoot bool
		cfg      func(t *testing.T, d string) (ClientConfig, string) // the config and the path at fault
		want     string
	}{
		{"CA linked by another user", true, func(t *testing.T, d string) (ClientConfig, string) {
			p := filepath.Join(d, "ca.pem")
			mustTLS(t, os.Chmod(d, os.ModeSticky|0o777))
			mustTLS(t, os.WriteFile(filepath.Join(t.TempDir(), "other"), []byte(pem), 0o600))
			mustTLS(t, os.Symlink(filepath.Join(d, "other"), p))
			mustTLS(t, os.Lchown(p, 4242, 4242))
			return ClientConfig{Endpoints: ep, CAFile: p}, p
		}, "ca.pem is a symbolic link owned by uid 4242"},
		{"FIFO CA", false, func(t *testing.T, d string) (ClientConfig, string) {
			p := filepath.Join(d, "ca.pem")
			mustTLS(t, unix.Mkfifo(p, 0o644))
			return ClientConfig{Endpoints: ep, CAFile: p}, p
		}, "not a regular file (a FIFO)"},
		{"group-readable key", false, func(t *testing.T, d string) (ClientConfig, string) {
			c, k := filepath.Join(d, "c.pem"), filepath.Join(d, "k.pem")
			mustTLS(t, os.WriteFile(c, []byte(pem), 0o644))
			mustTLS(t, os.WriteFile(k, []byte(pem), 0o640))
			return ClientConfig{Endpoints: ep, CertFile: c, KeyFile: k}, k
		}, "has mode 0640, want 0600"},
		{"world-writable cert", false, func(t *testing.T, d string) (ClientConfig, string) {
			c, k := filepath.Join(d, "c.pem"), filepath.Join(d, "k.pem")
			mustTLS(t, os.WriteFile(c, []byte(pem), 0o600))
			mustTLS(t, os.Chmod(c, 0o646))
			mustTLS(t, os.WriteFile(k, []byte(pem), 0o600))
			return ClientConfig{Endpoints: ep, CertFile: c, KeyFile: k}, c
		}, "writable by group or others (mode 0646)"},
		{"foreign-owned key", true, func(t *testing.T, d string) (ClientConfig, string) {
			c, k := filepath.Join(d, "c.pem"), filepath.Join(d, "k.pem")
			mustTLS(t, os.WriteFile(c, []byte(pem), 0o644))
			mustTLS(t, os.WriteFile(k, []byte(pem), 0o600))
			mustTLS(t, os.Chown(k, 4242, 4242))
			return ClientConfig{Endpoints: ep, CertFile: c, KeyFile: k}, k
		}, "owned by uid 4242, neither root nor this process's user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needRoot && os.Geteuid() != 0 {
				t.Skip("skipping: chown to another uid needs root")
			}
			cfg, bad := tt.cfg(t, t.TempDir())
			done := make(chan error, 1)
			go func() {
				c, err := NewClient(cfg)
				if err == nil {
					c.Close()
				}
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(time.Second):
				t.Fatal("NewClient still blocked after 1s")
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), bad) {
				t.Fatalf("NewClient: %v, want an error naming %s with %q", err, bad, tt.want)
			}
			if strings.Contains(err.Error(), "czNjcmV0") {
				t.Errorf("error %q shows the file's content", err)
			}
		})
	}
}

func mustTLS(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
