// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package backend

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a goroutine outlives its tests: the
// privileged tests do their netlink work through netnstest.Do, which
// runs it on a goroutine locked to a thread in the test's namespace.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
