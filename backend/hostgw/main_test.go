// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package hostgw

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a goroutine outlives its tests: the
// privileged tests run the backend through netnstest.Do, a goroutine
// locked to a thread in a test namespace.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
