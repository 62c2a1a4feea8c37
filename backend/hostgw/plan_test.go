// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package hostgw

import (
	"fmt"
	"net/netip"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/weftnet/weft/backend"
)

func TestPlanRoutes(t *testing.T) {
	const eth0, eth1 = 2, 3
	reach := func(a netip.Addr) reachability {
		switch a.String() {
		case "198.18.0.2", "2001:2::2", "198.18.0.4":
			return reachability{link: eth0}
		case "198.18.5.5":
			return reachability{link: eth1, reason: "eth1"}
		case "198.18.1.3":
			return reachability{reason: "the kernel routes it via 198.18.0.254"}
		}
		return reachability{reason: "no route to it"}
	}
	P := netip.MustParsePrefix
	A := netip.MustParseAddr
	local := backend.Local{Subnet: P("10.244.1.0/24"), IPv6Subnet: P("fd10:244:0:1::/64")}
	tests := []struct {
		name     string
		peers    []backend.Peer
		routes   []string
		problems map[string]string
	}{
		{
			name: "dual-stack peer on the segment",
			peers: []backend.Peer{{Name: "n2", Subnet: P("10.244.2.0/24"), IPv6Subnet: P("fd10:244:0:2::/64"),
				PublicIP: A("198.18.0.2"), PublicIPv6: A("2001:2::2")}},
			routes: []string{"10.244.2.0/24 via 198.18.0.2 dev 2", "fd10:244:0:2::/64 via 2001:2::2 dev 2"},
		},
		{
			name:     "peer behind a router gets no route",
			peers:    []backend.Peer{{Name: "n3", Subnet: P("10.244.3.0/24"), PublicIP: A("198.18.1.3")}},
			problems: map[string]string{"n3": "subnet 10.244.3.0/24: public IP 198.18.1.3 is not on this node's L2 segment (the kernel routes it via 198.18.0.254)"},
		},
		{
			name:     "peer on another interface",
			peers:    []backend.Peer{{Name: "n5", Subnet: P("10.244.5.0/24"), PublicIP: A("198.18.5.5")}},
			problems: map[string]string{"n5": "subnet 10.244.5.0/24: public IP 198.18.5.5 is directly reachable only through eth1, not the underlay interface"},
		},
		{
			name: "IPv6 subnet without public IPv6: IPv4 still routed",
			peers: []backend.Peer{{Name: "n4", Subnet: P("10.244.4.0/24"), IPv6Subnet: P("fd10:244:0:4::/64"),
				PublicIP: A("198.18.0.4")}},
			routes:   []string{"10.244.4.0/24 via 198.18.0.4 dev 2"},
			problems: map[string]string{"n4": "subnet fd10:244:0:4::/64: peer has no public IPv6 address"},
		},
		{
			name: "overlaps: ours, and the older claim wins",
			peers: []backend.Peer{
				{Name: "late", Epoch: 9, Subnet: P("10.244.2.0/24"), PublicIP: A("198.18.0.4")},
				{Name: "n2", Epoch: 2, Subnet: P("10.244.2.0/24"), PublicIP: A("198.18.0.2")},
				{Name: "mine", Epoch: 1, Subnet: P("10.244.1.0/25"), PublicIP: A("198.18.0.4")},
				{Name: "empty", Epoch: 1, PublicIP: A("198.18.0.4")},
			},
			routes: []string{"10.244.2.0/24 via 198.18.0.2 dev 2"},
			problems: map[string]string{
				"late":  "subnet 10.244.2.0/24 overlaps 10.244.2.0/24 of n2",
				"mine":  "subnet 10.244.1.0/25 overlaps 10.244.1.0/24 of this node",
				"empty": "no subnet",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			routes, problems := planRoutes(backend.Desired{Local: local, Peers: tt.peers}, eth0, reach)
			var got []string
			for _, r := range routes {
				got = append(got, fmt.Sprintf("%s via %s dev %d", r.Dst, r.Gw, r.LinkIndex))
			}
			sort.Strings(got)
			if diff := cmp.Diff(tt.routes, got); diff != "" {
				t.Errorf("routes (-want +got):\n%s", diff)
			}
			if tt.problems == nil {
				tt.problems = map[string]string{}
			}
			if diff := cmp.Diff(tt.problems, problems); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}
