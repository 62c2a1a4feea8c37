// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package policy_test

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/weftnet/weft/daemon/policy"
)

// ruleAllows: the oracle's verdict for one rule of np alone.
func (o *oracle) ruleAllows(np *networkingv1.NetworkPolicy, dir policy.Direction, idx int, self, other endpoint, proto corev1.Protocol, port int32) bool {
	var peers []networkingv1.NetworkPolicyPeer
	var ports []networkingv1.NetworkPolicyPort
	dst := self
	switch {
	case dir == policy.Ingress && idx < len(np.Spec.Ingress):
		peers, ports = np.Spec.Ingress[idx].From, np.Spec.Ingress[idx].Ports
	case dir == policy.Egress && idx < len(np.Spec.Egress):
		peers, ports, dst = np.Spec.Egress[idx].To, np.Spec.Egress[idx].Ports, other
	default:
		return false
	}
	ok := len(peers) == 0
	for _, p := range peers {
		ok = ok || o.peerMatches(np, p, other)
	}
	return ok && portMatches(ports, dst, proto, port)
}

// TestExplainAgainstOracle: for random clusters and policies, the
// explanation of each direction on the node enforcing it agrees with the
// oracle: the verdicts combine to the oracle's, the selecting policies
// are the oracle's, and the deciding rule names a policy rule that
// selects the pod and that the oracle says allows the packet.
func TestExplainAgainstOracle(t *testing.T) {
	seeds := 150
	if testing.Short() {
		seeds = 30
	}
	outside := []netip.Addr{netip.MustParseAddr("10.244.0.200"), netip.MustParseAddr("fd10:244::ff")}
	checked, byRule, open, denied := 0, 0, 0, 0
	for seed := 0; seed < seeds; seed++ {
		g := gen{rand.New(rand.NewPCG(uint64(seed), 41))}
		pods, nss := g.cluster()
		var pols []*networkingv1.NetworkPolicy
		for i := 1 + g.r.IntN(4); i > 0; i-- {
			pols = append(pols, g.policy(i))
		}
		o := &oracle{policies: pols, pods: pods, namespaces: map[string]map[string]string{}}
		for _, ns := range nss {
			o.namespaces[ns.Name] = ns.Labels
		}
		ins := map[string]policy.Input{}
		states := map[string]*policy.State{}
		for _, n := range genNodes {
			ins[n] = policy.Input{Node: n, Policies: pols, Pods: pods, Namespaces: nss}
			states[n] = policy.Compile(ins[n])
		}
		var ends []endpoint
		for i := range pods {
			for _, a := range pods[i].IPs {
				ends = append(ends, endpoint{pod: &pods[i], addr: a})
			}
		}
		for _, a := range outside {
			ends = append(ends, endpoint{addr: a})
		}
		policyByName := map[string]*networkingv1.NetworkPolicy{}
		for _, np := range pols {
			policyByName[np.Namespace+"/"+np.Name] = np
		}
		for _, src := range ends {
			for _, dst := range ends {
				if src.addr.Is4() != dst.addr.Is4() || src.addr == dst.addr || (src.pod == nil && dst.pod == nil) {
					continue
				}
				for proto, num := range protoNumbers {
					for _, port := range []uint16{80, 81} {
						pkt := policy.Packet{Src: src.addr, Dst: dst.addr, Proto: num, DstPort: port}
						allowed := true
						for _, side := range []struct {
							dir         policy.Direction
							self, other endpoint
							oracleDir   networkingv1.PolicyType
						}{{policy.Egress, src, dst, networkingv1.PolicyTypeEgress}, {policy.Ingress, dst, src, networkingv1.PolicyTypeIngress}} {
							for _, n := range genNodes {
								e, ok := states[n].Explain(ins[n], pkt, side.dir)
								hosts := side.self.pod != nil && side.self.pod.Node == n
								if ok != hosts {
									t.Fatalf("seed %d: %s on %s: explained %v, want %v (the local end's node)", seed, side.dir, n, ok, hosts)
								}
								if !ok {
									continue
								}
								checked++
								var want []string
								for _, np := range pols {
									if affects(np, side.self.pod, side.oracleDir) {
										want = append(want, np.Namespace+"/"+np.Name)
									}
								}
								slices.Sort(want)
								if !slices.Equal(e.SelectedBy, want) || e.Isolated != (len(want) > 0) {
									t.Fatalf("seed %d: %s %s → %s: selected by %v (isolated %v), oracle %v", seed, side.dir, describe(src), describe(dst), e.SelectedBy, e.Isolated, want)
								}
								if wantOK := o.direction(side.self, side.other, side.oracleDir, proto, int32(port)); e.Allowed != wantOK {
									t.Fatalf("seed %d: %s %s → %s %s/%d: explained allowed %v, oracle %v\n%s", seed, side.dir, describe(src), describe(dst), proto, port, e.Allowed, wantOK, dump(pols))
								}
								allowed = allowed && e.Allowed
								switch {
								case !e.Isolated:
									open++
									if e.Rule != "" {
										t.Fatalf("seed %d: open pod decided by rule %q", seed, e.Rule)
									}
								case !e.Allowed:
									denied++
								default:
									byRule++
									ref, ok := policy.ParseRuleID(e.Rule)
									if !ok || ref.Direction != side.dir || !slices.Contains(want, ref.Policy) || !slices.Contains(e.Rules, e.Rule) {
										t.Fatalf("seed %d: rule %q (%+v) is not a %s rule of a selecting policy %v among %v", seed, e.Rule, ref, side.dir, want, e.Rules)
									}
									if !o.ruleAllows(policyByName[ref.Policy], ref.Direction, ref.Index, side.self, side.other, proto, int32(port)) {
										t.Fatalf("seed %d: %s %s → %s %s/%d: deciding rule %q does not allow it by the oracle\n%s", seed, side.dir, describe(src), describe(dst), proto, port, e.Rule, dump(pols))
									}
								}
							}
						}
						if want := o.allowed(src, dst, proto, int32(port)); allowed != want {
							t.Fatalf("seed %d: %s → %s %s/%d: explanations combine to %v, oracle %v", seed, describe(src), describe(dst), proto, port, allowed, want)
						}
					}
				}
			}
		}
	}
	t.Logf("%d direction explanations: %d allowed by a rule, %d open, %d denied", checked, byRule, open, denied)
	if byRule == 0 || open == 0 || denied == 0 {
		t.Fatal("generated cases are degenerate")
	}
}

