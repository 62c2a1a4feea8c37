// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package membership

import (
	"bytes"
	"errors"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/sirupsen/logrus"
)

// delegate receives memberlist's callbacks. memberlist calls the event and
// conflict callbacks while holding its node lock, never concurrently with
// each other; the ping callback comes from its probe goroutine. All of them
// only update the member table under m.mu and wake the notifier.
type delegate struct {
	m *Membership
}

var (
	_ memberlist.Delegate         = (*delegate)(nil)
	_ memberlist.EventDelegate    = (*delegate)(nil)
	_ memberlist.ConflictDelegate = (*delegate)(nil)
	_ memberlist.PingDelegate     = (*delegate)(nil)
	_ memberlist.AliveDelegate    = (*delegate)(nil)
)

// errTableFull is returned to memberlist for a new member name when the
// member table is at its cap.
var errTableFull = errors.New("gossip member table full")

// NotifyAlive is called for every alive message (and every node of a
// push/pull) before memberlist records it. A name not yet in the member
// table is refused while the table holds Config.MaxMembers members the
// authority's view does not name, unless the view names it.
func (d *delegate) NotifyAlive(n *memberlist.Node) error {
	m := d.m
	if n.Name == m.cfg.Name {
		return nil
	}
	m.mu.Lock()
	_, known := m.members[n.Name]
	full := !known && !m.keep[n.Name] && m.extra >= m.cfg.MaxMembers
	if full {
		m.refused++
	}
	m.mu.Unlock()
	if !full {
		return nil
	}
	if m.limiter.allow("table full") {
		m.log.WithFields(logrus.Fields{"member": n.Name, "max": m.cfg.MaxMembers}).
			Warn("gossip member table full: new members the store does not know are refused")
	}
	return errTableFull
}

// NodeMeta returns this node's encoded metadata. SetMeta guarantees it
// fits; the limit check only guards against memberlist's panic.
func (d *delegate) NodeMeta(limit int) []byte {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	if len(d.m.metaBytes) > limit {
		return nil
	}
	return d.m.metaBytes
}

// weft sends no user messages and keeps no extra push/pull state.
func (d *delegate) NotifyMsg([]byte)                    {}
func (d *delegate) GetBroadcasts(int, int) [][]byte     { return nil }
func (d *delegate) LocalState(bool) []byte              { return nil }
func (d *delegate) MergeRemoteState(buf []byte, _ bool) {}

func (d *delegate) NotifyJoin(n *memberlist.Node)   { d.m.observe(n, StateAlive) }
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.m.observe(n, StateAlive) }

// NotifyLeave is called when a member is declared dead or has left.
// memberlist does not tell the two apart here, so a leaving member first
// announces metadata with the leaving flag set (see Run): its last
// metadata tells.
func (d *delegate) NotifyLeave(n *memberlist.Node) {
	st := StateDead
	if w, err := decodeMeta(n.Meta); err == nil && w.Leaving {
		st = StateLeft
	}
	d.m.observe(n, st)
}

// NotifyConflict is called when a member announces a name that memberlist
// already holds, alive, at another address: two processes with one node
// name, or a node restarted on another port before its old incarnation
// was declared dead.
func (d *delegate) NotifyConflict(existing, other *memberlist.Node) {
	m := d.m
	if existing.Name == m.cfg.Name {
		// Others still hold this node at an older address. Once they have
		// declared it dead, a fresh announcement is accepted: ask the
		// rejoin loop to push our state to every known address for a
		// while (the old address's death takes a few probe rounds).
		if m.limiter.allow("self conflict") {
			m.log.WithField("other_addr", other.Address()).Info("other members hold this node's name at another address (this node's previous run, or another node with the same name); re-announcing")
		}
		m.startReannounce()
		return
	}
	if m.limiter.allow("conflict " + existing.Name) {
		m.log.WithFields(logrus.Fields{
			"member":     existing.Name,
			"addr":       existing.Address(),
			"other_addr": other.Address(),
		}).Warn("two gossip members claim one name: the one at other_addr is refused until the member at addr is dead (a node restarted on another address, or two nodes configured with one name)")
	}
	// The other address is not added to the rejoin set: only seeds and
	// the addresses the daemon takes from the store are dialled. A node
	// restarted on another address re-joins by itself.
}

