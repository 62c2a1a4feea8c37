// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package image

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

var (
	fakeOnce sync.Once
	fakeBin  []byte
	fakeErr  error
)

// fakeBinDir builds one small static program (cgo off, for linux on this
// machine's architecture), once per test process, and places it under
// every name of [Files], each copy ending in its name.
func fakeBinDir(t *testing.T) string {
	t.Helper()
	fakeOnce.Do(func() {
		src, err := os.MkdirTemp("", "weft-image-test-")
		if err != nil {
			fakeErr = err
			return
		}
		defer os.RemoveAll(src)
		os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644)
		os.WriteFile(filepath.Join(src, "go.mod"), []byte("module fake\n\ngo 1.22\n"), 0o644)
		cmd := exec.Command("go", "build", "-trimpath", "-o", "fake", ".")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH, "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			fakeErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		fakeBin, fakeErr = os.ReadFile(filepath.Join(src, "fake"))
	})
	if fakeErr != nil {
		t.Fatal(fakeErr)
	}
	b := fakeBin
	dir := t.TempDir()
	for _, f := range Files {
		if err := os.WriteFile(filepath.Join(dir, f.Binary), append(b, f.Binary...), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// otherArch is an architecture the binaries this test builds are not for.
var otherArch = map[bool]string{true: "arm64", false: "amd64"}[runtime.GOARCH == "amd64"]

func testConfig(dir string) Config {
	return Config{BinDir: dir, Arch: runtime.GOARCH, Version: "v0.1.0-test", Revision: strings.Repeat("ab", 20), Created: time.Unix(1767225600, 0)}
}

func digest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestBuild checks the image's config and its one layer: the files of
// [Files] and their directories, owned by root, stamped with the given
// time, executable.
func TestBuild(t *testing.T) {
	cfg := testConfig(fakeBinDir(t))
	img, err := Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Architecture != runtime.GOARCH || cf.OS != "linux" || !cf.Created.Time.Equal(cfg.Created) || cf.RootFS.Type != "layers" {
		t.Errorf("config: architecture %q, os %q, created %v, rootfs type %q", cf.Architecture, cf.OS, cf.Created, cf.RootFS.Type)
	}
	wantCfg := v1.Config{
		Entrypoint: []string{"/usr/local/bin/weftd"},
		User:       "65532:65532",
		Env:        []string{"PATH=/usr/local/bin"},
		WorkingDir: "/",
		Labels: map[string]string{
			"org.opencontainers.image.source":   "https://github.com/weftnet/weft",
			"org.opencontainers.image.version":  "v0.1.0-test",
			"org.opencontainers.image.revision": cfg.Revision,
			"org.opencontainers.image.created":  "2026-01-01T00:00:00Z",
			"org.opencontainers.image.title":    "weft",
			"org.opencontainers.image.licenses": "Apache-2.0",
		},
	}
	if diff := cmp.Diff(wantCfg, cf.Config); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers (%v), want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	type entry struct {
		Name      string
		Type      byte
		Mode      int64
		UID, GID  int
		ModTime   time.Time
		Content   string
		PAXRecord bool
	}
	var got []entry
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		var tail string
		if len(b) > 0 {
			tail = string(b[len(b)-len(filepath.Base(h.Name)):])
		}
		got = append(got, entry{h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.ModTime.UTC(), tail, len(h.PAXRecords) > 0})
	}
	at := cfg.Created.UTC()
	dir := func(n string) entry { return entry{n, tar.TypeDir, 0o755, 0, 0, at, "", false} }
	file := func(n, bin string) entry { return entry{n, tar.TypeReg, 0o755, 0, 0, at, bin, false} }
	want := []entry{
		dir("opt/"), dir("opt/weft/"), dir("opt/weft/bin/"), dir("usr/"), dir("usr/local/"), dir("usr/local/bin/"),
		file("opt/weft/bin/weft", "weft"),
		file("usr/local/bin/weft-install-cni", "weft-install-cni"),
		file("usr/local/bin/weftctl", "weftctl"),
		file("usr/local/bin/weftd", "weftd"),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("layer (-want +got):\n%s", diff)
	}
}

// TestBuildReproducible builds the image twice from the same input, and
// once more with another time: the first two must be identical to the
// byte, in the archive too; the third must differ.
func TestBuildReproducible(t *testing.T) {
	cfg := testConfig(fakeBinDir(t))
	tag, err := name.NewTag("ghcr.io/weftnet/weft:v0.1.0-test")
	if err != nil {
		t.Fatal(err)
	}
	var archives [2][]byte
	var digests [3]v1.Hash
	for i := range 3 {
		if i == 2 {
			cfg.Created = cfg.Created.Add(time.Second)
		}
		img, err := Build(cfg)
		if err != nil {
			t.Fatal(err)
		}
		digests[i] = digest(t, img)
		if i == 2 {
			break
		}
		out := filepath.Join(t.TempDir(), "weft.tar")
		if err := WriteArchive(out, tag, img); err != nil {
			t.Fatal(err)
		}
		if archives[i], err = os.ReadFile(out); err != nil {
			t.Fatal(err)
		}
		// The archive reads back as the image, under its tag.
		back, err := tarball.ImageFromPath(out, &tag)
		if err != nil {
			t.Fatal(err)
		}
		if d := digest(t, back); d != digests[i] {
			t.Errorf("the archive's image has digest %v, the built one %v", d, digests[i])
		}
	}
	if digests[0] != digests[1] {
		t.Errorf("two builds of the same input: digests %v and %v", digests[0], digests[1])
	}
	if string(archives[0]) != string(archives[1]) {
		t.Error("two builds of the same input wrote different archives")
	}
	if digests[2] == digests[0] {
		t.Error("another creation time gave the same digest: the time is not in the image")
	}
}

// TestBuildRefuses checks that bad input is refused with a message that
// names it.
func TestBuildRefuses(t *testing.T) {
	dir := fakeBinDir(t)
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no version", func(c *Config) { c.Version = "" }, "no version"},
		{"no revision", func(c *Config) { c.Revision = "" }, "no revision"},
		{"no time", func(c *Config) { c.Created = time.Time{} }, "no creation time"},
		{"missing binary", func(c *Config) { c.BinDir = t.TempDir() }, "weftd: open"},
		{"not ELF", func(c *Config) {
			c.BinDir = t.TempDir()
			os.WriteFile(filepath.Join(c.BinDir, "weftd"), []byte("#!/bin/sh\n"), 0o755)
		}, "weftd is not an ELF executable"},
		{"unknown architecture", func(c *Config) { c.Arch = "mips" }, `architecture "mips" is not one of`},
		{"other architecture", func(c *Config) { c.Arch = otherArch }, "built for"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(dir)
			tc.edit(&cfg)
			_, err := Build(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestCheckBinaryDynamic checks that a dynamic executable is refused.
func TestCheckBinaryDynamic(t *testing.T) {
	for _, p := range []string{"/bin/sh", "/usr/bin/env"} {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		err := CheckBinary(p, "")
		if err == nil || !strings.Contains(err.Error(), "has a program interpreter") {
			t.Errorf("CheckBinary(%s): %v, want a program interpreter reported", p, err)
		}
		return
	}
	t.Skip("no dynamic system binary (/bin/sh, /usr/bin/env) to check against")
}
