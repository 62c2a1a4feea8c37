// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package gate

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/cni/nftexpr"
)

// Every function works in the network namespace of the calling thread
// (the node's), unless given a Conn opened elsewhere.

// families are the gate's two tables, the inet one first: it is the one
// [List] reads (both change in the same transactions).
var families = []nftables.TableFamily{nftables.TableFamilyINet, nftables.TableFamilyBridge}

func tableRef(f nftables.TableFamily) *nftables.Table {
	return &nftables.Table{Name: Table, Family: f}
}

// setRefs returns the two pending sets of f's table, IPv4 first.
func setRefs(f nftables.TableFamily) [2]*nftables.Set {
	t := tableRef(f)
	return [2]*nftables.Set{
		{Table: t, Name: Set4, KeyType: nftables.TypeIPAddr},
		{Table: t, Name: Set6, KeyType: nftables.TypeIP6Addr},
	}
}

func setOf(f nftables.TableFamily, a netip.Addr) *nftables.Set {
	s := setRefs(f)
	if a.Is4() {
		return s[0]
	}
	return s[1]
}

// Hold adds addrs to the pending sets, tagged with the attachment's port
// and MAC, in one transaction. held is false, and nothing is held, when
// the gate does not exist: no weftd enforces policy on this node, so
// nothing would release the pod.
func Hold(port, mac string, addrs []netip.Addr) (held bool, err error) {
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return false, fmt.Errorf("nftables: %w", err)
	}
	defer c.CloseLasting()
	// A failed batch costs the kernel milliseconds: look first.
	fams, err := existing(c)
	if err != nil || len(fams) == 0 {
		return false, err
	}
	for _, f := range fams {
		for _, a := range addrs {
			if err := c.SetAddElements(setOf(f, a), []nftables.SetElement{{Key: a.AsSlice(), Comment: Tag(port, mac)}}); err != nil {
				return false, fmt.Errorf("queue pending element %s: %w", a, err)
			}
		}
	}
	err = c.Flush()
	switch {
	case errors.Is(err, unix.ENOENT):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("hold %v until weftd applies the policy (nftables table %s): %w", addrs, Table, err)
	}
	return true, nil
}

// Held returns those of addrs the gate holds: none when the gate does not
// exist. CHECK reports a pod whose ADD returned and that is still held.
func Held(addrs []netip.Addr) ([]netip.Addr, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return pending(c, addrs)
}

// ErrTimeout is wrapped by [Wait] when the addresses are still held at
// its deadline.
var ErrTimeout = errors.New("still held")

// recheck bounds how long [Wait] trusts the event stream alone.
const recheck = 20 * time.Millisecond

// Wait returns once none of addrs is pending (weftd released them, or the
// gate is gone), or an error wrapping [ErrTimeout] after timeout. It looks
// at the sets after every nftables transaction in the namespace (it
// listens for the kernel's end-of-transaction notices) and every recheck
// interval in any case.
func Wait(addrs []netip.Addr, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	mon, merr := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{Groups: 1 << (unix.NFNLGRP_NFTABLES - 1)})
	if merr == nil {
		defer mon.Close()
	}
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	defer c.CloseLasting()
	for {
		held, err := pending(c, addrs)
		if err != nil {
			return err
		}
		if len(held) == 0 {
			return nil
		}
		now := time.Now()
		if !now.Before(deadline) {
			return fmt.Errorf("%v %w in nftables table %s after %s", held, ErrTimeout, Table, timeout)
		}
		next := now.Add(recheck)
		if next.After(deadline) {
			next = deadline
		}
		if mon == nil {
			time.Sleep(time.Until(next))
			continue
		}
		waitTransaction(mon, next)
	}
}

// waitTransaction returns at the end of the next nftables transaction, at
// a receive error (such as an overrun), or at until.
func waitTransaction(mon *netlink.Conn, until time.Time) {
	newgen := netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWGEN)
	if err := mon.SetReadDeadline(until); err != nil {
		time.Sleep(time.Until(until))
		return
	}
	for {
		msgs, err := mon.Receive()
		if err != nil {
			return
		}
		for _, m := range msgs {
			if m.Header.Type == newgen {
				return
			}
		}
	}
}

