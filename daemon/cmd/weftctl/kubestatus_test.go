// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package main

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/weftnet/weft/daemon/status"
	"github.com/weftnet/weft/subnet"
)

func TestTargetsOf(t *testing.T) {
	leases := []subnet.Lease{
		{Record: subnet.Record{NodeName: "node-b", PublicIP: netip.MustParseAddr("198.18.0.12")}},
		{Record: subnet.Record{NodeName: "node-c", PublicIPv6: netip.MustParseAddr("2001:2::13")}},
		{Record: subnet.Record{NodeName: "node-a", PublicIP: netip.MustParseAddr("198.18.0.11"), PublicIPv6: netip.MustParseAddr("2001:2::11")}},
		{Record: subnet.Record{NodeName: "node-d"}},
	}
	want := []kubeTarget{{"node-a", "198.18.0.11:9950"}, {"node-b", "198.18.0.12:9950"}, {"node-c", "[2001:2::13]:9950"}, {"node-d", ""}}
	if diff := cmp.Diff(want, targetsOf(leases, 9950), cmp.AllowUnexported(kubeTarget{})); diff != "" {
		t.Errorf("targetsOf (-want +got):\n%s", diff)
	}
}

func TestStatusFlagsKube(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"--kubeconfig", "k"}, ""},
		{[]string{"--kubeconfig", "k", "--node", "n1", "--http-port", "9951"}, ""},
		{[]string{"--node", "n1"}, "--node needs --kubeconfig"},
		{[]string{"--kubeconfig", "k", "--addr", "127.0.0.1:9950"}, "--addr and --kubeconfig: give one"},
		{[]string{"--kubeconfig", "k", "--http-port", "0"}, "--http-port 0: want 1-65535"},
	} {
		fs, f := newStatusFlags("status")
		err := f.parse(fs, tc.args)
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%v: err %v, want %q", tc.args, err, tc.err)
		}
	}
}

// TestAskAll: every node asked, answers and failures in the nodes' order,
// a node without an address not asked.
func TestAskAll(t *testing.T) {
	ts := []kubeTarget{{"n1", "a1"}, {"n2", "a2"}, {"n3", ""}}
	var mu sync.Mutex
	var asked []string
	fetch := func(_ context.Context, addr string) (status.Report, error) {
		if addr == "a2" {
			return status.Report{}, errors.New("connection refused")
		}
		return status.Report{Node: status.Node{Name: "n1", Ready: true}}, nil
	}
	got := askAll(context.Background(), ts, func(ctx context.Context, addr string) (status.Report, error) {
		mu.Lock()
		asked = append(asked, addr)
		mu.Unlock()
		return fetch(ctx, addr)
	})
	if len(got) != 3 || got[0].Status == nil || got[1].Error != "connection refused" || got[2].Error == "" || len(asked) != 2 {
		t.Fatalf("askAll = %+v (asked %v)", got, asked)
	}
	var b bytes.Buffer
	if err := renderNodes(&b, got); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`(?m)^n1\s+a1\s.*\syes$`, `(?m)^n2\s+a2\s.*UNREACHABLE: connection refused$`, `(?m)^n3\s+-\s.*UNREACHABLE: its WeftNode record has no public IP$`} {
		if !regexp.MustCompile(want).MatchString(b.String()) {
			t.Errorf("renderNodes lacks %q:\n%s", want, b.String())
		}
	}
	if err := notReady(got); err == nil || !strings.Contains(err.Error(), "2 of 3 nodes not ready or not answering: n2, n3") {
		t.Errorf("notReady = %v", err)
	}
	b.Reset()
	got[0].Status.Members = []status.Member{{Name: "n2", State: "alive", Since: time.Now(), Addr: "a2:7950"}}
	if err := renderMembersAll(&b, got, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`(?m)^SEEN BY\s+NAME`, `(?m)^n1\s+n2\s+alive\s`, `(?m)^n2\s+-\s+UNREACHABLE: connection refused`} {
		if !regexp.MustCompile(want).MatchString(b.String()) {
			t.Errorf("renderMembersAll lacks %q:\n%s", want, b.String())
		}
	}
}
