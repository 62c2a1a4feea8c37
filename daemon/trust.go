// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/daemon/membership"
	"github.com/weftnet/weft/daemon/status"
	"github.com/weftnet/weft/subnet"
)

// The trust step of a reconcile: every peer entry is checked before the
// backend sees it (backend.CheckPeers), and the gossip claims Merge did not
// use are named too, so that whatever was refused shows in the log (once
// per change), in /status and in the metrics.

// Rejection reasons, the values of the metrics' reason label: a small fixed
// set (the full reason is in the log and /status).
const (
	reasonSubnet      = "subnet"      // not a subnet of the network at its length
	reasonOverlap     = "overlap"     // overlaps this node's subnet or an older peer's
	reasonAddress     = "address"     // a public IP that cannot be a peer's
	reasonMAC         = "mac"         // a VTEP MAC that cannot be a peer's
	reasonWireGuard   = "wireguard"   // a WireGuard key or port that cannot be a peer's
	reasonUnconfirmed = "unconfirmed" // a gossip claim the store does not confirm
	reasonOther       = "other"
)

var rejectionReasons = []string{reasonSubnet, reasonOverlap, reasonAddress, reasonMAC, reasonWireGuard, reasonUnconfirmed, reasonOther}

// rejectionSources are the values of the metrics' source label.
var rejectionSources = []string{membership.SourceEtcd, membership.SourceGossip}

// checkInput is what this node's peer entries are checked against.
func (d *daemon) checkInput(nc *subnet.Config, local backend.Local) backend.CheckInput {
	d.lease.mu.Lock()
	data, attrs := d.lease.data, d.lease.attrs
	d.lease.mu.Unlock()
	in := backend.CheckInput{Network: nc, Local: local, SelfWireGuardKey: attrs.Data.WireGuardKey}
	for _, a := range []netip.Addr{d.under.PublicIP, d.under.PublicIPv6, data.PublicIP, data.PublicIPv6} {
		if a.IsValid() && !slices.Contains(in.SelfIPs, a) {
			in.SelfIPs = append(in.SelfIPs, a)
		}
	}
	return in
}

// keptAndRejected returns the merged view without the entries refused,
// and the rejections to report: those entries and the gossip claims Merge
// did not use, sorted.
func keptAndRejected(in backend.CheckInput, peers []membership.PeerView, members []membership.Member,
	authoritative bool, refused []backend.Rejected,
) ([]membership.PeerView, []status.RejectedPeer) {
	var out []status.RejectedPeer
	kept := peers // no copy when nothing is refused
	if len(refused) > 0 {
		drop := make(map[peerKey]string, len(refused))
		for _, r := range refused {
			drop[keyOf(r.Peer)] = r.Reason
		}
		kept = make([]membership.PeerView, 0, len(peers))
		for _, p := range peers {
			if why, ok := drop[keyOf(p.Peer)]; ok {
				out = append(out, rejectedPeer(p.Peer, p.Source, why))
				delete(drop, keyOf(p.Peer))
				continue
			}
			kept = append(kept, p)
		}
		for _, r := range refused {
			if why, ok := drop[keyOf(r.Peer)]; ok {
				out = append(out, rejectedPeer(r.Peer, "", why)) // not from the merged view
			}
		}
	}
	out = append(out, unusedClaims(in, kept, members, authoritative)...)
	slices.SortFunc(out, func(a, b status.RejectedPeer) int {
		return strings.Compare(a.Source+"\x00"+a.Name+"\x00"+a.Subnet.String(), b.Source+"\x00"+b.Name+"\x00"+b.Subnet.String())
	})
	return kept, out
}

// peerKey identifies a peer entry: a name and its subnets.
type peerKey struct {
	name       string
	subnet, v6 netip.Prefix
}

func keyOf(p backend.Peer) peerKey { return peerKey{p.Name, p.Subnet, p.IPv6Subnet} }

