// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kubetest

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a goroutine outlives its tests: a
// process reaper, a client connection or a namespace thread left behind
// by a Cluster.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
