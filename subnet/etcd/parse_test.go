// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcd

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/subnet"
)

// put writes raw values under s's prefix, as anyone holding the store's
// credentials can.
func put(t *testing.T, s *Store, kv map[string]string) {
	t.Helper()
	for k, v := range kv {
		if _, err := s.c.Put(ctxT(t, 10*time.Second), k, v); err != nil {
			t.Fatal(err)
		}
	}
}

func recordJSON(t *testing.T, v value) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRejectedRecords: lease keys written straight into etcd that do not
// hold a well-formed record for the subnet their name says are not handed
// out as leases, by List or WatchLeases; each is reported with its reason,
// and its subnet still counts as taken for claims.
func TestRejectedRecords(t *testing.T) {
	s := newStore(t)
	p := netip.MustParsePrefix
	good := value{Record: record("good"), Subnet: p("10.244.1.0/24")}
	wrongSubnet := value{Record: record("liar"), Subnet: p("10.244.9.0/24")}
	noSubnet := value{Record: record("old")}
	badMAC := value{Record: record("mac"), Subnet: p("10.244.4.0/24")}
	badMAC.BackendData.VTEPMAC = "02:00:00:00:00:01:02:03"
	badKey := value{Record: record("wg"), Subnet: p("10.244.5.0/24")}
	badKey.BackendType, badKey.BackendData.WireGuardKey = subnet.BackendWireGuard, "c2hvcnQ="
	noName := value{Record: record(""), Subnet: p("10.244.6.0/24")}
	sixWrongFamily := value{Record: record("six"), IPv6Subnet: p("fd10:244::/64"), Subnet: p("fd10:245::/64")}
	huge := value{Record: record("huge"), Subnet: p("10.244.8.0/24")}
	huge.GossipAddr = "198.18.0.1:7950"
	huge.NodeID = strings.Repeat("x", 64)
	bigJSON := strings.TrimSuffix(recordJSON(t, huge), "}") + `,"pad":"` + strings.Repeat("p", MaxValueSize) + `"}`

	lp := s.LeasesPrefix()
	put(t, s, map[string]string{
		lp + "10.244.1.0-24":    recordJSON(t, good),
		lp + "10.244.2.0-24":    recordJSON(t, wrongSubnet),
		lp + "10.244.3.0-24":    recordJSON(t, noSubnet),
		lp + "10.244.4.0-24":    recordJSON(t, badMAC),
		lp + "10.244.5.0-24":    recordJSON(t, badKey),
		lp + "10.244.6.0-24":    recordJSON(t, noName),
		lp + "10.244.7.0-24":    `{"nodeName": "x"} {"nodeName": "y"}`,
		lp + "10.244.8.0-24":    bigJSON,
		lp + "fd10:244::-64":    recordJSON(t, sixWrongFamily),
		lp + "fd10:0244:1::-64": recordJSON(t, value{Record: record("alias"), IPv6Subnet: p("fd10:244:1::/64")}),
		lp + "README":           "not a lease",
	})
	want := []subnet.RejectedLease{
		{Key: "10.244.2.0-24", Reason: "record's subnet is 10.244.9.0/24, not the key's subnet 10.244.2.0/24"},
		{Key: "10.244.3.0-24", Reason: "record's subnet is missing, not the key's subnet 10.244.3.0/24"},
		{Key: "10.244.4.0-24", Reason: `record: backendData.vtepMAC "02:00:00:00:00:01:02:03" is not a 6-byte MAC address`},
		{Key: "10.244.5.0-24", Reason: "record: backendData.wgKey is not a 32-byte key in base64"},
		{Key: "10.244.6.0-24", Reason: "record: nodeName is empty"},
		{Key: "10.244.7.0-24", Reason: "record has data after its JSON object"},
		{Key: "10.244.8.0-24", Reason: fmt.Sprintf("record is %d bytes, more than %d", len(bigJSON), MaxValueSize)},
		{Key: "README", Reason: `lease key "README" is not <address>-<prefix length>`},
		{Key: "fd10:0244:1::-64", Reason: `lease key "fd10:0244:1::-64" is not written the canonical way (fd10:244:1::-64)`},
		{Key: "fd10:244::-64", Reason: "record's subnet fd10:245::/64 is not a subnet of the other address family"},
	}
	v, err := s.List(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"good=10.244.1.0/24,-@1"}, summary(v)); diff != "" {
		t.Errorf("List leases (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, v.Rejected); diff != "" {
		t.Errorf("List rejected (-want +got):\n%s", diff)
	}

	r, stop := runWatch(t, s)
	defer stop()
	got := waitView(t, s, r)
	if diff := cmp.Diff(want, got.Rejected); diff != "" {
		t.Errorf("watched view's rejected (-want +got):\n%s", diff)
	}
	// A record fixed in place becomes a lease; a stray key deleted goes.
	put(t, s, map[string]string{lp + "10.244.2.0-24": recordJSON(t, value{Record: record("liar"), Subnet: p("10.244.2.0/24")})})
	if _, err := s.c.Delete(ctxT(t, 10*time.Second), lp+"README"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the watch to follow the fixes", func() bool {
		v, _ := r.last()
		return len(v.Rejected) == len(want)-2 && cmp.Equal(names(v), []string{"good", "liar"})
	})

	// Rejected subnets are still taken: a network of the 8 subnets
	// 10.244.0.0/24..10.244.7.0/24 has only 10.244.0.0/24 left free.
	cfg := mustParse(t, `{"Network": "10.244.0.0/21"}`)
	l, err := s.Claim(ctxT(t, 10*time.Second), subnetClaim(cfg, "new"))
	if err != nil || l.Subnet != p("10.244.0.0/24") {
		t.Fatalf("claim: %+v, %v; want 10.244.0.0/24, the only subnet no key holds", l, err)
	}
	if _, err := s.Claim(ctxT(t, 10*time.Second), subnetClaim(cfg, "newer")); !errors.Is(err, subnet.ErrExhausted) {
		t.Errorf("claim in a full network: %v, want ErrExhausted", err)
	}
	// A claim or update with a record others would reject is refused.
	bad := record("bad")
	bad.GossipAddr = "198.18.0.1"
	if _, err := s.Claim(ctxT(t, 10*time.Second), subnet.ClaimRequest{Config: cfg, Record: bad}); err == nil ||
		err.Error() != `claim: invalid record (other nodes would reject it): gossipAddr: "198.18.0.1" is not host:port` {
		t.Errorf("claim with a bad record: %v", err)
	}
	bad = l.Record
	bad.PublicIPv6 = netip.MustParseAddr("198.18.0.1")
	if _, err := s.UpdateRecord(ctxT(t, 10*time.Second), l, bad); err == nil || !strings.Contains(err.Error(), "publicIPv6 198.18.0.1 is not a plain IPv6 address") {
		t.Errorf("update with a bad record: %v", err)
	}
}

