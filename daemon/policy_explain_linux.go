// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"github.com/weftnet/weft/daemon/policy"
	"github.com/weftnet/weft/daemon/policy/nft"
)

// dropCounterID is the counter ID of the table's default deny rule for a
// direction and family.
func dropCounterID(egress bool, f policy.Family) string { return nft.DropCounter(egress, f) }
