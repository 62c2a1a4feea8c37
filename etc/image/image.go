// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// A File is a binary the image holds.
type File struct {
	// Path is where the image holds it.
	Path string
	// Binary is its name in make build's output directory.
	Binary string
}

// Files lists the image's files. The CNI plugin is kept out of
// /usr/local/bin: the init container copies it onto the host
// (weft-install-cni), the image never runs it.
var Files = []File{
	{"/usr/local/bin/weftd", "weftd"},
	{"/usr/local/bin/weftctl", "weftctl"},
	{"/usr/local/bin/weft-install-cni", "weft-install-cni"},
	{"/opt/weft/bin/weft", "weft"},
}

const (
	// Entrypoint is the program a container of the image runs.
	Entrypoint = "/usr/local/bin/weftd"
	// User is the image's default user: not root. weftd itself needs root
	// with NET_ADMIN and NET_RAW (Kubernetes grants added capabilities
	// only to uid 0), and weft-install-cni writes host directories, so
	// the DaemonSet sets runAsUser: 0 on both containers; the image's
	// own default keeps anything else run from it (weftctl, --help)
	// unprivileged.
	User = "65532:65532"
	// Source is the repository the image is built from.
	Source = "https://github.com/weftnet/weft"
	// Path is the image's PATH: weftctl and weft-install-cni can be run
	// by name (kubectl exec ... -- weftctl status).
	Path = "/usr/local/bin"
)

// OCI annotation keys the image sets as labels.
const (
	LabelSource   = "org.opencontainers.image.source"
	LabelVersion  = "org.opencontainers.image.version"
	LabelRevision = "org.opencontainers.image.revision"
	LabelCreated  = "org.opencontainers.image.created"
	LabelTitle    = "org.opencontainers.image.title"
	LabelLicenses = "org.opencontainers.image.licenses"
)

// Config says what to build the image from.
type Config struct {
	// BinDir holds the binaries make build writes (see [Files]).
	BinDir string
	// Arch is the image's architecture, as GOARCH names it; every binary
	// must be a static ELF executable for it.
	Arch string
	// Version and Revision are the version (git describe) and the commit
	// the binaries were built from.
	Version, Revision string
	// Created is the time every time stamp of the image records: the
	// commit's time, so that a rebuild gives the same image.
	Created time.Time
}

// elfMachines maps the architectures the image may be built for to their
// ELF machine.
var elfMachines = map[string]elf.Machine{
	"amd64":   elf.EM_X86_64,
	"arm64":   elf.EM_AARCH64,
	"ppc64le": elf.EM_PPC64,
	"riscv64": elf.EM_RISCV,
	"s390x":   elf.EM_S390,
}

// CheckBinary returns why the file at p is not a static ELF executable for
// arch ("" for any architecture), or nil.
func CheckBinary(p, arch string) error {
	f, err := elf.Open(p)
	var fe *elf.FormatError
	switch {
	case errors.As(err, &fe) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%s is not an ELF executable: %w", p, err)
	case err != nil:
		return fmt.Errorf("%s: %w", p, err)
	}
	defer f.Close()
	var why []string
	if arch != "" {
		m, ok := elfMachines[arch]
		switch {
		case !ok:
			why = append(why, fmt.Sprintf("architecture %q is not one of %v", arch, slices.Sorted(mapKeys(elfMachines))))
		case f.Machine != m:
			why = append(why, fmt.Sprintf("built for %v, not %s", f.Machine, arch))
		}
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		why = append(why, fmt.Sprintf("not an executable (%v)", f.Type))
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			why = append(why, "has a program interpreter")
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	for _, l := range libs {
		why = append(why, "needs "+l)
	}
	if len(why) > 0 {
		return fmt.Errorf("%s: %s", p, strings.Join(why, ", "))
	}
	return nil
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Labels returns the image's labels for cfg.
func Labels(cfg Config) map[string]string {
	return map[string]string{
		LabelSource:   Source,
		LabelVersion:  cfg.Version,
		LabelRevision: cfg.Revision,
		LabelCreated:  cfg.Created.UTC().Format(time.RFC3339),
		LabelTitle:    "weft",
		LabelLicenses: "Apache-2.0",
	}
}

// Build checks cfg and the binaries and returns the image.
func Build(cfg Config) (v1.Image, error) {
	var bad []string
	if cfg.Version == "" {
		bad = append(bad, "no version")
	}
	if cfg.Revision == "" {
		bad = append(bad, "no revision")
	}
	if cfg.Created.IsZero() || cfg.Created.Unix() < 0 {
		bad = append(bad, "no creation time")
	}
	for _, f := range Files {
		if err := CheckBinary(filepath.Join(cfg.BinDir, f.Binary), cfg.Arch); err != nil {
			bad = append(bad, err.Error())
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("build image: %s", strings.Join(bad, "; "))
	}
	created := cfg.Created.UTC().Truncate(time.Second)
	blob, err := layerBlob(cfg.BinDir, created)
	if err != nil {
		return nil, fmt.Errorf("build image layer: %w", err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(blob)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("build image layer: %w", err)
	}
	var names []string
	for _, f := range Files {
		names = append(names, f.Binary)
	}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: cfg.Arch,
		OS:           "linux",
		Created:      v1.Time{Time: created},
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			Entrypoint: []string{Entrypoint},
			User:       User,
			Env:        []string{"PATH=" + Path},
			WorkingDir: "/",
			Labels:     Labels(cfg),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("build image config: %w", err)
	}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "weft-image: " + strings.Join(names, ", "),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	return img, nil
}

// layerBlob returns the gzip-compressed layer: the directories leading to
// each file, then the files, all owned by root and stamped with created.
func layerBlob(binDir string, created time.Time) ([]byte, error) {
	var files []File
	dirs := map[string]bool{}
	for _, f := range Files {
		files = append(files, f)
		for d := path.Dir(f.Path); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	hdr := func(name string, typ byte, mode, size int64) *tar.Header {
		return &tar.Header{
			Name: name, Typeflag: typ, Mode: mode, Size: size, ModTime: created,
			Uid: 0, Gid: 0, Format: tar.FormatUSTAR,
		}
	}
	for _, d := range slices.Sorted(mapKeys(dirs)) {
		if err := tw.WriteHeader(hdr(strings.TrimPrefix(d, "/")+"/", tar.TypeDir, 0o755, 0)); err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(binDir, f.Binary))
		if err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(hdr(strings.TrimPrefix(f.Path, "/"), tar.TypeReg, 0o755, int64(len(b)))); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := errors.Join(tw.Close(), zw.Close()); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteArchive writes img, tagged tag, to the file out as a docker-archive
// tarball: written to a temporary file beside out, then renamed over it.
func WriteArchive(out string, tag name.Tag, img v1.Image) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
	if err != nil {
		return fmt.Errorf("write image archive: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tarball.Write(tag, img, tmp); err != nil {
		return fmt.Errorf("write image archive %s: %w", out, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("write image archive: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write image archive: %w", err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return fmt.Errorf("write image archive: %w", err)
	}
	return nil
}
