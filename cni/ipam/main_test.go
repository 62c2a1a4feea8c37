// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package ipam

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a goroutine outlives its tests: the
// tests allocate from many goroutines at once.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
