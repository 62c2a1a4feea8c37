// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package membership

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestKeyFileRefusesUnsafe leaves each file an unprivileged local user
// could try to make weftd read as its gossip key file (a link counts only
// when root or weftd's user made it, as in a Kubernetes Secret volume), and checks that
// reading it fails within a second, names the file and the reason, and
// shows none of the content (a valid key sits in every target, so a read
// that followed the trick would succeed).
func TestKeyFileRefusesUnsafe(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	line := base64.StdEncoding.EncodeToString(key) + "\n"
	write := func(t *testing.T, p, content string, mode os.FileMode) string {
		t.Helper()
		mustOK(t, os.WriteFile(p, []byte(content), 0o600))
		mustOK(t, os.Chmod(p, mode))
		return p
	}
	tests := []struct {
		name     string
		needRoot bool
		setup    func(t *testing.T, d string) string // returns the path to read
		want     string
		mode     bool // the error wraps ErrKeyFileMode
	}{
		{"symlink of another user", true, func(t *testing.T, d string) string {
			target := write(t, filepath.Join(t.TempDir(), "other"), line, 0o600)
			mustOK(t, os.Chmod(d, os.ModeSticky|0o777)) // a shared directory, like /tmp
			mustOK(t, os.Symlink(target, filepath.Join(d, "key")))
			mustOK(t, os.Lchown(filepath.Join(d, "key"), 4242, 4242))
			return filepath.Join(d, "key")
		}, "/key is a symbolic link owned by uid 4242, neither root nor this process's user (uid 0)", false},
		{"symlinked directory of another user", true, func(t *testing.T, d string) string {
			real := filepath.Join(d, "real")
			mustOK(t, os.Mkdir(real, 0o700))
			write(t, filepath.Join(real, "key"), line, 0o600)
			mustOK(t, os.Symlink(real, filepath.Join(d, "link")))
			mustOK(t, os.Lchown(filepath.Join(d, "link"), 4242, 4242))
			return filepath.Join(d, "link", "key")
		}, "/link is a symbolic link owned by uid 4242", false},
		{"symlink in a world-writable directory", false, func(t *testing.T, d string) string {
			target := write(t, filepath.Join(t.TempDir(), "other"), line, 0o600)
			mustOK(t, os.Chmod(d, 0o777))
			mustOK(t, os.Symlink(target, filepath.Join(d, "key")))
			return filepath.Join(d, "key")
		}, "is writable by group or others and not sticky (mode 0777)", false},
		{"symlink loop", false, func(t *testing.T, d string) string {
			mustOK(t, os.Symlink("key", filepath.Join(d, "key")))
			return filepath.Join(d, "key")
		}, "more than 40 symbolic links on the path", false},
		{"FIFO", false, func(t *testing.T, d string) string {
			p := filepath.Join(d, "key")
			mustOK(t, unix.Mkfifo(p, 0o600))
			return p
		}, "not a regular file (a FIFO)", false},
		{"oversized", false, func(t *testing.T, d string) string {
			return write(t, filepath.Join(d, "key"), line+strings.Repeat("#"+line, MaxKeyFileSize/len(line)), 0o600)
		}, "more than the 65536 a gossip key file may have", false},
		{"group-writable", false, func(t *testing.T, d string) string {
			return write(t, filepath.Join(d, "key"), line, 0o620)
		}, "has mode 0620, want 0600", true},
		{"world-writable", false, func(t *testing.T, d string) string {
			return write(t, filepath.Join(d, "key"), line, 0o602)
		}, "has mode 0602, want 0600", true},
		{"hard link", false, func(t *testing.T, d string) string {
			target := write(t, filepath.Join(d, "other"), line, 0o600)
			mustOK(t, os.Link(target, filepath.Join(d, "key")))
			return filepath.Join(d, "key")
		}, "it has 2 hard links", false},
		{"world-writable directory", false, func(t *testing.T, d string) string {
			sub := filepath.Join(d, "open")
			mustOK(t, os.Mkdir(sub, 0o700))
			mustOK(t, os.Chmod(sub, 0o777))
			return write(t, filepath.Join(sub, "key"), line, 0o600)
		}, "/open is writable by group or others and not sticky (mode 0777)", false},
		{"foreign owner", true, func(t *testing.T, d string) string {
			p := write(t, filepath.Join(d, "key"), line, 0o600)
			mustOK(t, os.Chown(p, 4242, 4242))
			return p
		}, "owned by uid 4242, neither root nor this process's user (uid 0): chown it", false},
		{"foreign-owned directory", true, func(t *testing.T, d string) string {
			sub := filepath.Join(d, "theirs")
			mustOK(t, os.Mkdir(sub, 0o700))
			p := write(t, filepath.Join(sub, "key"), line, 0o600)
			mustOK(t, os.Chown(sub, 4242, 4242))
			return p
		}, "/theirs is owned by uid 4242, neither root nor this process's user (uid 0)", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needRoot && os.Geteuid() != 0 {
				t.Skip("skipping: chown to another uid needs root")
			}
			path := tt.setup(t, t.TempDir())
			type result struct {
				keys [][]byte
				err  error
			}
			done := make(chan result, 1)
			start := time.Now()
			go func() {
				keys, _, err := readKeyFile(path)
				done <- result{keys, err}
			}()
			var r result
			select {
			case r = <-done:
			case <-time.After(time.Second):
				t.Fatalf("readKeyFile(%s) still blocked after 1s", path)
			}
			t.Logf("%v: %v", time.Since(start).Round(time.Microsecond), r.err)
			if r.err == nil {
				t.Fatalf("read %d keys, want an error with %q", len(r.keys), tt.want)
			}
			msg := r.err.Error()
			if !strings.Contains(msg, tt.want) || !strings.Contains(msg, path) {
				t.Errorf("error %q, want it to name %s and contain %q", msg, path, tt.want)
			}
			if strings.Contains(msg, strings.TrimSpace(line)) || strings.Contains(msg, "0123456789") {
				t.Errorf("error %q shows the key", msg)
			}
			if got := errors.Is(r.err, ErrKeyFileMode); got != tt.mode {
				t.Errorf("errors.Is(err, ErrKeyFileMode) = %v, want %v", got, tt.mode)
			}
		})
	}
}

