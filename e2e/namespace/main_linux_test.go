// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package namespace

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a goroutine outlives its tests: the
// package runs functions on goroutines locked to a thread in another
// network namespace, and each must end before its caller returns.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
