// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build ignore

// Genpins writes this module's replace lines: one per staging module of
// the k8s.io/kubernetes version that go.mod requires, pinned to the
// matching v0 release (k8s.io/kubernetes v1.37.2 → k8s.io/api v0.37.2).
//
// k8s.io/kubernetes's own go.mod replaces its staging modules (k8s.io/api,
// k8s.io/apiserver, ...) with directories of its repository; a module
// that depends on it does not see those lines, and without pins of its
// own the build resolves them to v0.0.0, which does not exist. Run it
// after changing the required version, from this directory:
//
//	go run genpins.go && go mod tidy
//
// It reads k8s.io/kubernetes's go.mod from the module cache (downloading
// it through the Go module proxy when missing), drops the replace lines
// it wrote before and writes the new ones with `go mod edit`.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

const kubernetes = "k8s.io/kubernetes"

// modFile is the part of `go mod edit -json` output genpins reads.
type modFile struct {
	Require []struct{ Path, Version string }
	Replace []struct {
		Old struct{ Path, Version string }
		New struct{ Path, Version string }
	}
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "genpins:", err)
		os.Exit(1)
	}
}

func run() error {
	self, err := readMod("go.mod")
	if err != nil {
		return err
	}
	version := ""
	for _, r := range self.Require {
		if r.Path == kubernetes {
			version = r.Version
		}
	}
	if version == "" {
		return fmt.Errorf("go.mod does not require %s", kubernetes)
	}
	staging, err := stagingVersion(version)
	if err != nil {
		return err
	}
	upstream, err := downloadMod(kubernetes + "@" + version)
	if err != nil {
		return err
	}
	theirs, err := readMod(upstream)
	if err != nil {
		return err
	}
	var paths []string
	for _, r := range theirs.Replace {
		if strings.HasPrefix(r.New.Path, "./staging/") {
			paths = append(paths, r.Old.Path)
		}
	}
	if len(paths) == 0 {
		return fmt.Errorf("%s@%s: no replace lines into ./staging/ in its go.mod", kubernetes, version)
	}
	// Drop every earlier pin of a k8s.io module to a k8s.io module (the
	// ones this program writes), then write the new set.
	args := []string{"mod", "edit"}
	for _, r := range self.Replace {
		if strings.HasPrefix(r.Old.Path, "k8s.io/") && r.New.Path == r.Old.Path {
			args = append(args, "-dropreplace="+r.Old.Path)
		}
	}
	for _, p := range paths {
		args = append(args, fmt.Sprintf("-replace=%s=%s@%s", p, p, staging))
	}
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("go mod edit: %w: %s", err, out)
	}
	fmt.Printf("pinned %d staging modules of %s@%s to %s\n", len(paths), kubernetes, version, staging)
	return nil
}

// stagingVersion maps a k8s.io/kubernetes version to its staging modules'
// version: v1.N.P → v0.N.P.
func stagingVersion(v string) (string, error) {
	rest, ok := strings.CutPrefix(v, "v1.")
	if !ok {
		return "", fmt.Errorf("%s version %q: want v1.N.P", kubernetes, v)
	}
	return "v0." + rest, nil
}

// readMod parses a go.mod file with `go mod edit -json`.
func readMod(path string) (*modFile, error) {
	out, err := exec.Command("go", "mod", "edit", "-json", path).Output()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, exitDetail(err))
	}
	var m modFile
	if err := json.Unmarshal(out, &m); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return &m, nil
}

// downloadMod returns the path of module@version's go.mod in the module
// cache. It runs outside this module (whose graph cannot load before the
// pins exist).
func downloadMod(modVersion string) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", modVersion)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s: %w", modVersion, exitDetail(err))
	}
	var info struct{ GoMod, Error string }
	if err := json.Unmarshal(out, &info); err != nil {
		return "", fmt.Errorf("go mod download %s: %w", modVersion, err)
	}
	if info.Error != "" || info.GoMod == "" {
		return "", fmt.Errorf("go mod download %s: %s", modVersion, info.Error)
	}
	return info.GoMod, nil
}

// exitDetail adds a failed command's standard error to its error.
func exitDetail(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
	}
	return err
}
