// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kube

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/weftnet/weft/subnet"
)

// The join of Nodes and records, and the keep-alive's judgement, on
// objects as the informers cache them. The store against a real API
// server is tested in store_e2e_test.go.

func testNode(name, uid string, cidrs ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(uid)}}
	n.Spec.PodCIDRs = cidrs
	return n
}

func testRecord(name, owner string, epoch int64, rv string) *WeftNode {
	rec := subnet.Record{
		NodeName: name, NodeID: "id-" + name, PublicIP: netip.MustParseAddr("198.18.0.9"),
		BackendType: subnet.BackendVXLAN, BackendData: subnet.BackendData{VTEPMAC: "02:00:00:00:00:09"}, Version: 3,
	}
	w := newWeftNode(testNode(name, owner), rec)
	w.Spec.Epoch = epoch
	w.ResourceVersion = rv
	return w
}

func TestBuildView(t *testing.T) {
	nodes := []*corev1.Node{
		testNode("a", "uid-a", "10.244.1.0/24", "fd10:244:0:1::/64"),
		testNode("b", "uid-b2", "10.244.2.0/24"),
		testNode("c", "uid-c"), // no podCIDR yet
		testNode("e", "uid-e", "10.244.5.0/24"),
		testNode("f", "uid-f", "10.244.6.0/24", "10.244.7.0/24"),
	}
	bad := testRecord("e", "uid-e", 50, "51")
	bad.Spec.BackendData.VTEPMAC = "not-a-mac"
	recs := []*WeftNode{
		testRecord("a", "uid-a", 10, "12"),
		testRecord("b", "uid-b1", 20, "21"), // owned by an earlier Node b
		testRecord("c", "uid-c", 30, "31"),
		testRecord("d", "uid-d", 40, "41"), // no Node d
		bad,
		testRecord("f", "uid-f", 60, "61"),
		testRecord("g", "uid-g", 0, "71"), // no Node g, and being created
	}
	v := buildView(nodes, recs, 80)
	if !v.Complete || v.Revision != 80 {
		t.Errorf("complete %v revision %d, want true 80", v.Complete, v.Revision)
	}
	if len(v.Leases) != 1 {
		t.Fatalf("leases %+v, want only a's", v.Leases)
	}
	l := v.Leases[0]
	if l.Subnet.String() != "10.244.1.0/24" || l.IPv6Subnet.String() != "fd10:244:0:1::/64" || l.Epoch != 10 || l.ModRevision != 12 || l.Record.NodeName != "a" {
		t.Errorf("lease %+v", l)
	}
	want := map[string]string{
		"b": "owned by Node UID \"uid-b1\"",
		"d": "there is no Node d",
		"e": "vtepMAC",
		"f": "two subnets of one family",
		"g": "there is no Node g",
	}
	if len(v.Rejected) != len(want) {
		t.Errorf("rejected %+v, want keys of %v", v.Rejected, want)
	}
	for _, r := range v.Rejected {
		if w, ok := want[r.Key]; !ok || !strings.Contains(r.Reason, w) {
			t.Errorf("rejected %s: %q, want it to say %q", r.Key, r.Reason, w)
		}
	}
	if v := buildView(nodes, recs, 0); v.Revision != 71 {
		t.Errorf("revision %d, want the highest record's 71", v.Revision)
	}
}

func TestHeld(t *testing.T) {
	w := testRecord("a", "uid-a", 10, "12")
	rec, err := w.record()
	if err != nil {
		t.Fatal(err)
	}
	l := &subnet.Lease{Subnet: netip.MustParsePrefix("10.244.1.0/24"), Record: rec, Epoch: 10}
	n := testNode("a", "uid-a", "10.244.1.0/24")
	if err := held(l, n, w); err != nil {
		t.Fatalf("held: %v", err)
	}
	other := testRecord("a", "uid-a", 11, "13")
	stolen := testRecord("a", "uid-a", 10, "14")
	stolen.Spec.NodeID = "someone-else"
	for what, c := range map[string]struct {
		n    *corev1.Node
		w    *WeftNode
		want string
	}{
		"node deleted":      {nil, w, "deleted"},
		"node re-created":   {testNode("a", "uid-a2", "10.244.1.0/24"), w, "re-created"},
		"other podCIDR":     {testNode("a", "uid-a", "10.244.9.0/24"), w, "podCIDRs are now"},
		"record deleted":    {n, nil, "gone"},
		"record re-made":    {n, other, "epoch 11"},
		"record taken over": {n, stolen, "someone-else"},
	} {
		err := held(l, c.n, c.w)
		if !errors.Is(err, subnet.ErrLeaseLost) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: held = %v, want ErrLeaseLost saying %q", what, err, c.want)
		}
	}
}
