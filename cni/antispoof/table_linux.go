// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package antispoof

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Every function here works in the network namespace of the calling
// thread (the node's), with one netlink transaction per change: the
// kernel applies a batch whole or not at all, and serialises batches, so
// concurrent plugin processes and weftd never see half a change.

// maxRetries bounds the retries of a batch that lost a race (an element
// it deletes was deleted meanwhile).
const maxRetries = 5

// state is what the kernel holds of the table.
type state struct {
	exists bool
	intact bool // every chain has exactly its rules
	elems  []Element
}

// readState lists the table's rules and elements. withElems false skips
// the elements.
func readState(c *nftables.Conn, withElems bool) (state, error) {
	t := tableRef()
	// Dumps filtered by a name that does not exist answer with nothing
	// rather than an error: look at what exists first.
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyBridge)
	if err != nil {
		return state{}, fmt.Errorf("list nftables bridge chains: %w", err)
	}
	have := map[string]*nftables.Chain{}
	for _, ch := range chains {
		if ch.Table != nil && ch.Table.Name == TableName {
			have[ch.Name] = ch
		}
	}
	st := state{exists: len(have) > 0, intact: true}
	want := chainRules()
	for _, name := range chainOrder {
		ch, ok := have[name]
		if !ok || (name == chainPrerouting) != (ch.Hooknum != nil) {
			st.intact = false
			continue
		}
		rules, err := c.GetRules(t, ch)
		if err != nil {
			return state{}, fmt.Errorf("list rules of bridge %s %s: %w", TableName, name, err)
		}
		if !sameRules(rules, want[name]) {
			st.intact = false
		}
	}
	if !st.exists {
		return st, nil
	}
	got, err := c.GetSets(t)
	if err != nil {
		return state{}, fmt.Errorf("list sets of bridge %s: %w", TableName, err)
	}
	haveSet := map[string]bool{}
	for _, s := range got {
		haveSet[s.Name] = true
	}
	mac, v4, v6 := sets(t)
	for _, s := range []*nftables.Set{mac, v4, v6} {
		if !haveSet[s.Name] {
			st.intact = false
			continue
		}
		if !withElems {
			continue
		}
		es, err := c.GetSetElements(s)
		if err != nil {
			return state{}, fmt.Errorf("list set %s: %w", s.Name, err)
		}
		for _, e := range es {
			if el, ok := decodeElement(s.Name, e.Key); ok {
				st.elems = append(st.elems, el)
			}
		}
	}
	return st, nil
}

// sameRules reports whether got carries exactly the reasons of want, in
// order (a flushed chain, a deleted rule or a foreign rule shows).
func sameRules(got []*nftables.Rule, want []rule) bool {
	if len(got) != len(want) {
		return false
	}
	for i, r := range got {
		if reason, ok := reasonOf(r); !ok || reason != want[i].reason {
			return false
		}
	}
	return true
}

// queueTable queues the table, its sets and chains (adding what is
// missing: existing ones and set elements are kept) and, when rules is
// true, the replacement of every chain's rules. It returns the sets.
func queueTable(c *nftables.Conn, rules bool) (mac, v4, v6 *nftables.Set, err error) {
	t := c.AddTable(tableRef())
	mac, v4, v6 = sets(t)
	for _, s := range []*nftables.Set{mac, v4, v6} {
		if err := c.AddSet(s, nil); err != nil {
			return nil, nil, nil, fmt.Errorf("queue set %s: %w", s.Name, err)
		}
	}
	accept := nftables.ChainPolicyAccept
	chains := map[string]*nftables.Chain{}
	for _, name := range chainOrder {
		ch := &nftables.Chain{Name: name, Table: t}
		if name == chainPrerouting {
			ch.Type = nftables.ChainTypeFilter
			ch.Hooknum = nftables.ChainHookPrerouting
			ch.Priority = nftables.ChainPriorityRef(-200) // NF_BR_PRI_FILTER_BRIDGED
			ch.Policy = &accept
		}
		chains[name] = c.AddChain(ch)
	}
	if rules {
		want := chainRules()
		for _, name := range chainOrder {
			c.FlushChain(chains[name])
			for _, r := range want[name] {
				c.AddRule(&nftables.Rule{Table: t, Chain: chains[name], Exprs: r.exprs, UserData: comment(r.reason)})
			}
		}
	}
	return mac, v4, v6, nil
}

