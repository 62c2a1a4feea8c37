// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build !linux

package daemon

import "github.com/weftnet/weft/daemon/policy"

// dropCounterID: no table, no counter.
func dropCounterID(bool, policy.Family) string { return "" }
