// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package subnet

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const goodFile = "WEFT_NETWORK=10.244.0.0/16\nWEFT_SUBNET=10.244.3.1/24\nWEFT_MTU=1450\n"

// secret is what a root-only file holds in these tests: no error may show it.
const secret = "root:$6$s3cretSalt$s3cretHash:19000:0:99999:7:::"

// TestReadSubnetFileRefusesUnsafe builds each file a less trusted user
// could leave where the root CNI plugin reads the subnet file, and checks
// that reading it fails at once, says why, and shows none of the content.
func TestReadSubnetFileRefusesUnsafe(t *testing.T) {
	root := os.Geteuid() == 0
	tests := []struct {
		name     string
		needRoot bool
		// setup makes the subnet file's directory d (mode 0755) hold
		// subnet.env and returns the path to read.
		setup func(t *testing.T, d string) string
		want  string
	}{
		{"symlink to a secret", false, func(t *testing.T, d string) string {
			target := writeFile(t, filepath.Join(t.TempDir(), "shadow"), secret+"\n", 0o600)
			must(t, os.Symlink(target, filepath.Join(d, "subnet.env")))
			return filepath.Join(d, "subnet.env")
		}, "it is a symbolic link"},
		{"symlinked directory", false, func(t *testing.T, d string) string {
			real := filepath.Join(d, "real")
			must(t, os.Mkdir(real, 0o755))
			writeFile(t, filepath.Join(real, "subnet.env"), goodFile, 0o644)
			must(t, os.Symlink(real, filepath.Join(d, "link")))
			return filepath.Join(d, "link", "subnet.env")
		}, "/link is a symbolic link"},
		{"FIFO", false, func(t *testing.T, d string) string {
			p := filepath.Join(d, "subnet.env")
			must(t, unix.Mkfifo(p, 0o644))
			return p
		}, "not a regular file (a FIFO)"},
		{"directory", false, func(t *testing.T, d string) string {
			p := filepath.Join(d, "subnet.env")
			must(t, os.Mkdir(p, 0o755))
			return p
		}, "not a regular file (a directory)"},
		{"oversized", false, func(t *testing.T, d string) string {
			return writeFile(t, filepath.Join(d, "subnet.env"), goodFile+strings.Repeat("# "+secret+"\n", 100), 0o644)
		}, "bytes, more than the 4096 a subnet file may have"},
		{"group-writable", false, func(t *testing.T, d string) string {
			return writeFile(t, filepath.Join(d, "subnet.env"), goodFile, 0o664)
		}, "writable by group or others (mode 0664)"},
		{"world-writable", false, func(t *testing.T, d string) string {
			return writeFile(t, filepath.Join(d, "subnet.env"), goodFile, 0o646)
		}, "writable by group or others (mode 0646)"},
		{"hard link to a secret", false, func(t *testing.T, d string) string {
			target := writeFile(t, filepath.Join(d, "shadow"), secret+"\n", 0o600)
			must(t, os.Link(target, filepath.Join(d, "subnet.env")))
			return filepath.Join(d, "subnet.env")
		}, "it has 2 hard links"},
		{"world-writable directory", false, func(t *testing.T, d string) string {
			sub := filepath.Join(d, "open")
			must(t, os.Mkdir(sub, 0o755))
			must(t, os.Chmod(sub, 0o777))
			return writeFile(t, filepath.Join(sub, "subnet.env"), goodFile, 0o644)
		}, "/open is writable by group or others and not sticky (mode 0777)"},
		{"foreign-owned file", true, func(t *testing.T, d string) string {
			p := writeFile(t, filepath.Join(d, "subnet.env"), goodFile, 0o644)
			must(t, os.Chown(p, 4242, 4242))
			return p
		}, "owned by uid 4242, neither root nor the owner (uid 0) of its directory"},
		{"foreign-owned parent directory", true, func(t *testing.T, d string) string {
			sub := filepath.Join(d, "theirs")
			must(t, os.Mkdir(sub, 0o755))
			own := filepath.Join(sub, "weftd")
			must(t, os.Mkdir(own, 0o755))
			p := writeFile(t, filepath.Join(own, "subnet.env"), goodFile, 0o644)
			must(t, os.Chown(sub, 4242, 4242))
			must(t, os.Chown(own, 4343, 4343))
			must(t, os.Chown(p, 4343, 4343))
			return p
		}, "/theirs is owned by uid 4242, neither root nor the owner (uid 4343)"},
		{"secret content", false, func(t *testing.T, d string) string {
			return writeFile(t, filepath.Join(d, "subnet.env"), secret+"\n", 0o644)
		}, "line 1: not KEY=value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needRoot && !root {
				t.Skip("skipping: chown to another uid needs root")
			}
			path := tt.setup(t, t.TempDir())
			start := time.Now()
			f, err := ReadSubnetFile(path)
			took := time.Since(start)
			if err == nil {
				t.Fatalf("read %+v, want an error with %q", f, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
			for _, s := range []string{"s3cret", "root:"} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q shows the file's content", err)
				}
			}
			if took > time.Second {
				t.Errorf("took %v, want under 1s", took)
			}
		})
	}
}

// TestReadSubnetFileAccepts checks the layouts weftd makes: a file of its
// user in a directory of that user (systemd's RuntimeDirectory), a root
// file in a root directory (the DaemonSet), and a sticky shared directory.
func TestReadSubnetFileAccepts(t *testing.T) {
	t.Run("own directory", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "run", "weft", "subnet.env")
		must(t, WriteSubnetFile(p, mustParse(t, goodFile)))
		if _, err := ReadSubnetFile(p); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("weftd's user", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("skipping: chown to another uid needs root")
		}
		d := filepath.Join(t.TempDir(), "weft")
		must(t, os.Mkdir(d, 0o755))
		p := writeFile(t, filepath.Join(d, "subnet.env"), goodFile, 0o644)
		must(t, os.Chown(d, 4343, 4343))
		must(t, os.Chown(p, 4343, 4343))
		if _, err := ReadSubnetFile(p); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("sticky directory", func(t *testing.T) {
		d := filepath.Join(t.TempDir(), "shared")
		must(t, os.Mkdir(d, 0o755))
		must(t, os.Chmod(d, os.ModeSticky|0o777))
		p := writeFile(t, filepath.Join(d, "subnet.env"), goodFile, 0o644)
		if _, err := ReadSubnetFile(p); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("exactly the size bound", func(t *testing.T) {
		pad := strings.Repeat("#", MaxSubnetFileSize-len(goodFile)-1) + "\n"
		p := writeFile(t, filepath.Join(t.TempDir(), "subnet.env"), goodFile+pad, 0o644)
		if _, err := ReadSubnetFile(p); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		for _, p := range []string{filepath.Join(t.TempDir(), "nope.env"), filepath.Join(t.TempDir(), "no", "dir", "x.env")} {
			if _, err := ReadSubnetFile(p); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("ReadSubnetFile(%s): %v, want fs.ErrNotExist", p, err)
			}
		}
	})
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) string {
	t.Helper()
	must(t, os.WriteFile(path, []byte(content), 0o600))
	must(t, os.Chmod(path, mode))
	return path
}

func mustParse(t *testing.T, s string) *SubnetFile {
	t.Helper()
	f, err := ParseSubnetFile([]byte(s))
	must(t, err)
	return f
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
