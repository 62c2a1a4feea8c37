// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package nft

import (
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/daemon/policy"
)

// DropLogSnaplen is how many bytes of a dropped packet go to userspace:
// the IP header (IPv6: 40 bytes) and the transport ports.
const DropLogSnaplen = 128

// dropLogExprs is the rule in front of a default deny that hands what it
// is about to drop to NFLOG group l.Group, at most l.Rate packets a
// second, with the drop rule's counter ID as the prefix:
//
//	ip saddr @egress-isolated4 limit rate R/second burst R packets log group G prefix "egress default deny ipv4" snaplen 128 queue-threshold 1
//
// It has no verdict: the packet goes on to the drop rule. A kernel `log`
// to the system log would go nowhere in a node's network namespace (unless
// net.netfilter.nf_log_all_netns is set); NFLOG reaches weftd in any.
func dropLogExprs(l policy.DropLog, f policy.Family, egress bool, set *nftables.Set) []expr.Any {
	exprs := append(nfproto(f), loadAddr(f, egress)...)
	rate := max(l.Rate, 1)
	return append(exprs, lookup(set),
		&expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(rate), Unit: expr.LimitTimeSecond, Burst: rate},
		&expr.Log{
			Key:        1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX | 1<<unix.NFTA_LOG_SNAPLEN | 1<<unix.NFTA_LOG_QTHRESHOLD,
			Group:      l.Group,
			Data:       []byte(DropCounter(egress, f)),
			Snaplen:    DropLogSnaplen,
			QThreshold: 1,
		})
}
