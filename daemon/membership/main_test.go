// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package membership

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a goroutine outlives its tests: every
// member a test creates must be shut down, and Shutdown must wait for
// what it started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
