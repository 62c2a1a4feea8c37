// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e || bench

package e2e

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	code := m.Run()
	CleanupTestBinaries()
	os.Exit(code)
}
