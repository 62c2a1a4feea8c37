// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kube

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a goroutine outlives its tests: an
// informer of a watch or keep-alive that did not stop with its context,
// or a client connection left open.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