func (d *delegate) AckPayload() []byte { return nil }

// NotifyPingComplete is called when a probe of ours got its ack: the node
// answers, so a suspicion we recorded is over. (The node copy memberlist
// passes here and to the event callbacks never carries the node's state:
// memberlist keeps the state in a field that shadows Node.State.)
func (d *delegate) NotifyPingComplete(n *memberlist.Node, _ time.Duration, _ []byte) {
	d.m.observeSuspicion(n.Name, false)
}

// observe records a join, update or leave of node n. n must not be kept.
func (m *Membership) observe(n *memberlist.Node, st State) {
	if n.Name == m.cfg.Name {
		// Called under memberlist's lock, the only safe time to read
		// what it holds for this member.
		m.mu.Lock()
		m.held = bytes.Clone(n.Meta)
		m.mu.Unlock()
		return
	}
	now := time.Now()
	addr := n.Address()
	var w wireMeta
	var metaErr error
	if len(n.Meta) > 0 {
		w, metaErr = decodeMeta(n.Meta)
	}
	meta := w.Meta
	m.mu.Lock()
	mb, known := m.members[n.Name]
	if !known {
		mb = &Member{Name: n.Name}
		m.members[n.Name] = mb
		if !m.keep[n.Name] {
			m.extra++
		}
	}
	prev := *mb
	mb.Addr = addr
	if metaErr == nil {
		mb.Meta = meta
	} else {
		mb.Meta = Meta{}
	}
	if mb.State != st {
		mb.State, mb.Since = st, now
	}
	// A member's address is not added to the rejoin set (a member can
	// advertise anyone's address); an address already in it stays fresh.
	if k, ok := m.addrs[addr]; ok {
		k.last = now
	}
	cur := *mb
	m.mu.Unlock()

	log := m.log.WithFields(logrus.Fields{"member": n.Name, "addr": addr})
	if metaErr != nil && m.limiter.allow("meta "+n.Name) {
		log.WithError(metaErr).Warn("gossip member has undecodable metadata")
	}
	switch {
	case !known:
		log.WithField("state", cur.State).Info("gossip member discovered")
	case prev.State != cur.State:
		log.WithFields(logrus.Fields{"state": cur.State, "was": prev.State, "was_for_seconds": now.Sub(prev.Since).Seconds()}).Info("gossip member state changed")
	}
	if known && prev.Meta.BootID != "" && cur.Meta.BootID != "" && prev.Meta.BootID != cur.Meta.BootID {
		log.WithField("boot", cur.Meta.BootID).Info("gossip member restarted")
	}
	if !known || prev.State != cur.State || prev.Addr != cur.Addr || prev.Meta != cur.Meta {
		wake(m.changed)
	}
}

// startReannounce makes the rejoin loop push this node's state to every
// known address, live members' too, for reannounceWindow: others hold this
// node at an older address or as dead, and accept a fresh announcement
// once the old incarnation is dead (memberlist's DeadNodeReclaimTime). Only
// seeds and addresses given to Join are used.
func (m *Membership) startReannounce() {
	m.mu.Lock()
	m.reannounceUntil = time.Now().Add(reannounceWindow)
	m.mu.Unlock()
	wake(m.wakeJoin)
}

// observeSuspicion moves a member between alive and suspect, as this
// node's probes see it. It never revives a dead or left member: only
// memberlist's join event does.
func (m *Membership) observeSuspicion(name string, suspect bool) {
	from, to := StateAlive, StateSuspect
	if !suspect {
		from, to = StateSuspect, StateAlive
	}
	m.mu.Lock()
	mb, ok := m.members[name]
	if !ok || mb.State != from {
		m.mu.Unlock()
		return
	}
	prevSince := mb.Since
	mb.State, mb.Since = to, time.Now()
	addr := mb.Addr
	m.mu.Unlock()
	m.log.WithFields(logrus.Fields{
		"member": name, "addr": addr, "state": to, "was": from,
		"was_for_seconds": time.Since(prevSince).Seconds(),
	}).Info("gossip member state changed")
	wake(m.changed)
}
