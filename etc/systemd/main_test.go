// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package systemd

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/weftnet/weft/e2e/e2etest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	e2etest.CleanupBinaries()
	// The privilege tests run weftd and the CNI plugin as processes: the
	// goroutines that copy their output must end with them.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
