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
	"sync"
	"time"
)

// TB is the part of testing.TB the harness uses (testing.TB satisfies it;
// the package does not import testing, so that weftctl can link it).
type TB interface {
	Helper()
	Logf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Cleanup(func())
	Failed() bool
	Name() string
}

// RequireRoot skips the test unless it runs as root.
func RequireRoot(tb TB) {
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

// TestBinDir returns the directory with the binaries under test:
// $WEFT_BIN_DIR when set, otherwise a temporary directory the first call
// builds them into (shared by every test of the process; remove it with
// [CleanupTestBinaries] from TestMain). A binary that fails to build is
// reported when a test needs it.
func TestBinDir() (string, error) {
	binOnce.Do(func() {
		if d := os.Getenv(BinDirEnv); d != "" {
			binDir, binErr = filepath.Abs(d)
			return
		}
		binDir, binErr = os.MkdirTemp("", "weft-e2e-bin-")
		if binErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		binErr = BuildBinaries(ctx, binDir)
	})
	return binDir, binErr
}

// CleanupTestBinaries removes the directory TestBinDir built, if it built
// one.
func CleanupTestBinaries() {
	if binDir != "" && os.Getenv(BinDirEnv) == "" {
		os.RemoveAll(binDir)
	}
}

// NewForTest builds a cluster for a test: it skips unless root, builds or
// finds the binaries, logs progress through tb, and registers a cleanup
// that prints the daemons' logs when the test failed and then tears
// everything down.
func NewForTest(tb TB, opts Options) *Cluster {
	tb.Helper()
	RequireRoot(tb)
	if opts.BinDir == "" {
		dir, err := TestBinDir()
		if err != nil {
			// Go on: the error names the binary and is reported below
			// only if this cluster needs it.
			tb.Logf("building binaries: %v", err)
		}
		opts.BinDir = dir
	}
	if opts.Logf == nil {
		opts.Logf = tb.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := New(ctx, opts)
	if err != nil {
		tb.Fatalf("build cluster: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("%s", c.Logs(60))
		}
		if err := c.Close(); err != nil {
			tb.Logf("teardown: %v", err)
		}
	})
	return c
}

// Logs returns the last lines of etcd's and every weftd's log.
func (c *Cluster) Logs(lines int) string {
	var b strings.Builder
	if c.Etcd != nil {
		data, _ := os.ReadFile(c.Etcd.LogFile)
		fmt.Fprintf(&b, "----- etcd (%s) -----\n%s\n", c.Etcd.LogFile, tail(data, lines))
	}
	for _, n := range c.Nodes() {
		if n.Proc() == nil {
			continue // weftd never started here
		}
		fmt.Fprintf(&b, "----- weftd on %s (%s) -----\n%s\n", n.Name, n.LogFile, n.LogTail(lines))
	}
	return b.String()
}

// Eventually calls cond every interval until it returns nil or timeout
// passes, and returns its last error.
func Eventually(timeout, interval time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		time.Sleep(interval)
	}
}
