// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build !linux

package daemon

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/weftnet/weft/cni/gate"
	"github.com/weftnet/weft/daemon/policy"
)

func errPolicyUnsupported() error {
	return fmt.Errorf("network policy (nftables table inet weft-policy): weftd runs on Linux only, not %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

// applyPolicyTable needs Linux's nftables.
func applyPolicyTable(*policy.State, []gate.Pending, bool) error { return errPolicyUnsupported() }

// removePolicyTable needs Linux's nftables.
func removePolicyTable() error { return errPolicyUnsupported() }

// removeGate needs Linux's nftables.
func removeGate() error { return errPolicyUnsupported() }

// listHeld needs Linux's nftables.
func listHeld() ([]gate.Pending, error) { return nil, errPolicyUnsupported() }

// readPolicyCounters needs Linux's nftables.
func readPolicyCounters() (map[string]uint64, error) { return nil, errPolicyUnsupported() }

// fixedCounterIDs: none without the table.
func fixedCounterIDs() []string { return nil }
