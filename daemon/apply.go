// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/daemon/membership"
	"github.com/weftnet/weft/daemon/status"
	"github.com/weftnet/weft/subnet"
)

// Between resyncs, a change is applied as a change: the reconcile loop
// builds the desired peer set as always (Merge, buildDesired: a few
// milliseconds for thousands of peers), compares it with the set it last
// handed the backend, checks only the entries that changed against the
// last full check (backend.PeerIndex, which declines whenever the order of
// leases could decide differently), and gives the backend only those
// entries (backend.Updater). Anything else (a resync, a backend without
// Updater, a failed update, a new network config, local subnet or self
// address, an incomplete view, many changes at once) takes the full path:
// the whole set checked and handed to Reconcile, which compares it with
// the kernel and repairs drift.

// maxChanges is the most peer entries applied as changes in one turn; more
// take the full path (a full reconcile is then about as cheap).
const maxChanges = 128

// appliedState is what the reconcile loop last handed the backend. Only
// the reconcile loop reads and writes it, so it has no lock.
type appliedState struct {
	// ok is true after a successful full reconcile and every change
	// applied since succeeded; the fields below are then current.
	ok    bool
	in    backend.CheckInput
	local backend.Local
	// cands are the desired peers before the check (buildDesired's,
	// sorted by name and subnet), index the check's outcome over them.
	cands    []backend.Peer
	index    *backend.PeerIndex
	refused  map[netip.Prefix]backend.Rejected // by primary subnet
	problems map[string]string
	// snapshotOf is the lease view last compared with the saved peer
	// snapshot, by its leases' first element: every view the lease watch
	// delivers is a new slice, so the same pointer is the same view.
	snapshotOf *subnet.Lease
}

// snapshotStale reports whether the saved peer snapshot may differ from
// what the lease view v and the merged peers make: v is not the view last
// compared, or gossip brought newer data for some lease.
func (a *appliedState) snapshotStale(v subnet.View, peers []membership.PeerView) bool {
	if len(v.Leases) == 0 || &v.Leases[0] != a.snapshotOf {
		return true
	}
	return slices.ContainsFunc(peers, func(p membership.PeerView) bool {
		return p.Source == membership.SourceGossip && !p.Provisional
	})
}

// forget drops what the last full reconcile recorded (the next turn takes
// the full path).
func (a *appliedState) forget() { *a = appliedState{snapshotOf: a.snapshotOf} }

// applyFull records a full reconcile's input and outcome.
func (a *appliedState) applyFull(ok bool, in backend.CheckInput, cands []backend.Peer, index *backend.PeerIndex,
	refused []backend.Rejected, local backend.Local, problems map[string]string,
) {
	*a = appliedState{ok: ok, in: in, local: local, cands: cands, index: index, problems: problems, snapshotOf: a.snapshotOf}
	a.refused = make(map[netip.Prefix]backend.Rejected, len(refused))
	for _, r := range refused {
		a.refused[primaryOf(r.Peer)] = r
	}
}

// changeTurn is what one turn of the reconcile loop handed the backend and
// what came of it.
type changeTurn struct {
	desired  backend.Desired
	peers    []membership.PeerView // the merged view less the rejected entries
	rejected []status.RejectedPeer
	res      backend.Result
	err      error
	// diff is what changed, when the turn applied changes (nil: a full
	// reconcile, which compares the whole set with the kernel).
	diff *peerDiff
}

// how says which path a turn took, for the log.
func (t changeTurn) how() string {
	if t.diff == nil {
		return "in full"
	}
	return fmt.Sprintf("as %d changes", len(t.diff.Added)+len(t.diff.Updated)+len(t.diff.Removed))
}

// apply hands desired to the backend: as changes when applyChanges can,
// else in full (and then records the full check for the changes that
// follow).
func (d *daemon) apply(ctx context.Context, in backend.CheckInput, desired backend.Desired,
	peers []membership.PeerView, members []membership.Member, authoritative bool,
) changeTurn {
	if t, ok := d.applyChanges(ctx, in, desired, peers, members, authoritative); ok {
		return t
	}
	cands := desired.Peers
	index, accepted, refused := backend.NewPeerIndex(in, cands)
	t := changeTurn{desired: desired}
	t.desired.Peers = accepted
	t.peers, t.rejected = keptAndRejected(in, peers, members, authoritative, refused)
	t.res, t.err = d.be.Reconcile(ctx, t.desired)
	d.applied.applyFull(t.err == nil && desired.Complete, in, cands, index, refused, desired.Local, t.res.Problems)
	return t
}

