// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build (e2e || bench) && linux

package e2e_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/weftnet/weft/e2e/e2etest"
)

// TestMain removes the binaries the tests built, then fails the run when a
// goroutine of the harness (process waiters, log readers, packet captures)
// outlived the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	e2etest.CleanupBinaries()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left after the tests:", err)
			code = 1
		}
	}
	os.Exit(code)
}