// queueElements queues adding (del false) or deleting es.
func queueElements(c *nftables.Conn, mac, v4, v6 *nftables.Set, es []Element, del bool) error {
	by := map[*nftables.Set][]nftables.SetElement{}
	for _, e := range es {
		s := mac
		switch {
		case e.IP.Is4():
			s = v4
		case e.IP.Is6():
			s = v6
		}
		by[s] = append(by[s], nftables.SetElement{Key: encodeElement(e)})
	}
	for _, s := range []*nftables.Set{mac, v4, v6} {
		if len(by[s]) == 0 {
			continue
		}
		op := c.SetAddElements
		if del {
			op = c.SetDeleteElements
		}
		if err := op(s, by[s]); err != nil {
			return fmt.Errorf("queue elements of set %s: %w", s.Name, err)
		}
	}
	return nil
}

// encodeElement returns e's key: the port name padded to 16 bytes, the MAC
// padded to 8, then the address.
func encodeElement(e Element) []byte {
	k := make([]byte, 24, 40)
	copy(k, e.Port)
	copy(k[16:], e.MAC[:])
	if e.IP.IsValid() {
		k = append(k, e.IP.AsSlice()...)
	}
	return k
}

// decodeElement is the inverse of encodeElement for an element of set.
func decodeElement(set string, k []byte) (Element, bool) {
	want := map[string]int{SetMAC: 24, SetIPv4: 28, SetIPv6: 40}[set]
	if want == 0 || len(k) != want {
		return Element{}, false
	}
	n := 0
	for n < 16 && k[n] != 0 {
		n++
	}
	e := Element{Port: string(k[:n]), MAC: [6]byte(k[16:22])}
	if len(k) > 24 {
		ip, ok := netip.AddrFromSlice(k[24:])
		if !ok {
			return Element{}, false
		}
		e.IP = ip
	}
	return e, true
}

// AddPod makes sure the table is complete (creating it, its sets and
// chains when missing, and restoring its rules when they differ, but
// never touching another element) and adds r's elements, in one
// transaction.
func AddPod(r Record) error {
	es, err := r.Elements()
	if err != nil {
		return fmt.Errorf("anti-spoofing entries: %w", err)
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	st, err := readState(c, false)
	if err != nil {
		return err
	}
	mac, v4, v6, err := queueTable(c, !st.intact)
	if err != nil {
		return err
	}
	if err := queueElements(c, mac, v4, v6, es, false); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("add anti-spoofing entries of %s (nftables table bridge %s): %w", r.Port, TableName, err)
	}
	return nil
}

// RemovePort deletes every element of port; none is no error.
func RemovePort(port string) error {
	_, err := removeWhere(func(e Element) bool { return e.Port == port })
	return err
}

// RemoveStale deletes the elements of every port for which stale returns
// true, and returns them.
func RemoveStale(stale func(port string) bool) ([]Element, error) {
	return removeWhere(func(e Element) bool { return stale(e.Port) })
}

func removeWhere(match func(Element) bool) ([]Element, error) {
	for attempt := 0; ; attempt++ {
		c, err := nftables.New()
		if err != nil {
			return nil, fmt.Errorf("nftables: %w", err)
		}
		st, err := readState(c, true)
		if err != nil || !st.exists {
			return nil, err
		}
		var del []Element
		for _, e := range st.elems {
			if match(e) {
				del = append(del, e)
			}
		}
		if len(del) == 0 {
			return nil, nil
		}
		t := tableRef()
		mac, v4, v6 := sets(t)
		if err := queueElements(c, mac, v4, v6, del, true); err != nil {
			return nil, err
		}
		err = c.Flush()
		if err == nil {
			return del, nil
		}
		// Someone deleted one of them meanwhile: list again.
		if !errors.Is(err, unix.ENOENT) || attempt == maxRetries {
			return nil, fmt.Errorf("delete anti-spoofing entries (nftables table bridge %s): %w", TableName, err)
		}
	}
}

