// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Masquerade: weft owns one nftables table, "inet weft":
//
//	table inet weft {
//	  chain postrouting {            # type nat hook postrouting priority srcnat
//	    meta mark & 0x4000 == 0x4000 return           # kube-proxy's: leave alone
//	    ip saddr $net ip daddr $net return            # pod ↔ pod: keep source IPs
//	    ip saddr != $net ip daddr $subnet return      # outside → our pods: no NAT
//	    ip saddr $net ip daddr 224.0.0.0/4 return     # multicast: no NAT
//	    ip saddr $net masquerade fully-random         # cluster → outside
//	    ip saddr != $net ip daddr $net masquerade fully-random  # host → remote pods
//	    (the same for ip6 with $net6, $subnet6, ff00::/8)
//	  }
//	  chain forward {                # type filter hook forward priority filter; policy accept
//	    ip saddr $net accept
//	    ip daddr $net accept
//	  }
//	}
//
// The table is replaced in one netlink transaction (add table, delete
// table, add table with chains and rules, committed as one batch): at no
// moment is the old table gone without the new one in place. Note that an
// accept here does not override a drop in another table's forward hook
// (every base chain on a hook sees the packet): forwardDropChains detects
// such tables so weftd can warn.

const (
	kubeProxyMark  = 0x4000
	postroutingChn = "postrouting"
	forwardChn     = "forward"
)

func masqTableRef() *nftables.Table {
	return &nftables.Table{Name: masqTable, Family: nftables.TableFamilyINet}
}

// applyMasq replaces weft's table with the rules for mc, atomically.
func applyMasq(c *nftables.Conn, mc masqConfig) error {
	t := masqTableRef()
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	accept := nftables.ChainPolicyAccept
	post := c.AddChain(&nftables.Chain{
		Name: postroutingChn, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource,
	})
	fwd := c.AddChain(&nftables.Chain{
		Name: forwardChn, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept,
	})
	for _, r := range masqRules(mc) {
		c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: r})
	}
	for _, r := range forwardRules(mc) {
		c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: r})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("install nftables table inet %s: %w", masqTable, err)
	}
	return nil
}

// removeMasq deletes weft's table if it exists.
func removeMasq(c *nftables.Conn) error {
	t := masqTableRef()
	c.AddTable(t) // makes the delete succeed when the table is absent
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("remove nftables table inet %s: %w", masqTable, err)
	}
	return nil
}

// family describes one address family's rule parameters.
type family struct {
	proto     byte // NFPROTO_IPV4 / NFPROTO_IPV6
	saddrOff  uint32
	daddrOff  uint32
	addrLen   uint32
	multicast netip.Prefix
}

var (
	fam4 = family{unix.NFPROTO_IPV4, 12, 16, 4, netip.MustParsePrefix("224.0.0.0/4")}
	fam6 = family{unix.NFPROTO_IPV6, 8, 24, 16, netip.MustParsePrefix("ff00::/8")}
)

func masqRules(mc masqConfig) [][]expr.Any {
	rules := [][]expr.Any{markReturn()}
	for _, f := range []struct {
		fam    family
		net    netip.Prefix
		subnet netip.Prefix
	}{{fam4, mc.Network, mc.Subnet}, {fam6, mc.IPv6Network, mc.IPv6Subnet}} {
		if !f.net.IsValid() {
			continue
		}
		fm, n := f.fam, f.net
		ret := &expr.Verdict{Kind: expr.VerdictReturn}
		masq := &expr.Masq{FullyRandom: true}
		rules = append(rules, cat(proto(fm), match(fm.saddrOff, fm.addrLen, n, true), match(fm.daddrOff, fm.addrLen, n, true), counted(ret)))
		if f.subnet.IsValid() {
			rules = append(rules, cat(proto(fm), match(fm.saddrOff, fm.addrLen, n, false), match(fm.daddrOff, fm.addrLen, f.subnet, true), counted(ret)))
		}
		rules = append(rules,
			cat(proto(fm), match(fm.saddrOff, fm.addrLen, n, true), match(fm.daddrOff, fm.addrLen, fm.multicast, true), counted(ret)),
			cat(proto(fm), match(fm.saddrOff, fm.addrLen, n, true), counted(masq)),
			cat(proto(fm), match(fm.saddrOff, fm.addrLen, n, false), match(fm.daddrOff, fm.addrLen, n, true), counted(masq)),
		)
	}
	return rules
}

func forwardRules(mc masqConfig) [][]expr.Any {
	var rules [][]expr.Any
	for _, f := range []struct {
		fam family
		net netip.Prefix
	}{{fam4, mc.Network}, {fam6, mc.IPv6Network}} {
		if !f.net.IsValid() {
			continue
		}
		acc := &expr.Verdict{Kind: expr.VerdictAccept}
		rules = append(rules,
			cat(proto(f.fam), match(f.fam.saddrOff, f.fam.addrLen, f.net, true), counted(acc)),
			cat(proto(f.fam), match(f.fam.daddrOff, f.fam.addrLen, f.net, true), counted(acc)),
		)
	}
	return rules
}

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func counted(v expr.Any) []expr.Any { return []expr.Any{&expr.Counter{}, v} }