// pending returns those of addrs that are in the pending sets.
func pending(c *nftables.Conn, addrs []netip.Addr) ([]netip.Addr, error) {
	ps, err := List(c)
	if err != nil {
		return nil, err
	}
	var held []netip.Addr
	for _, a := range addrs {
		for _, p := range ps {
			if p.Addr == a {
				held = append(held, a)
				break
			}
		}
	}
	return held, nil
}

// List returns the pending elements (none when the gate does not exist).
// Elements with a foreign comment come back with an empty Port.
func List(c *nftables.Conn) ([]Pending, error) {
	ps, err := list(c)
	if err != nil {
		// The library hides the kernel's error number: a table removed
		// meanwhile shows as gone here.
		if fams, terr := existing(c); terr == nil && len(fams) == 0 {
			return nil, nil
		}
	}
	return ps, err
}

// existing returns the families whose gate table exists.
func existing(c *nftables.Conn) ([]nftables.TableFamily, error) {
	ts, err := c.ListTables() // every family in one dump
	if err != nil {
		return nil, fmt.Errorf("list nftables tables: %w", err)
	}
	var out []nftables.TableFamily
	for _, f := range families {
		for _, t := range ts {
			if t.Name == Table && t.Family == f {
				out = append(out, f)
			}
		}
	}
	return out, nil
}

func list(c *nftables.Conn) ([]Pending, error) {
	fams, err := existing(c)
	if err != nil || len(fams) == 0 {
		return nil, err
	}
	sets, err := c.GetSets(tableRef(fams[0]))
	if err != nil {
		return nil, fmt.Errorf("list sets of nftables table %s: %w", Table, err)
	}
	var out []Pending
	for _, want := range setRefs(fams[0]) {
		if !hasSet(sets, want) {
			continue
		}
		es, err := c.GetSetElements(want)
		if err != nil {
			return nil, fmt.Errorf("list nftables set %s %s: %w", Table, want.Name, err)
		}
		for _, e := range es {
			a, ok := netip.AddrFromSlice(e.Key)
			if !ok {
				continue
			}
			p := Pending{Addr: a}
			p.Port, p.MAC, _ = parseTag(e.Comment)
			out = append(out, p)
		}
	}
	return out, nil
}

func hasSet(sets []*nftables.Set, want *nftables.Set) bool {
	for _, s := range sets {
		if s.Name == want.Name && s.KeyType.Bytes == want.KeyType.Bytes {
			return true
		}
	}
	return false
}

// Release deletes the pending elements of port (at DEL, and when ADD
// fails); none, or no gate, is no error.
func Release(port string) ([]Pending, error) {
	return ReleaseWhere(func(p string) bool { return p == port })
}

// ReleaseWhere deletes the pending elements whose port match selects (GC:
// the ports that are gone), and returns them.
func ReleaseWhere(match func(port string) bool) ([]Pending, error) {
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	defer c.CloseLasting()
	ps, err := List(c)
	if err != nil {
		return nil, err
	}
	var del []Pending
	for _, p := range ps {
		if p.Port != "" && match(p.Port) {
			del = append(del, p)
		}
	}
	if len(del) == 0 {
		return nil, nil
	}
	fams, err := existing(c)
	if err != nil {
		return nil, err
	}
	if err := queueDelete(c, fams, del); err != nil {
		return nil, err
	}
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("release held addresses (nftables table %s): %w", Table, err)
	}
	return del, nil
}

// queueDelete queues the deletion of ps's elements. Each is added first,
// in the same transaction: one deleted meanwhile (by DEL, or weftd)
// would otherwise fail the whole transaction, and adding an element that
// exists changes nothing.
func queueDelete(c *nftables.Conn, fams []nftables.TableFamily, ps []Pending) error {
	for _, f := range fams {
		for _, p := range ps {
			e := []nftables.SetElement{{Key: p.Addr.AsSlice()}}
			if err := c.SetAddElements(setOf(f, p.Addr), e); err != nil {
				return fmt.Errorf("queue pending element %s: %w", p.Addr, err)
			}
			if err := c.SetDeleteElements(setOf(f, p.Addr), e); err != nil {
				return fmt.Errorf("queue release of %s: %w", p.Addr, err)
			}
		}
	}
	return nil
}

