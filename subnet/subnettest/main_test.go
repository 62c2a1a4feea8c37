// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package subnettest

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a goroutine outlives its tests: the
// fake store is used from several goroutines at once, and its watches and
// keep-alives must end when their context does.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
