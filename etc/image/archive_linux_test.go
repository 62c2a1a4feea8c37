// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/weftnet/weft/e2e/netnstest"
)

const repoRoot = "../.."

// output runs a program and returns its trimmed standard output, failing
// the test with its standard error when it fails.
func output(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s%s", strings.Join(cmd.Args, " "), err, out, stderr.Bytes())
	}
	return strings.TrimSpace(string(out))
}

// makeImage runs make image with its output in dir and returns the
// archive's path.
func makeImage(t *testing.T, mk, dir string) string {
	t.Helper()
	archive := filepath.Join(dir, "weft-image.tar")
	cmd := exec.Command(mk, "-C", repoRoot, "--no-print-directory", "image", "BIN="+dir, "IMAGE_ARCHIVE="+archive)
	// Not the settings of a make this test may run under.
	for _, e := range os.Environ() {
		if k, _, _ := strings.Cut(e, "="); !slices.Contains([]string{"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "WEFT_BIN_DIR", "SOURCE_DATE_EPOCH", "VERSION"}, k) {
			cmd.Env = append(cmd.Env, e)
		}
	}
	start := time.Now()
	t.Logf("make image: %s (%.1f s)", output(t, cmd), time.Since(start).Seconds())
	return archive
}

// skopeoConfig is the part of an image config skopeo inspect --config
// prints that the test checks.
type skopeoConfig struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Created      string `json:"created"`
	Config       struct {
		User       string
		Entrypoint []string
		Env        []string
		Labels     map[string]string
	} `json:"config"`
	RootFS struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// TestImageArchive builds the image twice with make image, then reads it
// with skopeo, which did not write it: the two archives give the same
// digest; the config has weftd as entrypoint, the non-root user and the
// labels of this commit; the archive holds the image under its tag; and
// the binaries extracted from its layer run.
func TestImageArchive(t *testing.T) {
	skopeo := netnstest.RequireTool(t, "skopeo", "skopeo")
	mk := netnstest.RequireTool(t, "make", "make")
	git := netnstest.RequireTool(t, "git", "git")
	gitOut := func(args ...string) string {
		cmd := exec.Command(git, args...)
		cmd.Dir = repoRoot
		return output(t, cmd)
	}
	version := gitOut("describe", "--tags", "--always", "--dirty")
	revision := gitOut("rev-parse", "HEAD")
	epoch, err := strconv.ParseInt(gitOut("log", "-1", "--format=%ct"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	tag := "ghcr.io/weftnet/weft:" + version

	archives := []string{makeImage(t, mk, t.TempDir()), makeImage(t, mk, t.TempDir())}
	var digests, sums []string
	for _, a := range archives {
		var inspect struct{ Digest string }
		if err := json.Unmarshal([]byte(output(t, exec.Command(skopeo, "inspect", "docker-archive:"+a))), &inspect); err != nil {
			t.Fatal(err)
		}
		digests = append(digests, inspect.Digest)
		b, err := os.ReadFile(a)
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(b)
		sums = append(sums, hex.EncodeToString(s[:]))
		t.Logf("%s: %d bytes, sha256 %s, skopeo digest %s", a, len(b), sums[len(sums)-1], inspect.Digest)
	}
	if !strings.HasPrefix(digests[0], "sha256:") || digests[0] != digests[1] {
		t.Errorf("two builds of one commit: digests %v, want two equal ones", digests)
	}
	if sums[0] != sums[1] {
		t.Errorf("two builds of one commit wrote different archives: sha256 %v", sums)
	}

	var cfg skopeoConfig
	if err := json.Unmarshal([]byte(output(t, exec.Command(skopeo, "inspect", "--config", "docker-archive:"+archives[0]))), &cfg); err != nil {
		t.Fatal(err)
	}
	created := time.Unix(epoch, 0).UTC().Format(time.RFC3339)
	if cfg.Architecture != runtime.GOARCH || cfg.OS != "linux" || cfg.Created != created || cfg.RootFS.Type != "layers" || len(cfg.RootFS.DiffIDs) != 1 {
		t.Errorf("config: architecture %q, os %q, created %q, rootfs %q with %d layers; want %s, linux, %s, layers with 1",
			cfg.Architecture, cfg.OS, cfg.Created, cfg.RootFS.Type, len(cfg.RootFS.DiffIDs), runtime.GOARCH, created)
	}
	if got := cfg.Config.Entrypoint; !slices.Equal(got, []string{"/usr/local/bin/weftd"}) {
		t.Errorf("entrypoint %q, want [/usr/local/bin/weftd]", got)
	}
	if uid, _, _ := strings.Cut(cfg.Config.User, ":"); uid == "" || uid == "0" || uid == "root" {
		t.Errorf("user %q, want a non-root default user", cfg.Config.User)
	}
	wantLabels := map[string]string{
		"org.opencontainers.image.source":   "https://github.com/weftnet/weft",
		"org.opencontainers.image.version":  version,
		"org.opencontainers.image.revision": revision,
		"org.opencontainers.image.created":  created,
		"org.opencontainers.image.title":    "weft",
		"org.opencontainers.image.licenses": "Apache-2.0",
	}
	if diff := cmp.Diff(wantLabels, cfg.Config.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}

	// The archive holds the image under make's tag, and only that: skopeo
	// finds it by that name and not by another.
	dir := filepath.Join(t.TempDir(), "image")
	output(t, exec.Command(skopeo, "copy", "-q", "docker-archive:"+archives[0]+":"+tag, "dir:"+dir))
	if out, err := exec.Command(skopeo, "copy", "-q", "docker-archive:"+archives[0]+":"+tag+"-other", "dir:"+t.TempDir()).CombinedOutput(); err == nil {
		t.Errorf("skopeo found the image under a tag make did not give it:\n%s", out)
	}

	// The layer skopeo copied out, extracted.
	var manifest struct {
		Layers []struct{ Digest string }
	}
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err == nil {
		err = json.Unmarshal(b, &manifest)
	}
	if err != nil || len(manifest.Layers) != 1 {
		t.Fatalf("skopeo's manifest.json: %v, %d layers, want 1:\n%s", err, len(manifest.Layers), b)
	}
	rootfs := t.TempDir()
	files := extract(t, filepath.Join(dir, strings.TrimPrefix(manifest.Layers[0].Digest, "sha256:")), rootfs)
	wantFiles := []string{"opt/weft/bin/weft", "usr/local/bin/weft-install-cni", "usr/local/bin/weftctl", "usr/local/bin/weftd"}
	if !slices.Equal(files, wantFiles) {
		t.Errorf("the layer holds the files %v, want %v", files, wantFiles)
	}

	run := func(env []string, stdin string, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(rootfs, name), args...)
		cmd.Env, cmd.Stdin = env, strings.NewReader(stdin)
		return output(t, cmd)
	}
	helpCmd := exec.Command(filepath.Join(rootfs, "usr/local/bin/weftd"), "--help")
	if out, err := helpCmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "-etcd-endpoints") {
		t.Errorf("weftd --help: %v, output lacks -etcd-endpoints:\n%s", err, out)
	}
	if out := run(nil, "", "usr/local/bin/weftctl", "version"); out != version {
		t.Errorf("weftctl version: %q, want %q", out, version)
	}
	if out := run(nil, "", "usr/local/bin/weft-install-cni", "--version"); out != version {
		t.Errorf("weft-install-cni --version: %q, want %q", out, version)
	}
	var cniVersion struct {
		SupportedVersions []string `json:"supportedVersions"`
	}
	out := run([]string{"CNI_COMMAND=VERSION"}, `{"cniVersion": "1.0.0"}`, "opt/weft/bin/weft")
	if err := json.Unmarshal([]byte(out), &cniVersion); err != nil || !slices.Contains(cniVersion.SupportedVersions, "1.0.0") {
		t.Errorf("weft VERSION: %v: %s", err, out)
	}

	// The image's installer puts the image's plugin onto a host.
	host := t.TempDir()
	for _, d := range []string{"opt/cni/bin", "etc/cni/net.d"} {
		if err := os.MkdirAll(filepath.Join(host, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conflist, err := filepath.Abs(filepath.Join(repoRoot, "etc/cni/10-weft.conflist"))
	if err != nil {
		t.Fatal(err)
	}
	t.Log(run([]string{
		"WEFT_CNI_BIN=" + filepath.Join(rootfs, "opt/weft/bin/weft"), "WEFT_CNI_CONFLIST=" + conflist,
		"WEFT_CNI_BIN_DIR=" + filepath.Join(host, "opt/cni/bin"), "WEFT_CNI_CONF_DIR=" + filepath.Join(host, "etc/cni/net.d"),
	}, "", "usr/local/bin/weft-install-cni"))
	for src, dst := range map[string]string{
		filepath.Join(rootfs, "opt/weft/bin/weft"): filepath.Join(host, "opt/cni/bin/weft"),
		conflist: filepath.Join(host, "etc/cni/net.d/10-weft.conflist"),
	} {
		a, errA := os.ReadFile(src)
		b, errB := os.ReadFile(dst)
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("%s was not installed as %s (%v, %v)", src, dst, errA, errB)
		}
	}
}

// extract unpacks the layer blob (a tar file, gzip-compressed or not: skopeo
// copies a docker-archive's layers out uncompressed) into dir and returns
// the names of its regular files, checking that each entry is owned by
// root and stays inside dir.
func extract(t *testing.T, blob, dir string) []string {
	t.Helper()
	f, err := os.Open(blob)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	var magic [2]byte
	if _, err := f.ReadAt(magic[:], 0); err == nil && magic == [2]byte{0x1f, 0x8b} {
		if r, err = gzip.NewReader(f); err != nil {
			t.Fatalf("layer %s: %v", blob, err)
		}
	}
	tr := tar.NewReader(r)
	var files []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, h.Name)
		if !strings.HasPrefix(p, dir+string(filepath.Separator)) || h.Uid != 0 || h.Gid != 0 {
			t.Fatalf("layer entry %q (uid %d, gid %d): outside the root or not root's", h.Name, h.Uid, h.Gid)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			files = append(files, h.Name)
			var b []byte
			if b, err = io.ReadAll(tr); err == nil {
				err = os.WriteFile(p, b, os.FileMode(h.Mode).Perm())
			}
		default:
			t.Fatalf("layer entry %q: unexpected type %c", h.Name, h.Typeflag)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(files)
	return files
}
