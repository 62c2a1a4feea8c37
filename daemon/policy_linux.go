// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"fmt"

	"github.com/weftnet/weft/cni/gate"
	"github.com/weftnet/weft/daemon/policy"
	"github.com/weftnet/weft/daemon/policy/nft"
)

// applyPolicyTable replaces the policy table with st in one transaction.
// With withGate, the same transaction makes the gate complete (package
// cni/gate) and releases admit, whose pods st was compiled with; without,
// it removes the gate. (nft.Apply flushes what is queued on its Conn
// before it as part of its own transaction.)
func applyPolicyTable(st *policy.State, admit []gate.Pending, withGate bool) error {
	c, err := nft.NewConn()
	if err != nil {
		return err
	}
	if withGate {
		if err := gate.QueueAdmit(c, admit); err != nil {
			return err
		}
	} else {
		gate.Remove(c)
	}
	return nft.Apply(c, st)
}

// removePolicyTable deletes the policy table and the gate, if they exist,
// in one transaction.
func removePolicyTable() error {
	c, err := nft.NewConn()
	if err != nil {
		return err
	}
	gate.Remove(c)
	return nft.Remove(c)
}

// removeGate deletes the gate, if it exists: nothing on this node would
// release a pod held there.
func removeGate() error {
	c, err := nft.NewConn()
	if err != nil {
		return err
	}
	gate.Remove(c)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("remove nftables table %s: %w", gate.Table, err)
	}
	return nil
}

// listHeld returns the addresses new pods hold at the gate.
func listHeld() ([]gate.Pending, error) {
	c, err := nft.NewConn()
	if err != nil {
		return nil, err
	}
	return gate.List(c)
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
