// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package antispoof

import (
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
)

// The rules of "bridge weft", in nft syntax. Every drop is counted; the
// comment names the reason [Counters] reports.
//
//	chain prerouting {  # type filter hook prerouting priority -200; policy accept
//	  iifname != @pod-ports accept                       # not a pod port
//	  iifname . ether saddr != @pod-mac counter drop     # ether-saddr
//	  ether type ip goto pod-ipv4
//	  ether type ip6 goto pod-ipv6
//	  ether type arp goto pod-arp
//	  counter drop                                       # ethertype (VLAN tags, anything else)
//	}
//	chain pod-ipv4 {
//	  iifname . ether saddr . ip saddr != @pod-ipv4 counter drop          # ipv4-saddr
//	}
//	chain pod-arp {
//	  iifname . arp saddr ether != @pod-mac counter drop                   # arp-sha
//	  arp saddr ip != 0.0.0.0 iifname . ether saddr . arp saddr ip != @pod-ipv4 counter drop  # arp-spa
//	}
//	chain pod-ipv6 {
//	  ip6 saddr :: icmpv6 type nd-neighbor-solicit accept                  # DAD
//	  ip6 saddr :: icmpv6 type mld2-listener-report accept                 # MLD before an address
//	  ip6 saddr :: counter drop                                            # ipv6-unspecified
//	  iifname . ether saddr . ip6 saddr != @pod-ipv6 counter drop          # ipv6-saddr
//	  icmpv6 type nd-router-advert counter drop                            # router-advert
//	  icmpv6 type nd-redirect counter drop                                 # redirect
//	  icmpv6 type nd-neighbor-advert iifname . ether saddr . (target) != @pod-ipv6 counter drop  # nd-target
//	  icmpv6 type 135-136, first option a source/target link-layer address:
//	    iifname . (its address) != @pod-mac counter drop                   # nd-lladdr
//	}
//
// ICMPv6 is found by the transport header the kernel located past any
// extension headers (meta l4proto), so an extension header does not hide
// a neighbour advertisement. The ARP rule takes the sender addresses at
// the offsets of Ethernet/IPv4 ARP, the only kind the kernel's ARP code
// accepts on an Ethernet device. Link-layer address options other than
// the first of a neighbour message are not checked (Linux sends the
// address option first); its target address and Ethernet source are.

// Chain names.
const (
	chainPrerouting = "prerouting"
	chainIPv4       = "pod-ipv4"
	chainIPv6       = "pod-ipv6"
	chainARP        = "pod-arp"
)

// commentPrefix starts the comment of every rule of the table; the rest
// is the reason counted.
const commentPrefix = "weft antispoof v1: "

// Registers: a concatenation is loaded into consecutive 32-bit registers
// from NFT_REG32_00, each part rounded up to 4 bytes: the port name (16
// bytes), then the MAC (6, so 8), then the address.
const (
	regPort = 8  // NFT_REG32_00
	regMAC  = 12 // NFT_REG32_04
	regIP   = 14 // NFT_REG32_06
	reg1    = 1
)

var (
	ethIPv4 = []byte{0x08, 0x00}
	ethIPv6 = []byte{0x86, 0xdd}
	ethARP  = []byte{0x08, 0x06}
)

const (
	icmpv6RA       = 134
	icmpv6NS       = 135
	icmpv6NA       = 136
	icmpv6Redirect = 137
	icmpv6MLD2     = 143
	protoICMPv6    = 58
)

func tableRef() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyBridge}
}

// sets returns the sets of the table, in the order elements are added
// (a port's other elements before the port, so that a half-applied list
// never checks a port against nothing; a batch is atomic anyway).
func sets(t *nftables.Table) []*nftables.Set {
	mk := func(name string, types ...nftables.SetDatatype) *nftables.Set {
		if len(types) == 1 {
			return &nftables.Set{Table: t, Name: name, KeyType: types[0]}
		}
		return &nftables.Set{Table: t, Name: name, KeyType: nftables.MustConcatSetType(types...), Concatenation: true}
	}
	return []*nftables.Set{
		mk(SetMAC, nftables.TypeIFName, nftables.TypeEtherAddr),
		mk(SetIPv4, nftables.TypeIFName, nftables.TypeEtherAddr, nftables.TypeIPAddr),
		mk(SetIPv6, nftables.TypeIFName, nftables.TypeEtherAddr, nftables.TypeIP6Addr),
		mk(SetPorts, nftables.TypeIFName),
	}
}

// setOf returns the name of the set e belongs to.
func setOf(e Element) string {
	switch {
	case e.IP.Is4():
		return SetIPv4
	case e.IP.Is6():
		return SetIPv6
	case e.MAC != [6]byte{}:
		return SetMAC
	}
	return SetPorts
}

// rule is one rule of the table: its reason (the comment) and expressions.
type rule struct {
	reason string
	exprs  []expr.Any
}