// TestKeyFileAccepts checks the layouts an operator uses: a 0600 or 0400
// file of root or of weftd's user, in a Kubernetes Secret volume (links
// of root), given by a relative path too.
func TestKeyFileAccepts(t *testing.T) {
	key := []byte("0123456789abcdef")
	for _, mode := range []os.FileMode{0o600, 0o400} {
		p := filepath.Join(t.TempDir(), "key")
		writeKeys(t, p, mode, key)
		keys, _, err := readKeyFile(p)
		if err != nil || len(keys) != 1 || string(keys[0]) != string(key) {
			t.Fatalf("mode %04o: %d keys, %v; want the key", mode, len(keys), err)
		}
	}
	// A Kubernetes Secret volume: a sticky directory of root, the file
	// reached through root's links ..data and key.
	d := t.TempDir()
	mustOK(t, os.Chmod(d, os.ModeSticky|0o777))
	ts := filepath.Join(d, "..2026_12_05_20_00_00.1")
	mustOK(t, os.Mkdir(ts, 0o755))
	writeKeys(t, filepath.Join(ts, "gossip.key"), 0o400, key)
	mustOK(t, os.Symlink(filepath.Base(ts), filepath.Join(d, "..data")))
	mustOK(t, os.Symlink("..data/gossip.key", filepath.Join(d, "gossip.key")))
	if keys, _, err := readKeyFile(filepath.Join(d, "gossip.key")); err != nil || len(keys) != 1 {
		t.Fatalf("Secret volume: %d keys, %v; want the key", len(keys), err)
	}
	d = t.TempDir()
	writeKeys(t, filepath.Join(d, "key"), 0o600, key)
	t.Chdir(d)
	if _, _, err := readKeyFile("key"); err != nil {
		t.Fatalf("relative path: %v", err)
	}
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