// markReturn: meta mark & 0x4000 == 0x4000 return.
func markReturn() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(kubeProxyMark), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(kubeProxyMark)},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictReturn},
	}
}

// proto: meta nfproto ipv4|ipv6.
func proto(f family) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{f.proto}},
	}
}

// match: the address at offset in the network header is (in) or is not
// (!in) inside p.
func match(offset, length uint32, p netip.Prefix, in bool) []expr.Any {
	p = p.Masked()
	mask := make([]byte, length)
	for i := 0; i < p.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	op := expr.CmpOpEq
	if !in {
		op = expr.CmpOpNeq
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: length},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: length, Mask: mask, Xor: make([]byte, length)},
		&expr.Cmp{Op: op, Register: 1, Data: p.Addr().AsSlice()},
	}
}

// forwardDropChains lists base chains of other tables on the forward hook
// whose policy is drop (Docker, firewalld), as "family table chain".
func forwardDropChains(c *nftables.Conn) ([]string, error) {
	chains, err := c.ListChains()
	if err != nil {
		return nil, fmt.Errorf("list nftables chains: %w", err)
	}
	var out []string
	for _, ch := range chains {
		if ch.Table == nil || ch.Hooknum == nil || ch.Policy == nil {
			continue
		}
		if ch.Table.Name == masqTable && ch.Table.Family == nftables.TableFamilyINet {
			continue
		}
		if *ch.Hooknum != *nftables.ChainHookForward || *ch.Policy != nftables.ChainPolicyDrop {
			continue
		}
		out = append(out, fmt.Sprintf("%s %s %s", familyName(ch.Table.Family), ch.Table.Name, ch.Name))
	}
	return out, nil
}

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyBridge:
		return "bridge"
	}
	return fmt.Sprintf("family-%d", f)
}

// forwardDropAdvice is the warning for chains found by forwardDropChains.
func forwardDropAdvice(chains []string, mc masqConfig) string {
	var nets []string
	for _, n := range []netip.Prefix{mc.Network, mc.IPv6Network} {
		if n.IsValid() {
			nets = append(nets, n.String())
		}
	}
	var fixes []string
	for _, n := range nets {
		ipt := "iptables"
		if strings.Contains(n, ":") {
			ipt = "ip6tables"
		}
		fixes = append(fixes, fmt.Sprintf("%[1]s -I FORWARD -s %[2]s -j ACCEPT && %[1]s -I FORWARD -d %[2]s -j ACCEPT", ipt, n))
	}
	return fmt.Sprintf("forwarded traffic is dropped by default in nftables chain(s) %s (a FORWARD policy of drop, e.g. from Docker or firewalld): "+
		"pod traffic between nodes may be dropped; allow the cluster network, e.g. %s (with Docker, insert into DOCKER-USER instead of FORWARD; with firewalld, add the cluster network to a trusted zone)",
		strings.Join(chains, ", "), strings.Join(fixes, "; "))
}

// masqIntact reports whether weft's table has both chains with as many
// rules as mc gives (a flushed table or a deleted rule shows; a rule
// edited in place does not).
func masqIntact(c *nftables.Conn, mc masqConfig) bool {
	t := masqTableRef()
	post, err := c.GetRules(t, &nftables.Chain{Name: postroutingChn, Table: t})
	if err != nil {
		return false
	}
	fwd, err := c.GetRules(t, &nftables.Chain{Name: forwardChn, Table: t})
	return err == nil && len(post) == len(masqRules(mc)) && len(fwd) == len(forwardRules(mc))
}

// repairMasq re-installs weft's table for mc when it is gone or changed
// (someone ran nft flush ruleset); it reports whether it did. When nftables
// cannot be reached it does nothing.
func repairMasq(mc masqConfig) (bool, error) {
	conn, err := nftables.New()
	if err != nil || masqIntact(conn, mc) {
		return false, nil
	}
	if err := applyMasq(conn, mc); err != nil {
		return false, err
	}
	return true, nil
}

// installMasq installs weft's table for mc (or, when on is false, removes
// it) in the current network namespace, and looks for other tables'
// forward-drop policies: advice says what to do about them ("" if none).
func installMasq(on bool, mc masqConfig) (advice string, err error) {
	conn, err := nftables.New()
	if err == nil {
		if on {
			err = applyMasq(conn, mc)
		} else {
			err = removeMasq(conn)
		}
	}
	if conn != nil {
		if drops, derr := forwardDropChains(conn); derr != nil {
			err = errors.Join(err, derr)
		} else if len(drops) > 0 {
			advice = forwardDropAdvice(drops, mc)
		}
	}
	return advice, err
}
