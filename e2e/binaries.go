// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Names of the binaries the library runs (binPackages maps them to the
// packages they are built from).
const (
	// BinWeftd is the node daemon.
	BinWeftd = "weftd"
	// BinWeftctl is the operator tool.
	BinWeftctl = "weftctl"
	// BinCNI is the CNI plugin.
	BinCNI = "weft"
	// BinWeftEtcd is the test etcd server (e2e/cmd/weft-etcd).
	BinWeftEtcd = "weft-etcd"
	// BinWeftLab is the lab (e2e/cmd/weft-lab).
	BinWeftLab = "weft-lab"
)

var binPackages = map[string]string{
	BinWeftd:    "./daemon/cmd/weftd",
	BinWeftctl:  "./daemon/cmd/weftctl",
	BinCNI:      "./cni/cmd/weft",
	BinWeftEtcd: "./e2e/cmd/weft-etcd",
	BinWeftLab:  "./e2e/cmd/weft-lab",
}

// BinDirEnv names the environment variable that points at prebuilt
// binaries (the Makefile sets it to ./bin).
const BinDirEnv = "WEFT_BIN_DIR"

// BuildBinaries builds the named binaries (all of them when names is empty)
// into dir with `go build`, from the module that contains this package's
// source (found with `go env GOMOD` in the working directory). It returns
// one error per binary that failed, joined, so that the caller can go on
// with the ones that built.
func BuildBinaries(ctx context.Context, dir string, names ...string) error {
	if len(names) == 0 {
		names = []string{BinWeftd, BinWeftctl, BinCNI, BinWeftEtcd, BinWeftLab}
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create binary dir: %w", err)
	}
	var errs []string
	for _, n := range names {
		pkg, ok := binPackages[n]
		if !ok {
			return fmt.Errorf("unknown binary %q", n)
		}
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, n), pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			errs = append(errs, fmt.Sprintf("go build %s: %v: %s", pkg, err, strings.TrimSpace(string(out))))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("build binaries:\n%s", strings.Join(errs, "\n"))
	}
	return nil
}

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the weft module (go env GOMOD is empty)")
	}
	return filepath.Dir(mod), nil
}

// checkBinary returns the path of a binary in dir, or an error telling how
// to build it.
func checkBinary(dir, name string) (string, error) {
	p := filepath.Join(dir, name)
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("binary %s not found in %s (build it: go build -o %s %s)", name, dir, p, binPackages[name])
	}
	if fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s is not executable", p)
	}
	return p, nil
}