// unusedClaims names the gossip claims (a member's metadata with a subnet
// and an epoch) that do not appear in the merged view: Merge did not use
// them. Each gets the reason CheckPeers would give it, else the reason
// Merge dropped it.
func unusedClaims(in backend.CheckInput, peers []membership.PeerView, members []membership.Member, authoritative bool) []status.RejectedPeer {
	type used struct {
		name    string
		primary netip.Prefix
		epoch   int64
	}
	if len(members) == 0 {
		return nil
	}
	seen := make(map[used]bool, len(peers))
	for _, p := range peers {
		seen[used{p.Name, primaryOf(p.Peer), p.Epoch}] = true
	}
	var out []status.RejectedPeer
	for _, m := range members {
		meta := m.Meta
		if !meta.Primary().IsValid() || meta.Epoch <= 0 || seen[used{m.Name, meta.Primary(), meta.Epoch}] {
			continue
		}
		if m.State != membership.StateAlive && m.State != membership.StateSuspect {
			// A dead or left member's claims lapse by rule: nothing
			// claims them any more.
			continue
		}
		p := backend.Peer{
			Name: m.Name, Subnet: meta.Subnet, IPv6Subnet: meta.IPv6Subnet,
			PublicIP: meta.PublicIP, PublicIPv6: meta.PublicIPv6, Data: meta.Data,
			Epoch: meta.Epoch, Version: meta.Version,
		}
		var why string
		if _, r := backend.CheckPeers(in, []backend.Peer{p}); len(r) > 0 {
			why = r[0].Reason
		} else {
			switch {
			case authoritative:
				why = "gossip claim not confirmed by the store (only the store assigns subnets)"
			default:
				why = "gossip claim conflicts with the store's leases (older epoch, or a subnet the store gives another node)"
			}
		}
		out = append(out, rejectedPeer(p, membership.SourceGossip, why))
	}
	return out
}

func rejectedPeer(p backend.Peer, source, why string) status.RejectedPeer {
	if source == "" {
		source = membership.SourceEtcd
	}
	return status.RejectedPeer{
		Name: p.Name, Subnet: p.Subnet, IPv6Subnet: p.IPv6Subnet,
		PublicIP: p.PublicIP, PublicIPv6: p.PublicIPv6, Epoch: p.Epoch,
		Source: source, Reason: why,
	}
}

// reasonClass maps a rejection's reason to the metrics' reason label, by
// its first complaint.
func reasonClass(why string) string {
	first, _, _ := strings.Cut(why, "; ")
	switch {
	case strings.HasPrefix(first, "gossip claim"):
		return reasonUnconfirmed
	case strings.Contains(first, " overlaps "):
		return reasonOverlap
	case strings.HasPrefix(first, "subnet") || strings.HasPrefix(first, "no subnet") || strings.HasPrefix(first, "no network config"):
		return reasonSubnet
	case strings.HasPrefix(first, "public IP") || strings.HasPrefix(first, "no public IP"):
		return reasonAddress
	case strings.HasPrefix(first, "VTEP MAC"):
		return reasonMAC
	case strings.Contains(first, "WireGuard"):
		return reasonWireGuard
	}
	return reasonOther
}

// recordRejected stores the rejections of a reconcile for /status, sets the
// gauge, and logs and counts each rejection that is new or changed since
// the last reconcile (not on every resync), and each that cleared.
func (d *daemon) recordRejected(rs []status.RejectedPeer) {
	counts := make(map[[2]string]int)
	for _, s := range rejectionSources {
		for _, r := range rejectionReasons {
			counts[[2]string{s, r}] = 0
		}
	}
	cur := make(map[status.RejectedPeer]bool, len(rs))
	for _, r := range rs {
		cur[r] = true
		counts[[2]string{r.Source, reasonClass(r.Reason)}]++
	}
	d.recon.mu.Lock()
	prev := d.recon.rejected
	d.recon.rejected = rs
	d.recon.mu.Unlock()
	for k, n := range counts {
		d.metrics.rejected.WithLabelValues(k[0], k[1]).Set(float64(n))
	}
	was := make(map[status.RejectedPeer]bool, len(prev))
	for _, r := range prev {
		was[r] = true
	}
	for _, r := range rs {
		if was[r] {
			continue
		}
		class := reasonClass(r.Reason)
		d.metrics.rejections.WithLabelValues(r.Source, class).Inc()
		log := d.log.WithFields(fields(logrus.Fields{
			"peer": r.Name, "subnet": r.Subnet, "ipv6Subnet": r.IPv6Subnet, "publicIP": r.PublicIP,
			"epoch": r.Epoch, "source": r.Source, "reason": r.Reason,
		}))
		if class == reasonUnconfirmed {
			// Also seen briefly when a node re-claims and gossip is
			// faster than the store's watch.
			log.Info("peer entry rejected; it does not reach the data plane")
		} else {
			log.Warn("peer entry rejected; it does not reach the data plane")
		}
	}
	for _, r := range prev {
		if !cur[r] {
			d.log.WithFields(fields(logrus.Fields{"peer": r.Name, "subnet": r.Subnet, "source": r.Source})).Info("peer entry no longer rejected")
		}
	}
}
