// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build (e2e || bench) && linux

package e2e_test

import (
	"os"
	"testing"

	"github.com/weftnet/weft/e2e/e2etest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	e2etest.CleanupBinaries()
	os.Exit(code)
}
