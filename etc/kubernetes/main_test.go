// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kubernetes

import (
	"os"
	"testing"

	"github.com/weftnet/weft/e2e"
)

func TestMain(m *testing.M) {
	code := m.Run()
	e2e.CleanupTestBinaries()
	os.Exit(code)
}
