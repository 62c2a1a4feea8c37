// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"github.com/weftnet/weft/daemon/policy"
	"github.com/weftnet/weft/daemon/policy/nft"
)

// applyPolicyTable replaces the policy table with st in one transaction.
func applyPolicyTable(st *policy.State) error {
	c, err := nft.NewConn()
	if err != nil {
		return err
	}
	return nft.Apply(c, st)
}

// removePolicyTable deletes the policy table if it exists.
func removePolicyTable() error {
	c, err := nft.NewConn()
	if err != nil {
		return err
	}
	return nft.Remove(c)
}

// readPolicyCounters reads the packet counters of the policy table's
// rules by counter ID (none when the table does not exist).
func readPolicyCounters() (map[string]uint64, error) {
	c, err := nft.NewConn()
	if err != nil {
		return nil, err
	}
	cs, err := nft.Counters(c)
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64, len(cs))
	for id, n := range cs {
		out[id] = n.Packets
	}
	return out, nil
}

// fixedCounterIDs are the counter IDs of the table's rules that do not
// come from a policy.
func fixedCounterIDs() []string {
	return []string{
		nft.CounterEstablished, nft.CounterND,
		nft.DropCounter(false, policy.IPv4), nft.DropCounter(false, policy.IPv6),
		nft.DropCounter(true, policy.IPv4), nft.DropCounter(true, policy.IPv6),
	}
}
