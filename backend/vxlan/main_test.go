// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package vxlan

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a goroutine outlives its tests: the
// privileged tests run the backend through netnstest.Do (a goroutine
// locked to a thread in a test namespace) and start traffic senders and
// TCP servers of their own.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
