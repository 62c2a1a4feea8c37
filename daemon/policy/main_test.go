// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package policy_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a goroutine outlives its tests: the
// packet tests run echo servers and probes on goroutines, some locked to
// threads in the tests' namespaces.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