// Missing returns the elements of r that the kernel lacks, and whether
// the table's rules are intact.
func Missing(r Record) (missing []Element, intact bool, err error) {
	es, err := r.Elements()
	if err != nil {
		return nil, false, err
	}
	c, err := nftables.New()
	if err != nil {
		return nil, false, fmt.Errorf("nftables: %w", err)
	}
	st, err := readState(c, true)
	if err != nil {
		return nil, false, err
	}
	for _, e := range es {
		if !slices.Contains(st.elems, e) {
			missing = append(missing, e)
		}
	}
	return missing, st.exists && st.intact, nil
}

// Elements lists the elements of the table's sets.
func Elements() ([]Element, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	st, err := readState(c, true)
	return st.elems, err
}

// Counters returns the packets each drop rule of the table has counted,
// by reason ("ether-saddr", "ipv4-saddr", "arp-spa", "nd-target", ...).
// A missing table counts nothing.
func Counters() (map[string]uint64, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	t := tableRef()
	out := map[string]uint64{}
	for _, name := range chainOrder {
		rules, err := c.GetRules(t, &nftables.Chain{Name: name, Table: t})
		if err != nil {
			return nil, fmt.Errorf("list rules of bridge %s %s: %w", TableName, name, err)
		}
		for _, r := range rules {
			reason, ok := reasonOf(r)
			if !ok {
				continue
			}
			for _, e := range r.Exprs {
				if ctr, ok := e.(*expr.Counter); ok {
					out[reason] += ctr.Packets
				}
			}
		}
	}
	return out, nil
}

// Reconcile converges the table to the pod records in dir: it restores
// the table, sets, chains and rules when they are missing or changed,
// adds the missing elements of every record, and deletes the elements
// that no record asks for, all in one transaction, without ever flushing
// or replacing a set. See the package doc for why a concurrent ADD or DEL
// loses nothing. When dir cannot be read, nothing changes (the error
// wraps [os.ErrNotExist] when it does not exist).
func Reconcile(dir string) (Result, error) { return reconcile(dir, nil) }

// reconcile is Reconcile with a hook called between reading the records
// and writing (tests use it to race an ADD against the write).
func reconcile(dir string, afterRead func()) (Result, error) {
	for attempt := 0; ; attempt++ {
		c, err := nftables.New()
		if err != nil {
			return Result{}, fmt.Errorf("nftables: %w", err)
		}
		// The elements first, then the records: see the package doc.
		st, err := readState(c, true)
		if err != nil {
			return Result{}, err
		}
		recs, err := ReadRecords(dir)
		if err != nil {
			return Result{}, err
		}
		if afterRead != nil {
			afterRead()
		}
		keep := map[string]bool{}
		for p := range recs.Bad {
			keep[p] = true
		}
		add, del := Plan(st.elems, recs.Good, keep)
		res := Result{Added: add, Removed: del, RulesRestored: !st.intact, Bad: recs.Bad}
		if !res.Changed() {
			return res, nil
		}
		mac, v4, v6, err := queueTable(c, !st.intact)
		if err != nil {
			return Result{}, err
		}
		if err := queueElements(c, mac, v4, v6, del, true); err != nil {
			return Result{}, err
		}
		if err := queueElements(c, mac, v4, v6, add, false); err != nil {
			return Result{}, err
		}
		err = c.Flush()
		if err == nil {
			return res, nil
		}
		// A DEL removed an element this batch deletes: start over.
		if !errors.Is(err, unix.ENOENT) || attempt == maxRetries {
			return Result{}, fmt.Errorf("reconcile anti-spoofing entries (nftables table bridge %s): %w", TableName, err)
		}
	}
}
