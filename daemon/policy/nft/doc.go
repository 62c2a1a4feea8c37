// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package nft is the kernel side of weft's network-policy engine: on Linux
// it makes the kernel hold exactly a compiled [policy.State] in weft's own
// nftables table ([Apply]), reads the rules' counters back ([Counters]) and
// checks that bridged pod traffic reaches the filter ([CheckKernel]). It is
// kept apart from package policy so that programs that only validate or
// evaluate policies (weftctl) do not link nftables.
//
// Kernel state owned: one table, "inet weft-policy", replaced in a single
// netlink transaction on every apply:
//
//	table inet weft-policy {
//	  set <name> { type ipv4_addr|ipv6_addr; elements = { pod addresses } }  # one per selector use
//	  chain forward {        # type filter hook forward priority filter; policy accept
//	    ct state established,related accept        # replies of allowed connections
//	    icmpv6 neighbour discovery, hop limit 255 accept
//	    jump egress
//	    jump ingress
//	  }
//	  chain egress {         # sources: this node's pods
//	    <one rule per policy rule, peer and port> return   # allowed: go on to ingress
//	    [ip saddr @egress-isolated4 limit rate R/second log group G]  # with a drop log (State.DropLog)
//	    ip  saddr @egress-isolated4 drop
//	    ip6 saddr @egress-isolated6 drop
//	  }
//	  chain ingress {        # destinations: this node's pods
//	    <one rule per policy rule, peer and port> return   # allowed
//	    ip  daddr @ingress-isolated4 drop
//	    ip6 daddr @ingress-isolated6 drop
//	  }
//	}
//
// Pod addresses live only in sets, so the number of rules grows with the
// policies' rules, never with pods × policies. Ingress is enforced on the
// node hosting the destination pod (the ingress sets hold only local pods),
// egress on the node hosting the source. Packets between pods on one
// bridge reach the forward hook only through br_netfilter
// (net.bridge.bridge-nf-call-iptables=1); [CheckKernel] reports when that
// is not so, and weft then reports policy as not enforced.
//
// The packet tests of this package live in package policy's tests, beside
// the oracle they compare the kernel's verdicts with.
package nft
