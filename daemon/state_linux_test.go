// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestStateDirRefusesUnsafe leaves in the state dir each file an
// unprivileged local user could try to make weftd read, and checks that
// reading it fails within a second, names the file and the reason and
// shows none of the content (the targets hold valid content, so a read
// that followed the trick would succeed).
func TestStateDirRefusesUnsafe(t *testing.T) {
	const id = "6f1c2c3e-8a8b-4f43-9d55-0c6a5b9f0e11\n"
	const gossipKey = "MDEyMzQ1Njc4OWFiY2RlZg==\n"
	readID := func(s *stateDir) error { _, err := s.nodeID(); return err }
	readKey := func(s *stateDir) error { _, err := s.gossipKey(); return err }
	readSnapshot := func(s *stateDir) error { _, err := s.snapshot(); return err }
	write := func(t *testing.T, p, content string, mode os.FileMode) string {
		t.Helper()
		mustDo(t, os.WriteFile(p, []byte(content), 0o600))
		mustDo(t, os.Chmod(p, mode))
		return p
	}
	tests := []struct {
		name     string
		needRoot bool
		file     string
		read     func(*stateDir) error
		setup    func(t *testing.T, p string) // p: the state file to leave
		want     string
	}{
		{"symlinked node ID", false, nodeIDFile, readID, func(t *testing.T, p string) {
			mustDo(t, os.Symlink(write(t, filepath.Join(t.TempDir(), "other"), id, 0o600), p))
		}, "it is a symbolic link"},
		{"FIFO node ID", false, nodeIDFile, readID, func(t *testing.T, p string) {
			mustDo(t, unix.Mkfifo(p, 0o600))
		}, "not a regular file (a FIFO)"},
		{"oversized node ID", false, nodeIDFile, readID, func(t *testing.T, p string) {
			write(t, p, id+strings.Repeat("#", maxSmallStateFile), 0o600)
		}, "more than the 4096 a state file may have"},
		{"group-writable node ID", false, nodeIDFile, readID, func(t *testing.T, p string) {
			write(t, p, id, 0o620)
		}, "writable by group or others (mode 0620)"},
		{"world-writable node ID", false, nodeIDFile, readID, func(t *testing.T, p string) {
			write(t, p, id, 0o602)
		}, "writable by group or others (mode 0602)"},
		{"hard-linked node ID", false, nodeIDFile, readID, func(t *testing.T, p string) {
			mustDo(t, os.Link(write(t, p+".other", id, 0o600), p))
		}, "it has 2 hard links"},
		{"foreign-owned node ID", true, nodeIDFile, readID, func(t *testing.T, p string) {
			mustDo(t, os.Chown(write(t, p, id, 0o600), 4242, 4242))
		}, "owned by uid 4242, neither root nor this process's user (uid 0): chown it"},
		{"group-readable gossip key copy", false, gossipKeyFile, readKey, func(t *testing.T, p string) {
			write(t, p, gossipKey, 0o640)
		}, "has mode 0640, want 0600"},
		{"symlinked gossip key copy", false, gossipKeyFile, readKey, func(t *testing.T, p string) {
			mustDo(t, os.Symlink(write(t, filepath.Join(t.TempDir(), "other"), gossipKey, 0o600), p))
		}, "it is a symbolic link"},
		{"FIFO snapshot", false, snapshotFile, readSnapshot, func(t *testing.T, p string) {
			mustDo(t, unix.Mkfifo(p, 0o600))
		}, "not a regular file (a FIFO)"},
		{"oversized snapshot", false, snapshotFile, readSnapshot, func(t *testing.T, p string) {
			write(t, p, "{}", 0o600)
			mustDo(t, os.Truncate(p, maxSnapshotFile+1)) // sparse: refused on its size, unread
		}, "more than the 134217728 a state file may have"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needRoot && os.Geteuid() != 0 {
				t.Skip("skipping: chown to another uid needs root")
			}
			s, err := openStateDir(filepath.Join(t.TempDir(), "state"))
			mustDo(t, err)
			path := s.path(tt.file)
			tt.setup(t, path)
			before, err := os.Lstat(path)
			mustDo(t, err)
			done := make(chan error, 1)
			start := time.Now()
			go func() { done <- tt.read(s) }()
			select {
			case err = <-done:
			case <-time.After(time.Second):
				t.Fatalf("reading %s still blocked after 1s", path)
			}
			t.Logf("%v: %v", time.Since(start).Round(time.Microsecond), err)
			if err == nil {
				t.Fatalf("read succeeded, want an error with %q", tt.want)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.want) || !strings.Contains(msg, path) {
				t.Errorf("error %q, want it to name %s and contain %q", msg, path, tt.want)
			}
			for _, secret := range []string{"6f1c2c3e", "MDEyMzQ1"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows the file's content", err)
				}
			}
			if after, err := os.Lstat(path); err != nil || after.Mode() != before.Mode() || after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
				t.Errorf("the refused file changed: %v, %v (was %v)", after, err, before)
			}
		})
	}
}

// TestStateDirOfWeftdUser checks the layout of weftd run as its own user
// (systemd's StateDirectory=): a dir and files of that user are read,
// also by root.
func TestStateDirOfWeftdUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: chown to another uid needs root")
	}
	dir := filepath.Join(t.TempDir(), "state")
	s, err := openStateDir(dir)
	mustDo(t, err)
	id, err := s.nodeID()
	mustDo(t, err)
	mustDo(t, os.Chown(dir, 4343, 4343))
	mustDo(t, os.Chown(s.path(nodeIDFile), 4343, 4343))
	if got, err := s.nodeID(); err != nil || got != id {
		t.Fatalf("node ID %q, %v; want %q", got, err, id)
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
