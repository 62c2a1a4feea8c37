// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package e2etest is the test kit of the e2e topology library: what only
// tests need (a cluster that skips unless root and tears itself down at
// cleanup, binaries built once per test process). The library itself, which
// the lab binary links, does not import testing; this package does.
package e2etest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/e2e"
)

// RequireRoot skips the test unless it runs as root with the ip command
// (iproute2) at hand.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skipf("skipping %s: needs root (network namespaces, veth, bridge, raw sockets); run the e2e tier as root", tb.Name())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		tb.Skipf("skipping %s: needs the ip command (iproute2) to run processes in namespaces", tb.Name())
	}
}

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// BinDir returns the directory with the binaries under test:
// $WEFT_BIN_DIR when set, otherwise a temporary directory the first call
// builds them into (shared by every test of the process; remove it with
// [CleanupBinaries] from TestMain). A binary that fails to build is
// reported when a test needs it.
func BinDir() (string, error) {
	binOnce.Do(func() {
		if d := os.Getenv(e2e.BinDirEnv); d != "" {
			binDir, binErr = filepath.Abs(d)
			return
		}
		binDir, binErr = os.MkdirTemp("", "weft-e2e-bin-")
		if binErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		binErr = e2e.BuildBinaries(ctx, binDir)
	})
	return binDir, binErr
}

// CleanupBinaries removes the directory [BinDir] built, if it built one.
func CleanupBinaries() {
	if binDir != "" && os.Getenv(e2e.BinDirEnv) == "" {
		os.RemoveAll(binDir)
	}
}
