// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package subnet

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var netipEqual = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})

func validRecord() Record {
	return Record{
		NodeName: "node-1.example", NodeID: "3f1c2a9e-0000-4000-8000-000000000001",
		PublicIP: netip.MustParseAddr("198.18.0.1"), PublicIPv6: netip.MustParseAddr("2001:2::1"),
		GossipAddr: "198.18.0.1:7950", BackendType: BackendWireGuard,
		BackendData: BackendData{WireGuardKey: base64.StdEncoding.EncodeToString(make([]byte, 32)), WireGuardPort: 51820},
		Version:     3,
	}
}

func TestRecordValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(r *Record)
		want string // "": valid
	}{
		{"valid", func(r *Record) {}, ""},
		{"vxlan", func(r *Record) {
			r.BackendType, r.BackendData = BackendVXLAN, BackendData{VTEPMAC: "02:42:ac:11:00:02"}
		}, ""},
		{"no addresses (the peer check judges those)", func(r *Record) { r.PublicIP, r.PublicIPv6, r.GossipAddr = netip.Addr{}, netip.Addr{}, "" }, ""},
		{"gossip host name", func(r *Record) { r.GossipAddr = "node-1.example:7950" }, ""},
		{"empty name", func(r *Record) { r.NodeName = "" }, "nodeName is empty"},
		{"long name", func(r *Record) { r.NodeName = strings.Repeat("n", 254) }, "nodeName is 254 bytes long, more than 253"},
		{"name with a space", func(r *Record) { r.NodeName = "a b" }, `nodeName "a b" has a character that is not visible ASCII`},
		{"name with a newline", func(r *Record) { r.NodeName = "a\nb" }, `nodeName "a\nb" has a character that is not visible ASCII`},
		{"empty ID", func(r *Record) { r.NodeID = "" }, "nodeID is empty"},
		{"long ID", func(r *Record) { r.NodeID = strings.Repeat("i", 65) }, "nodeID is 65 bytes long, more than 64"},
		{"zone", func(r *Record) { r.PublicIP = netip.MustParseAddr("fe80::1%eth0") }, "publicIP fe80::1%eth0 has a zone"},
		{"IPv4 as IPv6", func(r *Record) { r.PublicIPv6 = netip.MustParseAddr("198.18.0.1") }, "publicIPv6 198.18.0.1 is not a plain IPv6 address"},
		{"mapped IPv6", func(r *Record) { r.PublicIPv6 = netip.MustParseAddr("::ffff:198.18.0.1") }, "publicIPv6 ::ffff:198.18.0.1 is not a plain IPv6 address"},
		{"gossip without port", func(r *Record) { r.GossipAddr = "198.18.0.1" }, `gossipAddr: "198.18.0.1" is not host:port`},
		{"gossip port 0", func(r *Record) { r.GossipAddr = "198.18.0.1:0" }, `gossipAddr: port "0" is not 1-65535`},
		{"gossip empty host", func(r *Record) { r.GossipAddr = ":7950" }, "gossipAddr: host is empty"},
		{"gossip too long", func(r *Record) { r.GossipAddr = strings.Repeat("h", 300) + ":1" }, "gossipAddr: 302 bytes long, more than 300"},
		{"backend type", func(r *Record) { r.BackendType = "ipip" }, `backendType "ipip" is not vxlan, wireguard or host-gw`},
		{"MAC of 8 bytes", func(r *Record) { r.BackendData.VTEPMAC = "02:00:00:00:00:00:00:01" }, `backendData.vtepMAC "02:00:00:00:00:00:00:01" is not a 6-byte MAC address`},
		{"MAC garbage", func(r *Record) { r.BackendData.VTEPMAC = "zz" }, `backendData.vtepMAC "zz" is not a 6-byte MAC address`},
		{"short key", func(r *Record) { r.BackendData.WireGuardKey = "c2hvcnQ=" }, "backendData.wgKey is not a 32-byte key in base64"},
		{"key not base64", func(r *Record) { r.BackendData.WireGuardKey = "!!" }, "backendData.wgKey is not a 32-byte key in base64"},
		{"port", func(r *Record) { r.BackendData.WireGuardPort = 70000 }, "backendData.wgPort 70000 is out of range 0-65535"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRecord()
			tt.edit(&r)
			err := r.Validate()
			if got := errString(err); got != tt.want {
				t.Errorf("Validate: %q, want %q", got, tt.want)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestCheckLease(t *testing.T) {
	p := netip.MustParsePrefix
	dual, err := ParseConfig([]byte(`{"Network": "10.244.0.0/16", "IPv6Network": "fd10:244::/56", "SubnetMin": "10.244.10.0"}`))
	if err != nil {
		t.Fatal(err)
	}
	v4, err := ParseConfig([]byte(`{"Network": "10.244.0.0/16", "SubnetLen": 25}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		cfg    *Config
		v4, v6 netip.Prefix
		want   string
	}{
		{"dual-stack", dual, p("10.244.3.0/24"), p("fd10:244:0:3::/64"), ""},
		{"below SubnetMin (it bounds new claims only)", dual, p("10.244.1.0/24"), netip.Prefix{}, ""},
		{"IPv6 only", dual, netip.Prefix{}, p("fd10:244:0:ff::/64"), ""},
		{"no subnet", dual, netip.Prefix{}, netip.Prefix{}, "the lease has no subnet"},
		{"half the internet", dual, p("0.0.0.0/1"), netip.Prefix{}, "subnet 0.0.0.0/1 is not a /24 of network 10.244.0.0/16"},
		{"a host route to etcd", dual, p("198.18.0.2/32"), netip.Prefix{}, "subnet 198.18.0.2/32 is not a /24 of network 10.244.0.0/16"},
		{"outside the network", dual, p("10.245.0.0/24"), netip.Prefix{}, "subnet 10.245.0.0/24 is not a /24 of network 10.244.0.0/16"},
		{"other length", v4, p("10.244.3.0/24"), netip.Prefix{}, "subnet 10.244.3.0/24 is not a /25 of network 10.244.0.0/16"},
		{"inside another's subnet", v4, p("10.244.3.128/26"), netip.Prefix{}, "subnet 10.244.3.128/26 is not a /25 of network 10.244.0.0/16"},
		{"IPv6 outside", dual, p("10.244.3.0/24"), p("fd10:245::/64"), "IPv6 subnet fd10:245::/64 is not a /64 of network fd10:244::/56"},
		{"IPv6 in an IPv4 network", v4, p("10.244.3.0/25"), p("fd10:244::/64"), "IPv6 subnet fd10:244::/64: the network has no IPv6 part"},
		{"families swapped", dual, p("fd10:244::/64"), netip.Prefix{}, "subnet fd10:244::/64 is of the wrong address family"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := Lease{Subnet: tt.v4, IPv6Subnet: tt.v6, Record: validRecord()}
			if got := errString(tt.cfg.CheckLease(&l)); got != tt.want {
				t.Errorf("CheckLease: %q, want %q", got, tt.want)
			}
		})
	}
	bad := Lease{Subnet: p("10.244.3.0/24"), Record: validRecord()}
	bad.Record.NodeID = ""
	if got, want := errString(dual.CheckLease(&bad)), "record: nodeID is empty"; got != want {
		t.Errorf("CheckLease of a bad record: %q, want %q", got, want)
	}
}

func TestViewCheck(t *testing.T) {
	p := netip.MustParsePrefix
	cfg, err := ParseConfig([]byte(`{"Network": "10.244.0.0/16"}`))
	if err != nil {
		t.Fatal(err)
	}
	lease := func(s string) Lease { return Lease{Subnet: p(s), Record: validRecord()} }
	in := View{
		Leases:   []Lease{lease("0.0.0.0/1"), lease("10.244.1.0/24"), lease("10.244.2.0/25"), lease("10.244.3.0/24")},
		Complete: true, Revision: 7,
		Rejected: []RejectedLease{{Key: "README", Reason: "store's own"}},
	}
	orig := View{Leases: append([]Lease(nil), in.Leases...), Complete: true, Revision: 7, Rejected: append([]RejectedLease(nil), in.Rejected...)}
	got := in.Check(cfg)
	want := View{
		Leases:   []Lease{lease("10.244.1.0/24"), lease("10.244.3.0/24")},
		Complete: true, Revision: 7,
		Rejected: []RejectedLease{
			{Key: "0.0.0.0-1", Reason: "subnet 0.0.0.0/1 is not a /24 of network 10.244.0.0/16"},
			{Key: "10.244.2.0-25", Reason: "subnet 10.244.2.0/25 is not a /24 of network 10.244.0.0/16"},
			{Key: "README", Reason: "store's own"},
		},
	}
	if diff := cmp.Diff(want, got, netipEqual); diff != "" {
		t.Errorf("Check (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(orig, in, netipEqual); diff != "" {
		t.Errorf("Check modified its view (-before +after):\n%s", diff)
	}
	// Every lease valid: the same leases, nothing rejected.
	valid := View{Leases: []Lease{lease("10.244.1.0/24"), lease("10.244.3.0/24")}, Complete: true, Revision: 8}
	if diff := cmp.Diff(valid, valid.Check(cfg), netipEqual); diff != "" {
		t.Errorf("Check of valid leases (-want +got):\n%s", diff)
	}
}

// TestViewChecker: a ViewChecker gives what View.Check gives over a
// stream of views that change a lease or two at a time, some changes
// valid, some not, and across a change of config; and at least a fifth
// of the views take its path by changes (the last view passed whole under
// the same config), so that path is the one compared. It does not count
// the leases checked on that path: the code checks those that differ.
func TestViewChecker(t *testing.T) {
	cfgA, err := ParseConfig([]byte(`{"Network": "10.244.0.0/16"}`))
	if err != nil {
		t.Fatal(err)
	}
	cfgB, err := ParseConfig([]byte(`{"Network": "10.244.0.0/16", "SubnetLen": 25}`))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	leases := make([]Lease, 100)
	for i := range leases {
		leases[i] = Lease{Subnet: netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", i)), Record: validRecord(), Epoch: int64(i + 1)}
	}
	var vc ViewChecker
	cfg := cfgA
	fast := 0
	for step := range 1000 {
		next := slices.Clone(leases)
		for range 1 + rng.IntN(2) {
			l := &next[rng.IntN(len(next))]
			switch k := rng.IntN(40); {
			case k == 0: // a record that does not validate
				l.Record.PublicIP = netip.Addr{}
			case k == 1: // a subnet outside the network
				l.Subnet = netip.MustParsePrefix("10.245.0.0/24")
			default: // a valid change
				l.Record.Version = uint64(step)
			}
		}
		if rng.IntN(4) == 0 { // the broken leases mended
			for i := range next {
				if next[i].Subnet.Bits() != 24 || !next[i].Record.PublicIP.IsValid() || next[i].Subnet.Addr().As4()[1] != 244 {
					next[i].Record, next[i].Subnet = validRecord(), netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", i))
				}
			}
		}
		if rng.IntN(150) == 0 {
			cfg = map[*Config]*Config{cfgA: cfgB, cfgB: cfgA}[cfg]
		}
		leases = next
		v := View{Leases: leases, Complete: true, Revision: int64(step), Rejected: []RejectedLease{{Key: "z", Reason: "store's own"}}}
		incremental := vc.cfg == cfg && vc.last != nil
		got := vc.Check(v, cfg)
		if incremental && len(got.Leases) == len(v.Leases) {
			fast++
		}
		if diff := cmp.Diff(v.Check(cfg), got, netipEqual); diff != "" {
			t.Fatalf("step %d: ViewChecker differs from View.Check (-want +got):\n%s", step, diff)
		}
	}
	t.Logf("%d of 1000 views checked by their changes alone", fast)
	if fast < 200 {
		t.Errorf("only %d of 1000 views were checked by their changes alone", fast)
	}
}
