// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2etest

import (
	"context"
	"testing"
	"time"

	"github.com/weftnet/weft/e2e"
)

// NewCluster builds a cluster for a test: it skips unless root, builds or
// finds the binaries, logs progress through tb, and registers a cleanup
// that prints the daemons' logs when the test failed and then tears
// everything down.
func NewCluster(tb testing.TB, opts e2e.Options) *e2e.Cluster {
	tb.Helper()
	RequireRoot(tb)
	if opts.BinDir == "" {
		dir, err := BinDir()
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
	c, err := e2e.New(ctx, opts)
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
