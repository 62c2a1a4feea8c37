// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package install

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const conflist = `{"cniVersion": "1.0.0", "name": "weft", "plugins": [{"type": "weft"}, {"type": "portmap", "capabilities": {"portMappings": true}}]}`

// setup writes a plugin and a conflist into a source directory and makes
// the two destination directories; it returns the Config naming them.
func setup(t *testing.T, plugin, list string) Config {
	t.Helper()
	root := t.TempDir()
	cfg := Config{
		Plugin:   filepath.Join(root, "src", "weft"),
		Conflist: filepath.Join(root, "src", "10-weft.conflist"),
		BinDir:   filepath.Join(root, "host", "opt", "cni", "bin"),
		ConfDir:  filepath.Join(root, "host", "etc", "cni", "net.d"),
	}
	for _, d := range []string{filepath.Dir(cfg.Plugin), cfg.BinDir, cfg.ConfDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, data := range map[string]string{cfg.Plugin: plugin, cfg.Conflist: list} {
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return cfg
}

// checkInstalled checks both destinations' contents and modes, and that
// no temporary file is left in either directory.
func checkInstalled(t *testing.T, cfg Config, plugin string) {
	t.Helper()
	for _, f := range []struct {
		path, want string
		mode       os.FileMode
	}{
		{filepath.Join(cfg.BinDir, "weft"), plugin, 0o755},
		{filepath.Join(cfg.ConfDir, "10-weft.conflist"), conflist, 0o644},
	} {
		got, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, []byte(f.want)) {
			t.Errorf("%s holds %q, want %q", f.path, got, f.want)
		}
		if fi, err := os.Stat(f.path); err != nil || fi.Mode().Perm() != f.mode {
			t.Errorf("%s: mode %v (%v), want %v", f.path, fi.Mode().Perm(), err, f.mode)
		}
	}
	for _, d := range []string{cfg.BinDir, cfg.ConfDir} {
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 1 {
			t.Errorf("%s holds %d entries, want 1 (no temporary file left): %v", d, len(ents), ents)
		}
	}
}

// TestRun installs both files, then installs a newer plugin over the
// first while a process holds the installed one open for execution
// (as a runtime running the plugin does): the file is replaced by rename,
// and the open file keeps its old content.
func TestRun(t *testing.T) {
	cfg := setup(t, "\x7fELF plugin v1", conflist)
	done, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(cfg.BinDir, "weft"), filepath.Join(cfg.ConfDir, "10-weft.conflist")}
	if strings.Join(done, " ") != strings.Join(want, " ") {
		t.Errorf("Run returned %v, want %v", done, want)
	}
	checkInstalled(t, cfg, "\x7fELF plugin v1")

	old, err := os.Open(filepath.Join(cfg.BinDir, "weft"))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := os.WriteFile(cfg.Plugin, []byte("\x7fELF plugin v2"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(cfg); err != nil {
		t.Fatal(err)
	}
	checkInstalled(t, cfg, "\x7fELF plugin v2")
	b := make([]byte, 64)
	n, _ := old.ReadAt(b, 0)
	if string(b[:n]) != "\x7fELF plugin v1" {
		t.Errorf("the file open before the second install reads %q: it was overwritten, not replaced", b[:n])
	}
}

// TestRunRefuses checks that bad input is refused with a message that
// names the problem, and that nothing is written then.
func TestRunRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		list string
		want string
	}{
		{"no plugin", func(c *Config) { os.Remove(c.Plugin) }, conflist, "plugin: stat"},
		{"empty plugin", func(c *Config) { os.WriteFile(c.Plugin, nil, 0o600) }, conflist, "is empty"},
		{"plugin is a directory", func(c *Config) { c.Plugin = c.BinDir }, conflist, "is not a regular file"},
		{"conflist not given", func(c *Config) { c.Conflist = "" }, conflist, "no conflist file given"},
		{"conflist not JSON", nil, "{", "conflist"},
		{"conflist without plugins", nil, `{"cniVersion": "1.0.0", "name": "weft", "plugins": []}`, "conflist"},
		{"weft not first", nil, `{"cniVersion": "1.0.0", "name": "weft", "plugins": [{"type": "bridge"}]}`, `the first plugin must be of type "weft"`},
		{"host path not mounted", func(c *Config) { c.ConfDir += "-missing" }, conflist, "is the host path mounted?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := setup(t, "\x7fELF plugin", tc.list)
			if tc.edit != nil {
				tc.edit(&cfg)
			}
			done, err := Run(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run: %v, want an error containing %q", err, tc.want)
			}
			if len(done) != 0 {
				t.Errorf("Run wrote %v before refusing", done)
			}
			for _, d := range []string{cfg.BinDir, cfg.ConfDir} {
				if ents, _ := os.ReadDir(d); len(ents) != 0 {
					t.Errorf("%s holds %v after a refused install", d, ents)
				}
			}
		})
	}
}