// QueueAdmit queues on c what makes the gate complete (both tables, each
// set missing or of the wrong type, the chains with their rules) and the
// release of admit, for weftd to flush in the transaction that installs
// the policy state compiled with admit's pods. Existing sets and their
// elements are left alone.
func QueueAdmit(c *nftables.Conn, admit []Pending) error {
	have, err := existing(c)
	if err != nil {
		return err
	}
	accept := nftables.ChainPolicyAccept
	for _, f := range families {
		t := tableRef(f)
		var sets []*nftables.Set
		if slices.Contains(have, f) {
			if sets, err = c.GetSets(t); err != nil {
				return fmt.Errorf("list sets of nftables table %s: %w", Table, err)
			}
		}
		c.AddTable(t)
		refs := setRefs(f)
		for _, s := range refs {
			if hasSet(sets, s) {
				continue
			}
			for _, old := range sets {
				if old.Name == s.Name { // of another type: made again
					c.DelSet(old)
				}
			}
			if err := c.AddSet(s, nil); err != nil {
				return fmt.Errorf("queue set %s: %w", s.Name, err)
			}
		}
		for _, h := range hooks[f] {
			ch := c.AddChain(&nftables.Chain{Name: h.name, Table: t, Type: nftables.ChainTypeFilter, Hooknum: h.hook, Priority: h.prio, Policy: &accept})
			c.FlushChain(ch)
			for _, r := range rules(f, refs, h.src) {
				c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: r.exprs, UserData: userdata.AppendString(nil, userdata.TypeComment, r.id)})
			}
		}
	}
	return queueDelete(c, families, admit)
}

// hooks are the base chains of each table.
var hooks = map[nftables.TableFamily][]struct {
	name string
	hook *nftables.ChainHook
	prio *nftables.ChainPriority
	src  bool // also match the source address
}{
	nftables.TableFamilyINet: {{ChainForward, nftables.ChainHookForward, nftables.ChainPriorityRef(-10), true}},
	nftables.TableFamilyBridge: {
		{ChainPrerouting, nftables.ChainHookPrerouting, nftables.ChainPriorityRef(-190), true}, // after anti-spoofing (-200)
		{ChainOutput, nftables.ChainHookOutput, nftables.ChainPriorityFilter, false},
	},
}

// Remove queues on c the deletion of the gate's tables, if they exist.
func Remove(c *nftables.Conn) {
	for _, f := range families {
		t := tableRef(f)
		c.AddTable(t)
		c.DelTable(t)
	}
}

type rule struct {
	id    string
	exprs []expr.Any
}

// rules are a chain's rules (sets: as queued, with their batch IDs):
// neighbour discovery passes (so that a pod's neighbours resolve at once
// when it is released), then every packet to (and, with src, from) a
// pending address is dropped and counted.
func rules(f nftables.TableFamily, sets [2]*nftables.Set, src bool) []rule {
	rs := []rule{{"icmpv6 neighbour discovery", neighbourDiscovery(f)}}
	for i, s := range sets {
		off, n, v := uint32(12), uint32(4), 4
		if i == 1 {
			off, n, v = 8, 16, 6
		}
		for _, isSrc := range []bool{true, false} {
			if isSrc && !src {
				continue
			}
			o, dir := off, "source"
			if !isSrc {
				o, dir = off+n, "destination"
			}
			rs = append(rs, rule{fmt.Sprintf("held ipv%d %s", v, dir), []expr.Any{
				protocol(f, v)[0], protocol(f, v)[1],
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: o, Len: n},
				&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
				&expr.Counter{},
				&expr.Verdict{Kind: expr.VerdictDrop},
			}})
		}
	}
	return rs
}

// neighbourDiscovery: ICMPv6 neighbour discovery accept, as in the policy
// table (package cni/nftexpr).
func neighbourDiscovery(f nftables.TableFamily) []expr.Any {
	p := protocol(f, 6)
	return nftexpr.NeighbourDiscovery(p[0], p[1])
}

// protocol matches IP version v: by the netfilter protocol in the inet
// table, by the Ethernet type in the bridge table.
func protocol(f nftables.TableFamily, v int) [2]expr.Any {
	if f == nftables.TableFamilyBridge {
		eth := uint16(unix.ETH_P_IP)
		if v == 6 {
			eth = unix.ETH_P_IPV6
		}
		return [2]expr.Any{
			&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(eth)},
		}
	}
	nf := byte(unix.NFPROTO_IPV4)
	if v == 6 {
		nf = unix.NFPROTO_IPV6
	}
	return [2]expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nf}},
	}
}