// TestParseRuleID: every rule ID the compiler makes names its policy,
// direction and rule index; the default denies name none.
func TestParseRuleID(t *testing.T) {
	g := gen{rand.New(rand.NewPCG(7, 7))}
	pods, nss := g.cluster()
	var pols []*networkingv1.NetworkPolicy
	for i := range 40 {
		pols = append(pols, g.policy(i))
	}
	n := 0
	for _, node := range genNodes {
		st := policy.Compile(policy.Input{Node: node, Policies: pols, Pods: pods, Namespaces: nss})
		for _, rules := range []struct {
			dir   policy.Direction
			rules []policy.Rule
		}{{policy.Ingress, st.Ingress}, {policy.Egress, st.Egress}} {
			for _, r := range rules.rules {
				ref, ok := policy.ParseRuleID(r.ID)
				if !ok || ref.Direction != rules.dir {
					t.Fatalf("rule %q: parsed %+v, %v", r.ID, ref, ok)
				}
				i := slices.IndexFunc(pols, func(np *networkingv1.NetworkPolicy) bool { return np.Namespace+"/"+np.Name == ref.Policy })
				if i < 0 {
					t.Fatalf("rule %q: no policy %s", r.ID, ref.Policy)
				}
				max := len(pols[i].Spec.Ingress)
				if rules.dir == policy.Egress {
					max = len(pols[i].Spec.Egress)
				}
				if ref.Index >= max {
					t.Fatalf("rule %q: index %d, the policy has %d %s rules", r.ID, ref.Index, max, rules.dir)
				}
				n++
			}
		}
	}
	if n == 0 {
		t.Fatal("no rules compiled")
	}
	for _, id := range []string{"ingress default deny ipv4", "established,related", ""} {
		if ref, ok := policy.ParseRuleID(id); ok {
			t.Errorf("%q parsed as %+v", id, ref)
		}
	}
}