// chainRules returns the rules of each chain, in order.
func chainRules() map[string][]rule {
	drop := func(reason string, e ...expr.Any) rule {
		return rule{reason, append(e, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})}
	}
	accept := func(reason string, e ...expr.Any) rule {
		return rule{reason, append(e, &expr.Verdict{Kind: expr.VerdictAccept})}
	}
	gotoChain := func(reason, chain string, e ...expr.Any) rule {
		return rule{reason, append(e, &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain})}
	}
	icmpv6Type := func(op expr.CmpOp, t byte) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{protoICMPv6}},
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
			&expr.Cmp{Op: op, Register: reg1, Data: []byte{t}},
		}
	}
	unspecified6 := []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: make([]byte, 16)},
	}
	return map[string][]rule{
		chainPrerouting: {
			accept("not a pod port",
				&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: regPort},
				&expr.Lookup{SourceRegister: regPort, SetName: SetPorts, Invert: true}),
			drop("ether-saddr", append(portMAC(), lookup(SetMAC))...),
			gotoChain("ipv4", chainIPv4, etherType(ethIPv4)...),
			gotoChain("ipv6", chainIPv6, etherType(ethIPv6)...),
			gotoChain("arp", chainARP, etherType(ethARP)...),
			drop("ethertype"),
		},
		chainIPv4: {
			drop("ipv4-saddr", append(portMAC(),
				&expr.Payload{DestRegister: regIP, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
				lookup(SetIPv4))...),
		},
		chainARP: {
			drop("arp-sha",
				&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: regPort},
				&expr.Payload{DestRegister: regMAC, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 6},
				lookup(SetMAC)),
			drop("arp-spa", cat([]expr.Any{
				&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 14, Len: 4},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)},
			}, portMAC(), []expr.Any{
				&expr.Payload{DestRegister: regIP, Base: expr.PayloadBaseNetworkHeader, Offset: 14, Len: 4},
				lookup(SetIPv4),
			})...),
		},
		chainIPv6: {
			accept("dad", cat(unspecified6, icmpv6Type(expr.CmpOpEq, icmpv6NS))...),
			accept("mld-unspecified", cat(unspecified6, icmpv6Type(expr.CmpOpEq, icmpv6MLD2))...),
			drop("ipv6-unspecified", unspecified6...),
			drop("ipv6-saddr", append(portMAC(),
				&expr.Payload{DestRegister: regIP, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16},
				lookup(SetIPv6))...),
			drop("router-advert", icmpv6Type(expr.CmpOpEq, icmpv6RA)...),
			drop("redirect", icmpv6Type(expr.CmpOpEq, icmpv6Redirect)...),
			drop("nd-target", cat(icmpv6Type(expr.CmpOpEq, icmpv6NA), portMAC(), []expr.Any{
				&expr.Payload{DestRegister: regIP, Base: expr.PayloadBaseTransportHeader, Offset: 8, Len: 16},
				lookup(SetIPv6),
			})...),
			drop("nd-lladdr", cat(icmpv6Type(expr.CmpOpGte, icmpv6NS), []expr.Any{
				&expr.Cmp{Op: expr.CmpOpLte, Register: reg1, Data: []byte{icmpv6NA}},
				// The first option: type 1 (source) or 2 (target
				// link-layer address), length 1 (8 bytes).
				&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 24, Len: 1},
				&expr.Cmp{Op: expr.CmpOpGte, Register: reg1, Data: []byte{1}},
				&expr.Cmp{Op: expr.CmpOpLte, Register: reg1, Data: []byte{2}},
				&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 25, Len: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{1}},
				&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: regPort},
				&expr.Payload{DestRegister: regMAC, Base: expr.PayloadBaseTransportHeader, Offset: 26, Len: 6},
				lookup(SetMAC),
			})...),
		},
	}
}

// dropReasons returns the reason of every drop rule, in chain order.
func dropReasons() []string {
	all := chainRules()
	var out []string
	for _, name := range chainOrder {
		for _, r := range all[name] {
			if v, ok := r.exprs[len(r.exprs)-1].(*expr.Verdict); ok && v.Kind == expr.VerdictDrop {
				out = append(out, r.reason)
			}
		}
	}
	return out
}

// chainOrder lists the chains, regular chains first (the base chain jumps
// to them).
var chainOrder = []string{chainIPv4, chainIPv6, chainARP, chainPrerouting}

// portMAC loads "iifname . ether saddr" into the concatenation registers.
func portMAC() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: regPort},
		&expr.Payload{DestRegister: regMAC, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6},
	}
}

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func etherType(t []byte) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: t},
	}
}

// lookup: the concatenation in the registers is not in set.
func lookup(set string) expr.Any {
	return &expr.Lookup{SourceRegister: regPort, SetName: set, Invert: true}
}

func comment(reason string) []byte {
	return userdata.AppendString(nil, userdata.TypeComment, commentPrefix+reason)
}

// reasonOf returns the reason in a rule's comment, and whether it is one
// of this package's.
func reasonOf(r *nftables.Rule) (string, bool) {
	c, ok := userdata.GetString(r.UserData, userdata.TypeComment)
	if !ok {
		return "", false
	}
	reason, ok := cutPrefix(c, commentPrefix)
	return reason, ok
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) < len(p) || s[:len(p)] != p {
		return "", false
	}
	return s[len(p):], true
}
