// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/daemon/status"
	"github.com/weftnet/weft/subnet"
)

func sampleStatus(now time.Time) status.Report {
	return status.Report{
		Node: status.Node{
			Name: "node-a", ID: "3f0c", Subnet: netip.MustParsePrefix("10.244.1.0/24"), Network: netip.MustParsePrefix("10.244.0.0/16"),
			Iface: "eth0", PublicIP: netip.MustParseAddr("198.18.0.1"), BackendType: "vxlan",
			BackendData: subnet.BackendData{VTEPMAC: "02:00:00:00:00:01"}, MTU: 1450, Epoch: 7, Version: 2,
			Ready: false, NotReady: "first reconcile not done yet", EtcdReachable: true, ConfigError: "Backend.VNI: want a number",
			GossipAddr: "198.18.0.1:7950", GossipEncryption: "off", GossipWarning: "gossip is NOT encrypted", GossipRefused: 12,
			BridgeNetfilter: &status.BridgeNetfilter{Loaded: true, CallIPTables: true, Problem: "net.bridge.bridge-nf-call-ip6tables is 0, want 1"},
		},
		Rejected: []status.RejectedPeer{{
			Name: "rogue", Subnet: netip.MustParsePrefix("0.0.0.0/1"), PublicIP: netip.MustParseAddr("198.18.0.66"), Epoch: 99,
			Source: "gossip", Reason: "subnet 0.0.0.0/1 is not a /24 of the network 10.244.0.0/16",
		}},
		Peers: []status.Peer{{
			Name: "node-b", Subnet: netip.MustParsePrefix("10.244.2.0/24"), PublicIP: netip.MustParseAddr("198.18.0.2"),
			BackendData: subnet.BackendData{VTEPMAC: "02:00:00:00:00:02"}, Epoch: 9, Version: 1, State: "dead",
			Since: now.Add(-3 * time.Second), Source: "gossip", Provisional: true, Problem: "not on this L2 segment",
		}},
		Members:        []status.Member{{Name: "node-b", Addr: "198.18.0.2:7950", State: "dead", Since: now.Add(-3 * time.Second), Subnet: netip.MustParsePrefix("10.244.2.0/24")}},
		RejectedLeases: []subnet.RejectedLease{{Key: "0.0.0.0-1", Reason: "subnet 0.0.0.0/1 is not a /24 of network 10.244.0.0/16"}},
	}
}

func TestRenderStatus(t *testing.T) {
	now := time.Now()
	var b bytes.Buffer
	if err := renderStatus(&b, sampleStatus(now), now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"node-a (3f0c)", "no: first reconcile not done yet", "10.244.1.0/24", "198.18.0.1 on eth0", "vxlan vtep 02:00:00:00:00:01, mtu 1450",
		"CONFIG ERROR:", "Backend.VNI", "REJECTED LEASE:", "0.0.0.0-1: subnet 0.0.0.0/1 is not a /24 of network 10.244.0.0/16", "1 peer(s)", "node-b", "gossip (provisional)", "dead", "3s ago", "not on this L2 segment",
		"198.18.0.1:7950, encryption off, 12 member name(s) refused (table full)", "GOSSIP:", "gossip is NOT encrypted",
		"br_netfilter:", "loaded, bridge-nf-call-iptables 1, bridge-nf-call-ip6tables 0", "BR_NETFILTER:", "bridge-nf-call-ip6tables is 0, want 1",
		"1 rejected peer entr(ies)", "rogue", "0.0.0.0/1", "198.18.0.66", "is not a /24 of the network 10.244.0.0/16",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status output lacks %q:\n%s", want, b.String())
		}
	}
}

func TestMembersCommand(t *testing.T) {
	now := time.Now()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(sampleStatus(now))
	}))
	defer srv.Close()
	st, raw, err := fetchStatus(t.Context(), strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Node.Name != "node-a" || len(raw) == 0 {
		t.Fatalf("fetched %+v", st.Node)
	}
	var b bytes.Buffer
	if err := renderMembers(&b, st, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"NAME", "STATE", "SINCE", "ADDRESS", "SUBNET", "node-b", "dead", "198.18.0.2:7950", "10.244.2.0/24"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("members output lacks %q:\n%s", want, b.String())
		}
	}
	if _, _, err := fetchStatus(t.Context(), "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "is weftd running") {
		t.Errorf("unreachable weftd: err = %v", err)
	}
}

// TestRenderStatusStore: the store row names the store and reads the
// field of the weftd that wrote the document (an older one has only
// etcdReachable).
func TestRenderStatusStore(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name string
		node status.Node
		want string
	}{
		{"older weftd", status.Node{EtcdReachable: true}, "store: etcd reachable"},
		{"etcd", status.Node{Store: status.StoreEtcd, StoreReachable: false, EtcdReachable: false}, "store: etcd UNREACHABLE"},
		{"kube", status.Node{Store: status.StoreKube, StoreReachable: true, EtcdReachable: true}, "store: kube-apiserver reachable"},
		{"kube down", status.Node{Store: status.StoreKube}, "store: kube-apiserver UNREACHABLE"},
	} {
		st := sampleStatus(now)
		st.Node.Store, st.Node.StoreReachable, st.Node.EtcdReachable = tc.node.Store, tc.node.StoreReachable, tc.node.EtcdReachable
		var b bytes.Buffer
		if err := renderStatus(&b, st, now); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(strings.Fields(b.String()), " "), tc.want) {
			t.Errorf("%s: status output lacks %q:\n%s", tc.name, tc.want, b.String())
		}
	}
}