// applyChanges applies the difference between desired (buildDesired's
// output, unchecked) and what the backend last got as changes, when it
// can (see above). ok is false when the caller must take the full path;
// then nothing was handed to the backend, or what was failed.
func (d *daemon) applyChanges(ctx context.Context, in backend.CheckInput, desired backend.Desired,
	peers []membership.PeerView, members []membership.Member, authoritative bool,
) (turn changeTurn, ok bool) {
	a := &d.applied
	up, isUpdater := d.be.(backend.Updater)
	if !a.ok || !isUpdater || !desired.Complete || desired.Local != a.local || !sameCheckInput(in, a.in) {
		return turn, false
	}
	changes := diffCands(a.cands, desired.Peers)
	if len(changes) > maxChanges {
		return turn, false
	}
	acc, rej, decided := a.index.Apply(changes)
	if !decided {
		return turn, false
	}
	beChanges, diff := a.backendChanges(changes, acc, rej)
	a.cands = desired.Peers
	problems := a.problems
	if len(beChanges) > 0 {
		res, err := up.Update(ctx, beChanges)
		if err != nil {
			a.ok = false
			d.log.WithError(err).Warn("applying peer changes failed; reconciling in full")
			return turn, false
		}
		problems = maps.Clone(a.problems)
		for _, c := range beChanges {
			for _, p := range []*backend.Peer{c.Old, c.New} {
				if p != nil {
					delete(problems, p.Name)
				}
			}
		}
		maps.Copy(problems, res.Problems)
		turn.res = res
		a.problems = problems
	}
	turn.res.Problems = problems
	turn.diff = diff

	refused := slices.Collect(maps.Values(a.refused))
	turn.desired = desired
	if len(refused) > 0 {
		turn.desired.Peers = slices.DeleteFunc(slices.Clone(desired.Peers), func(p backend.Peer) bool {
			_, r := a.refused[primaryOf(p)]
			return r
		})
	}
	turn.peers, turn.rejected = keptAndRejected(in, peers, members, authoritative, refused)
	return turn, true
}

// backendChanges turns the changes of candidate entries into changes of
// what the backend holds (the accepted entries only), given the index's
// decisions about the new entries, and records the refused ones.
func (a *appliedState) backendChanges(changes []backend.Change, acc []backend.Peer, rej []backend.Rejected) ([]backend.Change, *peerDiff) {
	accepted := make(map[netip.Prefix]bool, len(acc))
	for _, p := range acc {
		accepted[primaryOf(p)] = true
	}
	var out []backend.Change
	diff := &peerDiff{}
	for _, c := range changes {
		var ch backend.Change
		if c.Old != nil {
			if _, was := a.refused[primaryOf(*c.Old)]; !was {
				ch.Old = c.Old
			}
			delete(a.refused, primaryOf(*c.Old))
		}
		if c.New != nil && accepted[primaryOf(*c.New)] {
			ch.New = c.New
		}
		switch {
		case ch.Old != nil && ch.New != nil:
			diff.Updated = append(diff.Updated, *ch.New)
		case ch.Old != nil:
			diff.Removed = append(diff.Removed, *ch.Old)
		case ch.New != nil:
			diff.Added = append(diff.Added, *ch.New)
		default:
			continue
		}
		out = append(out, ch)
	}
	for _, r := range rej {
		a.refused[primaryOf(r.Peer)] = r
	}
	return out, diff
}

// diffCands lists the entries that differ between two sorted desired peer
// lists (sorted by sortPeers) as changes. An entry whose name or subnets
// changed is a removal and an addition.
func diffCands(old, cur []backend.Peer) []backend.Change {
	var out []backend.Change
	i, j := 0, 0
	for i < len(old) || j < len(cur) {
		var c int
		switch {
		case i == len(old):
			c = 1
		case j == len(cur):
			c = -1
		default:
			c = comparePeers(old[i], cur[j])
		}
		switch {
		case c < 0:
			out = append(out, backend.Change{Old: &old[i]})
			i++
		case c > 0:
			out = append(out, backend.Change{New: &cur[j]})
			j++
		default:
			if old[i] != cur[j] {
				out = append(out, backend.Change{Old: &old[i], New: &cur[j]})
			}
			i++
			j++
		}
	}
	return out
}

// comparePeers orders peers as sortPeers does, telling apart entries of
// one name by both subnets.
func comparePeers(a, b backend.Peer) int {
	if c := cmp.Compare(a.Name, b.Name); c != 0 {
		return c // most pairs: the rest is not computed
	}
	return cmp.Or(comparePrefix(primaryOf(a), primaryOf(b)), comparePrefix(a.IPv6Subnet, b.IPv6Subnet))
}

// sameCheckInput reports whether two check inputs check alike (the
// network config is compared by identity: a new one is a new pointer).
func sameCheckInput(a, b backend.CheckInput) bool {
	return a.Network == b.Network && a.Local == b.Local && a.SelfWireGuardKey == b.SelfWireGuardKey && slices.Equal(a.SelfIPs, b.SelfIPs)
}
