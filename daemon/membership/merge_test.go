// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package membership

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/subnet"
)

var (
	t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	t1 = t0.Add(time.Minute)
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ip(s string) netip.Addr    { return netip.MustParseAddr(s) }

// lease is a lease of subnet sn for node name with the given epoch,
// version and public IP; its node ID is "id-"+name.
func lease(name, sn string, epoch int64, version uint64, pub string) subnet.Lease {
	l := subnet.Lease{
		Epoch: epoch,
		Record: subnet.Record{
			NodeName:    name,
			NodeID:      "id-" + name,
			PublicIP:    ip(pub),
			BackendType: subnet.BackendVXLAN,
			BackendData: subnet.BackendData{VTEPMAC: "02:00:00:00:00:" + pub[len(pub)-2:]},
			Version:     version,
		},
	}
	p := pfx(sn)
	if p.Addr().Is4() {
		l.Subnet = p
	} else {
		l.IPv6Subnet = p
	}
	return l
}

// member is an alive-since-t0 member claiming subnet sn.
func member(name, sn string, epoch int64, version uint64, pub string) Member {
	m := Member{
		Name:  name,
		Addr:  pub + ":7950",
		State: StateAlive,
		Since: t0,
		Meta: Meta{
			NodeID:   "id-" + name,
			BootID:   "boot-" + name,
			PublicIP: ip(pub),
			Data:     subnet.BackendData{VTEPMAC: "02:00:00:00:01:" + pub[len(pub)-2:]},
			Epoch:    epoch,
			Version:  version,
		},
	}
	if sn != "" {
		p := pfx(sn)
		if p.Addr().Is4() {
			m.Meta.Subnet = p
		} else {
			m.Meta.IPv6Subnet = p
		}
	}
	return m
}

func with[T any](v T, f func(*T)) T { f(&v); return v }

// fromEtcd is the peer a lease alone gives.
func fromEtcd(l subnet.Lease, st State, since time.Time) PeerView {
	return PeerView{
		Peer: backend.Peer{
			Name:       l.Record.NodeName,
			Subnet:     l.Subnet,
			IPv6Subnet: l.IPv6Subnet,
			PublicIP:   l.Record.PublicIP,
			PublicIPv6: l.Record.PublicIPv6,
			Data:       l.Record.BackendData,
			Epoch:      l.Epoch,
			Version:    l.Record.Version,
		},
		State:  st,
		Since:  since,
		Source: SourceEtcd,
	}
}

// updated is l's peer with m's data (same epoch, higher version).
func updated(l subnet.Lease, m Member) PeerView {
	p := fromEtcd(l, m.State, m.Since)
	p.PublicIP, p.PublicIPv6, p.Data, p.Version = m.Meta.PublicIP, m.Meta.PublicIPv6, m.Meta.Data, m.Meta.Version
	p.Source = SourceGossip
	return p
}

// prov is the provisional peer of m.
func prov(m Member) PeerView {
	return PeerView{
		Peer: backend.Peer{
			Name:       m.Name,
			Subnet:     m.Meta.Subnet,
			IPv6Subnet: m.Meta.IPv6Subnet,
			PublicIP:   m.Meta.PublicIP,
			PublicIPv6: m.Meta.PublicIPv6,
			Data:       m.Meta.Data,
			Epoch:      m.Meta.Epoch,
			Version:    m.Meta.Version,
		},
		State:       m.State,
		Since:       m.Since,
		Source:      SourceGossip,
		Provisional: true,
	}
}

// testNetwork is the network of the Merge tests: dual-stack, /24 and /64.
var testNetwork = &subnet.Config{
	Network: pfx("10.244.0.0/16"), SubnetLen: 24,
	IPv6Network: pfx("fd10:244::/56"), IPv6SubnetLen: 64,
}

func TestMerge(t *testing.T) {
	var (
		selfL = lease("self", "10.244.0.0/24", 10, 1, "198.18.0.10")
		aL    = lease("a", "10.244.1.0/24", 11, 3, "198.18.0.11")
		bL    = lease("b", "10.244.2.0/24", 12, 5, "198.18.0.12")
		aDual = with(aL, func(l *subnet.Lease) {
			l.IPv6Subnet = pfx("fd10:244:0:1::/64")
			l.Record.PublicIPv6 = ip("2001:2::11")
		})
		v6L = lease("v6", "fd10:244:0:7::/64", 17, 2, "198.18.0.17")
	)
	dead := func(m Member) Member { m.State, m.Since = StateDead, t1; return m }
	noID := func(m Member) Member { m.Meta.NodeID = ""; return m }
	v6 := func(m Member, sn string) Member { m.Meta.IPv6Subnet = pfx(sn); return m }

	// Each case runs with the authority unreachable (auth false) unless
	// it says otherwise.
	tests := []struct {
		name    string
		view    []subnet.Lease
		members []Member
		auth    bool
		network *subnet.Config // testNetwork unless set; none with noNet
		noNet   bool
		want    []PeerView
	}{
		{
			name: "nothing",
		},
		{
			name: "etcd only: unknown state, self excluded",
			view: []subnet.Lease{bL, selfL, aL},
			auth: true,
			want: []PeerView{fromEtcd(aL, StateUnknown, time.Time{}), fromEtcd(bL, StateUnknown, time.Time{})},
		},
		{
			name:    "same epoch same version: etcd data, gossip state",
			view:    []subnet.Lease{aL},
			members: []Member{member("a", "10.244.1.0/24", 11, 3, "198.18.0.99")},
			want:    []PeerView{fromEtcd(aL, StateAlive, t0)},
		},
		{
			name:    "same epoch higher version: gossip data wins (etcd down)",
			view:    []subnet.Lease{aL},
			members: []Member{member("a", "10.244.1.0/24", 11, 4, "198.18.0.99")},
			want:    []PeerView{updated(aL, member("a", "10.244.1.0/24", 11, 4, "198.18.0.99"))},
		},
		{
			name:    "same epoch higher version: gossip data wins (etcd up)",
			view:    []subnet.Lease{aL},
			members: []Member{member("a", "10.244.1.0/24", 11, 4, "198.18.0.99")},
			auth:    true,
			want:    []PeerView{updated(aL, member("a", "10.244.1.0/24", 11, 4, "198.18.0.99"))},
		},
		{
			name:    "same epoch lower version: etcd data wins",
			view:    []subnet.Lease{aL},
			members: []Member{member("a", "10.244.1.0/24", 11, 2, "198.18.0.99")},
			want:    []PeerView{fromEtcd(aL, StateAlive, t0)},
		},
		{
			name:    "higher etcd version than gossip after write-back",
			view:    []subnet.Lease{with(aL, func(l *subnet.Lease) { l.Record.Version = 9 })},
			members: []Member{member("a", "10.244.1.0/24", 11, 8, "198.18.0.99")},
			want:    []PeerView{fromEtcd(with(aL, func(l *subnet.Lease) { l.Record.Version = 9 }), StateAlive, t0)},
		},
		{
			name:    "older epoch in gossip: data ignored",
			view:    []subnet.Lease{aL},
			members: []Member{member("a", "10.244.1.0/24", 7, 50, "198.18.0.99")},
			want:    []PeerView{fromEtcd(aL, StateAlive, t0)},
		},
		{
			name:    "same epoch higher version from another node ID: ignored",
			view:    []subnet.Lease{aL},
			members: []Member{with(member("a", "10.244.1.0/24", 11, 9, "198.18.0.99"), func(m *Member) { m.Meta.NodeID = "impostor" })},
			want:    []PeerView{fromEtcd(aL, StateAlive, t0)},
		},
		{
			name:    "same epoch higher version without node ID: never the same node",
			view:    []subnet.Lease{aL},
			members: []Member{noID(member("a", "10.244.1.0/24", 11, 9, "198.18.0.99"))},
			want:    []PeerView{fromEtcd(aL, StateAlive, t0)},
		},
		{
			name:    "same epoch higher version, record without node ID: ignored",
			view:    []subnet.Lease{with(aL, func(l *subnet.Lease) { l.Record.NodeID = "" })},
			members: []Member{noID(member("a", "10.244.1.0/24", 11, 9, "198.18.0.99"))},
			want:    []PeerView{fromEtcd(with(aL, func(l *subnet.Lease) { l.Record.NodeID = "" }), StateAlive, t0)},
		},
		{
			name:    "same epoch higher version under another name with the node's ID: ignored",
			view:    []subnet.Lease{aL},
			members: []Member{with(member("x", "10.244.1.0/24", 11, 9, "198.18.0.99"), func(m *Member) { m.Meta.NodeID = "id-a" })},
			want:    []PeerView{fromEtcd(aL, StateUnknown, time.Time{})},
		},
		{
			name:    "dead member keeps its routes",
			view:    []subnet.Lease{aL, bL},
			members: []Member{dead(member("a", "10.244.1.0/24", 11, 3, "198.18.0.11")), with(member("b", "", 0, 0, "198.18.0.12"), func(m *Member) { m.State = StateLeft })},
			want:    []PeerView{fromEtcd(aL, StateDead, t1), fromEtcd(bL, StateLeft, t0)},
		},
		{
			name:    "dead member with newer version still updates its data",
			view:    []subnet.Lease{aL},
			members: []Member{dead(member("a", "10.244.1.0/24", 11, 4, "198.18.0.99"))},
			want:    []PeerView{updated(aL, dead(member("a", "10.244.1.0/24", 11, 4, "198.18.0.99")))},
		},
		{
			name:    "member without metadata gives only its state",
			view:    []subnet.Lease{aL},
			members: []Member{{Name: "a", State: StateSuspect, Since: t1}},
			want:    []PeerView{fromEtcd(aL, StateSuspect, t1)},
		},
		{
			name:    "subnet not in view, etcd down: provisional",
			members: []Member{member("c", "10.244.3.0/24", 13, 1, "198.18.0.13")},
			want:    []PeerView{prov(member("c", "10.244.3.0/24", 13, 1, "198.18.0.13"))},
		},
		{
			name:    "subnet not in view, etcd up: lapses",
			members: []Member{member("c", "10.244.3.0/24", 13, 1, "198.18.0.13")},
			auth:    true,
		},
		{
			name:    "subnet not in view, no network config: not used",
			members: []Member{member("c", "10.244.3.0/24", 13, 1, "198.18.0.13")},
			noNet:   true,
		},
		{
			name:    "suspect member's claim used",
			members: []Member{with(member("c", "10.244.3.0/24", 13, 1, "198.18.0.13"), func(m *Member) { m.State = StateSuspect })},
			want:    []PeerView{prov(with(member("c", "10.244.3.0/24", 13, 1, "198.18.0.13"), func(m *Member) { m.State = StateSuspect }))},
		},
		{
			name:    "dead member's provisional claim lapses",
			members: []Member{dead(member("c", "10.244.3.0/24", 13, 1, "198.18.0.13"))},
		},
		{
			name:    "left member's provisional claim lapses",
			members: []Member{with(member("c", "10.244.3.0/24", 13, 1, "198.18.0.13"), func(m *Member) { m.State = StateLeft })},
		},
		{
			name:    "claim without node ID on a free subnet: still a provisional claim",
			members: []Member{noID(member("c", "10.244.3.0/24", 13, 1, "198.18.0.13"))},
			want:    []PeerView{prov(noID(member("c", "10.244.3.0/24", 13, 1, "198.18.0.13")))},
		},
		{
			name:    "claim without epoch is not a claim",
			members: []Member{member("c", "10.244.3.0/24", 0, 1, "198.18.0.13")},
		},
		{
			name: "claims outside the network or at another length: refused",
			members: []Member{
				member("c1", "101.0.0.0/8", 13, 1, "198.18.0.13"),
				member("c2", "0.0.0.0/1", 13, 1, "198.18.0.13"),
				member("c3", "128.0.0.0/1", 13, 1, "198.18.0.13"),
				member("c4", "10.244.3.0/25", 13, 1, "198.18.0.13"),
				member("c5", "10.244.0.0/16", 13, 1, "198.18.0.13"),
				member("c6", "10.245.3.0/24", 13, 1, "198.18.0.13"),
				member("c7", "10.244.3.7/24", 13, 1, "198.18.0.13"),
				member("c8", "198.18.0.1/32", 13, 1, "198.18.0.13"),
				member("c9", "::/1", 13, 1, "198.18.0.13"),
				member("ca", "fd10:244:0:100::/64", 13, 1, "198.18.0.13"),
				member("cb", "fd10:244:0:3::/80", 13, 1, "198.18.0.13"),
				v6(member("cc", "10.244.3.0/24", 13, 1, "198.18.0.13"), "fd10:245::/64"),
			},
		},
		{
			name:    "IPv6 claim inside the network: provisional",
			members: []Member{member("c", "fd10:244:0:3::/64", 13, 1, "198.18.0.13")},
			want:    []PeerView{prov(member("c", "fd10:244:0:3::/64", 13, 1, "198.18.0.13"))},
		},
		{
			name:    "IPv6 claim in an IPv4-only network: refused",
			members: []Member{v6(member("c", "10.244.3.0/24", 13, 1, "198.18.0.13"), "fd10:244:0:3::/64")},
			network: &subnet.Config{Network: pfx("10.244.0.0/16"), SubnetLen: 24},
		},
		{
			name:    "newer epoch by the same node replaces the lease provisionally",
			view:    []subnet.Lease{aL},
			members: []Member{member("a", "10.244.1.0/24", 20, 1, "198.18.0.99")},
			want:    []PeerView{prov(member("a", "10.244.1.0/24", 20, 1, "198.18.0.99"))},
		},
		{
			name:    "newer epoch by the same node, etcd up: lease kept",
			view:    []subnet.Lease{aL},
			members: []Member{member("a", "10.244.1.0/24", 20, 1, "198.18.0.99")},
			auth:    true,
			want:    []PeerView{fromEtcd(aL, StateAlive, t0)},
		},
		{
			name:    "newer epoch under the holder's name without node ID: refused",
			view:    []subnet.Lease{aL},
			members: []Member{noID(member("a", "10.244.1.0/24", 20, 1, "198.18.0.99"))},
			want:    []PeerView{fromEtcd(aL, StateAlive, t0)},
		},
		{
			name:    "newer epoch by another node: refused",
			view:    []subnet.Lease{aL, bL},
			members: []Member{member("a", "", 0, 0, "198.18.0.11"), member("c", "10.244.1.0/24", 20, 1, "198.18.0.13")},
			want:    []PeerView{fromEtcd(aL, StateAlive, t0), fromEtcd(bL, StateUnknown, time.Time{})},
		},
		{
			name:    "node moved to a subnet etcd's view lacks: old lease superseded",
			view:    []subnet.Lease{aL, bL},
			members: []Member{member("a", "10.244.9.0/24", 30, 1, "198.18.0.11")},
			want:    []PeerView{prov(member("a", "10.244.9.0/24", 30, 1, "198.18.0.11")), fromEtcd(bL, StateUnknown, time.Time{})},
		},
		{
			name:    "node claiming a subnet another node holds at an older epoch: refused",
			view:    []subnet.Lease{aL, bL},
			members: []Member{member("a", "10.244.2.0/24", 30, 1, "198.18.0.11")},
			want:    []PeerView{fromEtcd(aL, StateAlive, t0), fromEtcd(bL, StateUnknown, time.Time{})},
		},
		{
			name: "dual-stack claim whose IPv6 subnet another node holds: refused",
			view: []subnet.Lease{aDual},
			members: []Member{
				v6(member("c", "10.244.3.0/24", 30, 1, "198.18.0.13"), "fd10:244:0:1::/64"),
			},
			want: []PeerView{fromEtcd(aDual, StateUnknown, time.Time{})},
		},
		{
			name: "same name, other node ID, new subnet: old lease kept",
			view: []subnet.Lease{aL},
			members: []Member{with(member("a", "10.244.9.0/24", 30, 1, "198.18.0.50"), func(m *Member) {
				m.Meta.NodeID = "other"
			})},
			want: []PeerView{
				fromEtcd(aL, StateAlive, t0),
				prov(with(member("a", "10.244.9.0/24", 30, 1, "198.18.0.50"), func(m *Member) { m.Meta.NodeID = "other" })),
			},
		},
		{
			name:    "an older claim does not supersede a newer lease",
			view:    []subnet.Lease{with(aL, func(l *subnet.Lease) { l.Epoch = 40 })},
			members: []Member{member("a", "10.244.9.0/24", 30, 1, "198.18.0.11")},
			want: []PeerView{
				fromEtcd(with(aL, func(l *subnet.Lease) { l.Epoch = 40 }), StateAlive, t0),
				prov(member("a", "10.244.9.0/24", 30, 1, "198.18.0.11")),
			},
		},
		{
			name:    "gossip never takes self's subnet",
			view:    []subnet.Lease{selfL},
			members: []Member{member("c", "10.244.0.0/24", 99, 1, "198.18.0.13")},
		},
		{
			name:    "member named self ignored",
			view:    []subnet.Lease{selfL},
			members: []Member{member("self", "10.244.5.0/24", 99, 1, "198.18.0.10")},
		},
		{
			name: "conflict on an unknown subnet: higher epoch wins",
			members: []Member{
				member("c", "10.244.3.0/24", 13, 9, "198.18.0.13"),
				member("d", "10.244.3.0/24", 14, 1, "198.18.0.14"),
			},
			want: []PeerView{prov(member("d", "10.244.3.0/24", 14, 1, "198.18.0.14"))},
		},
		{
			name: "conflict, same epoch: higher version wins",
			members: []Member{
				member("c", "10.244.3.0/24", 13, 2, "198.18.0.13"),
				member("d", "10.244.3.0/24", 13, 1, "198.18.0.14"),
			},
			want: []PeerView{prov(member("c", "10.244.3.0/24", 13, 2, "198.18.0.13"))},
		},
		{
			name: "conflict, same epoch and version: alive beats suspect",
			members: []Member{
				with(member("c", "10.244.3.0/24", 13, 2, "198.18.0.13"), func(m *Member) { m.State = StateSuspect }),
				member("d", "10.244.3.0/24", 13, 2, "198.18.0.14"),
			},
			want: []PeerView{prov(member("d", "10.244.3.0/24", 13, 2, "198.18.0.14"))},
		},
		{
			name: "conflict, all equal: smaller name wins",
			members: []Member{
				member("d", "10.244.3.0/24", 13, 2, "198.18.0.14"),
				member("c", "10.244.3.0/24", 13, 2, "198.18.0.13"),
			},
			want: []PeerView{prov(member("c", "10.244.3.0/24", 13, 2, "198.18.0.13"))},
		},
		{
			name: "claims of different IPv4 subnets sharing an IPv6 subnet: the first subnet's claim wins",
			members: []Member{
				v6(member("d", "10.244.4.0/24", 13, 2, "198.18.0.14"), "fd10:244:0:3::/64"),
				v6(member("c", "10.244.3.0/24", 13, 2, "198.18.0.13"), "fd10:244:0:3::/64"),
			},
			want: []PeerView{prov(v6(member("c", "10.244.3.0/24", 13, 2, "198.18.0.13"), "fd10:244:0:3::/64"))},
		},
		{
			name: "claim of a leased subnet by another node does not stop the holder's update",
			view: []subnet.Lease{aL},
			members: []Member{
				member("a", "10.244.1.0/24", 11, 8, "198.18.0.99"),
				member("c", "10.244.1.0/24", 25, 1, "198.18.0.13"),
			},
			want: []PeerView{updated(aL, member("a", "10.244.1.0/24", 11, 8, "198.18.0.99"))},
		},
		{
			name: "several same-epoch updates: only the holder's name and ID count",
			view: []subnet.Lease{aL},
			members: []Member{
				member("a", "10.244.1.0/24", 11, 6, "198.18.0.96"),
				with(member("a2", "10.244.1.0/24", 11, 7, "198.18.0.97"), func(m *Member) { m.Meta.NodeID = "id-a" }),
				member("a3", "10.244.1.0/24", 11, 9, "198.18.0.98"),
			},
			want: []PeerView{updated(aL, member("a", "10.244.1.0/24", 11, 6, "198.18.0.96"))},
		},
		{
			name:    "dual-stack lease updated by gossip keeps etcd's subnets",
			view:    []subnet.Lease{aDual},
			members: []Member{with(member("a", "10.244.1.0/24", 11, 4, "198.18.0.99"), func(m *Member) { m.Meta.PublicIPv6 = ip("2001:2::99") })},
			want:    []PeerView{updated(aDual, with(member("a", "10.244.1.0/24", 11, 4, "198.18.0.99"), func(m *Member) { m.Meta.PublicIPv6 = ip("2001:2::99") }))},
		},
		{
			name:    "IPv6-only lease matched by its IPv6 subnet",
			view:    []subnet.Lease{v6L},
			members: []Member{member("v6", "fd10:244:0:7::/64", 17, 3, "198.18.0.77")},
			want:    []PeerView{updated(v6L, member("v6", "fd10:244:0:7::/64", 17, 3, "198.18.0.77"))},
		},
		{
			name:    "unmasked subnet in metadata still matches its lease",
			view:    []subnet.Lease{aL},
			members: []Member{member("a", "10.244.1.7/24", 11, 4, "198.18.0.99")},
			want:    []PeerView{updated(aL, member("a", "10.244.1.7/24", 11, 4, "198.18.0.99"))},
		},
		{
			name: "duplicate leases of one subnet in a view: newer epoch",
			view: []subnet.Lease{aL, with(aL, func(l *subnet.Lease) { l.Epoch = 15; l.Record.NodeName = "a-new" })},
			want: []PeerView{fromEtcd(with(aL, func(l *subnet.Lease) { l.Epoch = 15; l.Record.NodeName = "a-new" }), StateUnknown, time.Time{})},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nc := testNetwork
			if tc.network != nil {
				nc = tc.network
			}
			if tc.noNet {
				nc = nil
			}
			// The view as given, and in the order a store gives it
			// (sorted by primary subnet) and the reverse: Merge takes
			// a sorted view without a map, any other with one.
			sorted := slices.SortedStableFunc(slices.Values(tc.view), func(a, b subnet.Lease) int {
				return a.Primary().Addr().Compare(b.Primary().Addr())
			})
			reversed := slices.Clone(sorted)
			slices.Reverse(reversed)
			for _, view := range [][]subnet.Lease{tc.view, sorted, reversed} {
				got := Merge(MergeInput{
					Self: "self", View: subnet.View{Leases: view, Complete: true},
					Members: tc.members, Network: nc, Authoritative: tc.auth,
				})
				if diff := cmp.Diff(tc.want, got, cmpNet); diff != "" {
					t.Errorf("Merge() of the view %v mismatch (-want +got):\n%s", view, diff)
				}
			}
		})
	}
}

var cmpNet = cmp.Options{cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })}

// TestMergeDoesNotModifyInputs guards the purity Merge promises.
func TestMergeDoesNotModifyInputs(t *testing.T) {
	view := subnet.View{Leases: []subnet.Lease{
		lease("a", "10.244.1.0/24", 11, 3, "198.18.0.11"),
		lease("b", "10.244.2.0/24", 12, 5, "198.18.0.12"),
	}}
	members := []Member{
		member("a", "10.244.1.0/24", 11, 4, "198.18.0.99"),
		member("c", "10.244.2.0/24", 20, 1, "198.18.0.13"),
		member("d", "10.244.2.0/24", 21, 1, "198.18.0.14"),
	}
	wantView := subnet.View{Leases: append([]subnet.Lease(nil), view.Leases...)}
	wantMembers := append([]Member(nil), members...)
	for _, auth := range []bool{false, true, false} {
		Merge(MergeInput{Self: "self", View: view, Members: members, Network: testNetwork, Authoritative: auth})
	}
	opts := cmpNet
	if diff := cmp.Diff(wantView, view, opts); diff != "" {
		t.Errorf("view modified (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantMembers, members, opts); diff != "" {
		t.Errorf("members modified (-want +got):\n%s", diff)
	}
}
