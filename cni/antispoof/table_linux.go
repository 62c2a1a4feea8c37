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
	exists  bool
	intact  bool            // every chain and set is there, each chain with exactly its rules
	chains  map[string]bool // there with the right hook settings
	present map[string]bool // there
	sets    map[string]bool
	elems   []Element
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
	st := state{exists: len(have) > 0, intact: true, chains: map[string]bool{}, present: map[string]bool{}, sets: map[string]bool{}}
	wantRules := chainRules()
	for _, name := range chainOrder {
		ch, ok := have[name]
		st.present[name] = ok
		if !ok || !sameChain(ch, baseChain(name)) {
			st.intact = false
			continue
		}
		st.chains[name] = true
		rules, err := c.GetRules(t, ch)
		if err != nil {
			return state{}, fmt.Errorf("list rules of bridge %s %s: %w", TableName, name, err)
		}
		if !sameRules(rules, wantRules[name]) {
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
	want := sets(t)
	for _, s := range got {
		for _, w := range want {
			if s.Name == w.Name && s.KeyType.Bytes == w.KeyType.Bytes && s.Concatenation == w.Concatenation {
				st.sets[s.Name] = true
			}
		}
	}
	for _, s := range want {
		if !st.sets[s.Name] {
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

// baseChain returns the hook settings of chain name (nil for a regular
// chain).
func baseChain(name string) *nftables.Chain {
	if name != chainPrerouting {
		return nil
	}
	accept := nftables.ChainPolicyAccept
	return &nftables.Chain{
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookPrerouting,
		Priority: nftables.ChainPriorityRef(-200), // NF_BR_PRI_FILTER_BRIDGED
		Policy:   &accept,
	}
}

// sameChain reports whether ch has the hook settings of want (nil: a
// regular chain).
func sameChain(ch, want *nftables.Chain) bool {
	if want == nil || ch.Hooknum == nil {
		return want == nil && ch.Hooknum == nil
	}
	return *ch.Hooknum == *want.Hooknum && ch.Priority != nil && *ch.Priority == *want.Priority &&
		ch.Type == want.Type && ch.Policy != nil && *ch.Policy == *want.Policy
}

// queueTable queues what st lacks: the table, the sets and chains that are
// missing (a chain whose hook settings differ is deleted and made again),
// and, unless st is intact, the replacement of every chain's rules. It
// never touches a set that exists, nor its elements. Existing objects are
// not queued again: the kernel takes a batch that updates a table or
// chain much longer (milliseconds) than one that only adds elements. It
// returns the sets.
func queueTable(c *nftables.Conn, st state) error {
	t := tableRef()
	if st.intact {
		return nil
	}
	if !st.exists {
		c.AddTable(t)
	}
	for _, s := range sets(t) {
		if st.sets[s.Name] {
			continue
		}
		if err := c.AddSet(s, nil); err != nil {
			return fmt.Errorf("queue set %s: %w", s.Name, err)
		}
	}
	chain := func(name string) *nftables.Chain {
		ch := &nftables.Chain{Name: name, Table: t}
		if b := baseChain(name); b != nil {
			ch.Type, ch.Hooknum, ch.Priority, ch.Policy = b.Type, b.Hooknum, b.Priority, b.Policy
		}
		return ch
	}
	// Empty every chain first: a rule may refer to a chain replaced next.
	for _, name := range chainOrder {
		if st.present[name] {
			c.FlushChain(chain(name))
		}
	}
	// A chain with other hook settings is made again; a missing one made.
	// Each is emptied again: another process may have made it, rules
	// and all, since st was read (adding an existing chain is no error).
	for _, name := range chainOrder {
		if st.present[name] && !st.chains[name] {
			c.DelChain(chain(name))
		}
		if !st.chains[name] {
			c.AddChain(chain(name))
			c.FlushChain(chain(name))
		}
	}
	want := chainRules()
	for _, name := range chainOrder {
		for _, r := range want[name] {
			c.AddRule(&nftables.Rule{Table: t, Chain: chain(name), Exprs: r.exprs, UserData: comment(r.reason)})
		}
	}
	return nil
}

// queueElements queues adding (del false) or deleting es.
func queueElements(c *nftables.Conn, es []Element, del bool) error {
	by := map[string][]nftables.SetElement{}
	for _, e := range es {
		by[setOf(e)] = append(by[setOf(e)], nftables.SetElement{Key: encodeElement(e)})
	}
	for _, s := range sets(tableRef()) {
		if len(by[s.Name]) == 0 {
			continue
		}
		op := c.SetAddElements
		if del {
			op = c.SetDeleteElements
		}
		if err := op(s, by[s.Name]); err != nil {
			return fmt.Errorf("queue elements of set %s: %w", s.Name, err)
		}
	}
	return nil
}

// encodeElement returns e's key: the port name padded to 16 bytes, the MAC
// padded to 8, then the address.
func encodeElement(e Element) []byte {
	if setOf(e) == SetPorts {
		k := make([]byte, 16)
		copy(k, e.Port)
		return k
	}
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
	want := map[string]int{SetPorts: 16, SetMAC: 24, SetIPv4: 28, SetIPv6: 40}[set]
	if want == 0 || len(k) != want {
		return Element{}, false
	}
	n := 0
	for n < 16 && k[n] != 0 {
		n++
	}
	e := Element{Port: string(k[:n])}
	if set == SetPorts {
		return e, true
	}
	e.MAC = [6]byte(k[16:22])
	if len(k) > 24 {
		ip, ok := netip.AddrFromSlice(k[24:])
		if !ok {
			return Element{}, false
		}
		e.IP = ip
	}
	return e, true
}

// newConn opens one netlink socket for every request of a function (a
// socket per request costs more than most requests).
func newConn() (*nftables.Conn, error) {
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return c, nil
}

// AddPod adds r's elements. The common case is one batch of the elements
// alone: it fails as a whole when the table or a set is missing, and then
// AddPod makes the table complete (creating its sets and chains, and
// restoring its rules) with the elements, in one transaction. It never
// flushes or replaces a set. When the sets exist AddPod does not look at
// the rules: weftd restores them on its next resync, and CHECK reports
// them; reading them on every ADD would double its cost here.
func AddPod(r Record) error {
	es, err := r.Elements()
	if err != nil {
		return fmt.Errorf("anti-spoofing entries: %w", err)
	}
	c, err := newConn()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	if err := queueElements(c, es, false); err != nil {
		return err
	}
	err = c.Flush()
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("add anti-spoofing entries of %s (nftables table bridge %s): %w", r.Port, TableName, err)
	}
	st, err := readState(c, false)
	if err != nil {
		return err
	}
	if err := queueTable(c, st); err != nil {
		return err
	}
	if err := queueElements(c, es, false); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("add anti-spoofing entries of %s (nftables table bridge %s): %w", r.Port, TableName, err)
	}
	return nil
}

// RemovePort deletes every element of port; none is no error.
func RemovePort(port string) error {
	rm, err := RemovePod(port, nil)
	rm.Close()
	return err
}

// Removal is a deletion whose netlink socket is still open. Closing a
// netfilter socket waits until the kernel has released what the last
// batch deleted (an RCU grace period, 5-15 ms here); deleting a veth
// waits for grace periods too, so a DEL closes the socket once its veth
// is gone, and the two waits overlap.
type Removal struct{ c *nftables.Conn }

// Close closes the socket (a nil Removal is fine).
func (r *Removal) Close() {
	if r != nil && r.c != nil {
		r.c.CloseLasting()
		r.c = nil
	}
}

// RemovePod deletes every element of port; none is no error. When known
// is port's record, its elements go in one batch without listing the
// table first; when one of them is missing (deleted by hand, or never
// added), or no record is known, the table is listed and whatever port
// has is deleted. The caller closes the returned Removal.
func RemovePod(port string, known *Record) (*Removal, error) {
	if known != nil && known.Port == port {
		if es, err := known.Elements(); err == nil {
			c, err := newConn()
			if err != nil {
				return nil, err
			}
			if err := queueElements(c, es, true); err != nil {
				return &Removal{c}, err
			}
			err = c.Flush()
			if err == nil {
				return &Removal{c}, nil
			}
			c.CloseLasting()
			if !errors.Is(err, unix.ENOENT) {
				return nil, fmt.Errorf("delete anti-spoofing entries of %s (nftables table bridge %s): %w", port, TableName, err)
			}
		}
	}
	for attempt := 0; ; attempt++ {
		c, err := newConn()
		if err != nil {
			return nil, err
		}
		_, err = removeOnce(c, func(e Element) bool { return e.Port == port })
		if err == nil {
			return &Removal{c}, nil
		}
		c.CloseLasting()
		if !errors.Is(err, unix.ENOENT) || attempt == maxRetries {
			return nil, err
		}
	}
}

// RemoveStale deletes the elements of every port for which stale returns
// true, and returns them.
func RemoveStale(stale func(port string) bool) ([]Element, error) {
	return removeWhere(func(e Element) bool { return stale(e.Port) })
}

func removeWhere(match func(Element) bool) ([]Element, error) {
	for attempt := 0; ; attempt++ {
		c, err := newConn()
		if err != nil {
			return nil, err
		}
		del, err := removeOnce(c, match)
		c.CloseLasting()
		if err == nil || !errors.Is(err, unix.ENOENT) || attempt == maxRetries {
			return del, err
		}
		// Someone deleted one of them meanwhile: list again.
	}
}

// removeOnce deletes the elements match selects in one batch.
func removeOnce(c *nftables.Conn, match func(Element) bool) ([]Element, error) {
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
	if err := queueElements(c, del, true); err != nil {
		return nil, err
	}
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("delete anti-spoofing entries (nftables table bridge %s): %w", TableName, err)
	}
	return del, nil
}

// Missing returns the elements of r that the kernel lacks, and whether
// the table's rules are intact.
func Missing(r Record) (missing []Element, intact bool, err error) {
	es, err := r.Elements()
	if err != nil {
		return nil, false, err
	}
	c, err := newConn()
	if err != nil {
		return nil, false, err
	}
	defer c.CloseLasting()
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
	c, err := newConn()
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	st, err := readState(c, true)
	return st.elems, err
}

// Counters returns the packets each drop rule of the table has counted,
// by reason ("ether-saddr", "ipv4-saddr", "arp-spa", "nd-target", ...).
// Every reason of the rules is present, 0 when nothing was dropped; a
// missing table (no pod added on this node yet) or chain counts nothing.
func Counters() (map[string]uint64, error) {
	c, err := newConn()
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	t := tableRef()
	out := map[string]uint64{}
	for _, reason := range dropReasons() {
		out[reason] = 0
	}
	for _, name := range chainOrder {
		rules, err := c.GetRules(t, &nftables.Chain{Name: name, Table: t})
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list rules of bridge %s %s: %w", TableName, name, err)
		}
		for _, r := range rules {
			reason, ok := reasonOf(r)
			if !ok || len(r.Exprs) == 0 {
				continue
			}
			if v, ok := r.Exprs[len(r.Exprs)-1].(*expr.Verdict); !ok || v.Kind != expr.VerdictDrop {
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
		c, err := newConn()
		if err != nil {
			return Result{}, err
		}
		res, err := reconcileOnce(c, dir, afterRead)
		c.CloseLasting()
		if err == nil || !errors.Is(err, unix.ENOENT) || attempt == maxRetries {
			return res, err
		}
		// A DEL removed an element this batch deletes: start over.
	}
}

// reconcileOnce is one attempt of reconcile.
func reconcileOnce(c *nftables.Conn, dir string, afterRead func()) (Result, error) {
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
	if err := queueTable(c, st); err != nil {
		return Result{}, err
	}
	if err := queueElements(c, del, true); err != nil {
		return Result{}, err
	}
	if err := queueElements(c, add, false); err != nil {
		return Result{}, err
	}
	if err := c.Flush(); err != nil {
		return Result{}, fmt.Errorf("reconcile anti-spoofing entries (nftables table bridge %s): %w", TableName, err)
	}
	return res, nil
}