// TestListKeyLimit: a listing holding more keys than the store reads fails
// with an error that says so (List, WatchLeases and Claim alike), and
// works again once the keys are gone.
func TestListKeyLimit(t *testing.T) {
	s := newStore(t)
	s.maxListKeys = 5
	for i := range 5 {
		put(t, s, map[string]string{s.LeasesPrefix() + fmt.Sprintf("junk-%d", i): "x"})
	}
	if _, err := s.List(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("List at the limit: %v", err)
	}
	r, stop := runWatch(t, s)
	defer stop()
	waitFor(t, 10*time.Second, "the first view", func() bool { _, n := r.last(); return n > 0 })

	put(t, s, map[string]string{s.LeasesPrefix() + "junk-5": "x"})
	want := fmt.Sprintf("etcd holds more than 5 keys under %s, more than weft reads in one listing: "+
		"remove the keys that are not weft's (etcdctl get --prefix %s --keys-only lists them)", s.LeasesPrefix(), s.LeasesPrefix())
	if _, err := s.List(ctxT(t, 10*time.Second)); err == nil || err.Error() != "list leases: "+want && err.Error() != want {
		t.Errorf("List over the limit: %v\nwant %s", err, want)
	}
	cfg := mustParse(t, `{"Network": "10.244.0.0/16"}`)
	if _, err := s.Claim(ctxT(t, 10*time.Second), subnetClaim(cfg, "a")); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Claim over the limit: %v", err)
	}
	_, before := r.last()
	if _, err := s.c.Delete(ctxT(t, 10*time.Second), s.LeasesPrefix()+"junk-", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "a view after the junk went", func() bool {
		v, n := r.last()
		return n > before && len(v.Rejected) == 0
	})
	if _, err := s.Claim(ctxT(t, 10*time.Second), subnetClaim(cfg, "a")); err != nil {
		t.Errorf("Claim after the junk went: %v", err)
	}
}
