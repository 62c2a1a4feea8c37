// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import "github.com/weftnet/weft/e2e/netnstest"

// privileged reports whether the privileged tests run (root, and not the
// unit tier).
func privileged() bool { return netnstest.Privileged() }
