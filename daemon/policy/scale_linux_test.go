// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package policy_test

import (
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/weftnet/weft/daemon/policy"
	"github.com/weftnet/weft/daemon/policy/nft"
	"github.com/weftnet/weft/e2e/netnstest"
)

// 1000 policies over 1000 pods load in one transaction (the set elements
// span many netlink messages) and the kernel holds one rule per policy
// rule, not per pod.
func TestApplyAtScale(t *testing.T) {
	netnstest.SkipUnlessRoot(t)
	node := netnstest.NewNS(t, "pscale")
	st := policy.Compile(policy.Input{Node: "n1", Policies: manyPolicies(1000), Pods: manyPods(1000)})
	c := nftConn(t, node)
	start := time.Now()
	if err := nft.Apply(c, st); err != nil {
		t.Fatal(err)
	}
	first := time.Since(start)
	start = time.Now()
	if err := nft.Apply(c, st); err != nil {
		t.Fatal(err)
	}
	t.Logf("compile+apply of %d ingress rules, %d sets: first apply %v, re-apply %v", len(st.Ingress), len(st.Sets), first.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	tbl := &nftables.Table{Name: nft.Table, Family: nftables.TableFamilyINet}
	rules, err := c.GetRules(tbl, &nftables.Chain{Name: nft.ChainIngress, Table: tbl})
	if err != nil {
		t.Fatal(err)
	}
	if want := len(st.Ingress) + 2; len(rules) != want {
		t.Fatalf("ingress chain has %d rules, want %d", len(rules), want)
	}
	var inKernel int
	for _, s := range st.Sets {
		elems, err := c.GetSetElements(&nftables.Set{Table: tbl, Name: s.Name, KeyType: nftables.TypeIPAddr})
		if err != nil {
			t.Fatalf("set %s: %v", s.Name, err)
		}
		if len(elems) != len(s.Addrs) {
			t.Fatalf("set %s holds %d elements, want %d", s.Name, len(elems), len(s.Addrs))
		}
		inKernel += len(elems)
	}
	if inKernel < 1000 {
		t.Fatalf("sets hold %d addresses in the kernel, want at least the 1000 pods", inKernel)
	}
}
