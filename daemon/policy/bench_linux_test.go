// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build bench && linux

package policy_test

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weftnet/weft/daemon/policy"
	"github.com/weftnet/weft/daemon/policy/nft"
	"github.com/weftnet/weft/e2e/netnstest"
)

// benchCluster is a cluster's pods and namespaces as the engine sees them
// on node n0: pods pods spread over 10 nodes (a tenth on n0, ten of each
// hundred), over 10
// namespaces labelled team=t<i%3>, each pod labelled app=app<i%20> and
// role=r<i%5>, dual-stack addresses of its node's /24 and /64.
func benchCluster(pods int) ([]policy.Pod, []policy.Namespace) {
	var ps []policy.Pod
	for i := range pods {
		node, host := (i/10)%10, (i/100)*10+i%10
		ps = append(ps, policy.Pod{
			Namespace: fmt.Sprintf("ns%d", i%10), Name: fmt.Sprintf("pod%d", i), Node: fmt.Sprintf("n%d", node),
			Labels: map[string]string{"app": fmt.Sprintf("app%d", i%20), "role": fmt.Sprintf("r%d", i%5)},
			IPs: []netip.Addr{
				netip.AddrFrom4([4]byte{10, 244, byte(node), byte(2 + host%250)}),
				netip.AddrFrom16([16]byte{0xfd, 0x10, 0x02, 0x44, 0, byte(node), 0, 0, 0, 0, 0, 0, 0, 0, byte(host >> 8), byte(2 + host%250)}),
			},
		})
	}
	var nss []policy.Namespace
	for i := range 10 {
		nss = append(nss, policy.Namespace{Name: fmt.Sprintf("ns%d", i), Labels: map[string]string{"team": fmt.Sprintf("t%d", i%3)}})
	}
	return ps, nss
}

// benchPolicies returns n policies of the shapes clusters use, in turn:
// ingress from pods of a team's namespaces on a port; ingress from a role
// in the own namespace on a port range; egress to an app on a port plus
// an ipBlock with an except (each policy on ports of its own); default deny of both directions for an app.
func benchPolicies(n int) []*networkingv1.NetworkPolicy {
	var out []*networkingv1.NetworkPolicy
	for i := range n {
		// Each policy its own port, so that no two compile to one rule.
		port, from := intstr.FromInt32(int32(1000+i)), intstr.FromInt32(int32(10000+10*i))
		end := int32(10000 + 10*i + 9)
		ns := fmt.Sprintf("ns%d", i%10)
		sel := metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app%d", i%20)}}
		np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("p%d", i)}}
		np.Spec.PodSelector = sel
		switch i % 4 {
		case 0:
			np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
			np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprintf("t%d", i%3)}},
					PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"role": fmt.Sprintf("r%d", i%5)}},
				}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &port}},
			}}
		case 1:
			np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
			np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: "role", Operator: metav1.LabelSelectorOpIn, Values: []string{fmt.Sprintf("r%d", i%5), fmt.Sprintf("r%d", (i+1)%5)}},
				}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &from, EndPort: &end}},
			}}
		case 2:
			np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
			np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{
				To: []networkingv1.NetworkPolicyPeer{
					{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app%d", (i+7)%20)}}},
					{IPBlock: &networkingv1.IPBlock{CIDR: fmt.Sprintf("198.18.%d.0/24", i%200), Except: []string{fmt.Sprintf("198.18.%d.128/25", i%200)}}},
				},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &port}},
			}}
		case 3:
			np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
		}
		out = append(out, np)
	}
	return out
}

// TestBenchPolicyApply measures the engine on one node namespace with
// 1000 pods (100 of them local) in the same run:
//
//   - compiling and applying 1000 policies, each separately, beside the
//     same for 100 policies and beside `nft -f` loading the very table the
//     engine made (listed back with `nft list table`), as the reference;
//   - one pod's label change among the 1000 pods: compile and apply of the
//     changed state (the engine replaces its table in one transaction, so
//     this is the cost of any single change), beside a full apply of the
//     same state into a namespace with no table.
//
// The sizes alternate round by round so that the machine's noise falls on
// both. Beside wall times the rows give CPU times (this process's user and
// system time, which holds the kernel's work of an apply; nft's own for
// the reference), which other tenants' load disturbs less.
func TestBenchPolicyApply(t *testing.T) {
	netnstest.SkipUnlessRoot(t)
	nftBin := netnstest.RequireTool(t, "nft", "nftables")
	node := netnstest.NewNS(t, "pbench")
	c := nftConn(t, node)
	pods, nss := benchCluster(1000)

	type size struct {
		n                         int
		pols                      []*networkingv1.NetworkPolicy
		compile, apply, nftF      []time.Duration
		compileCPU, applyCPU      []time.Duration
		nftCPU                    []time.Duration
		rules, sets, elems, bytes int
	}
	sizes := []*size{{n: 100}, {n: 1000}}
	for _, s := range sizes {
		s.pols = benchPolicies(s.n)
		for _, np := range s.pols {
			if errs := policy.Validate(np); errs != nil {
				t.Fatalf("policy %s invalid: %v", np.Name, errs)
			}
		}
	}
	dir := t.TempDir()
	const rounds = 10
	for r := range rounds + 1 { // round 0 warms up and is not counted
		for k := range sizes {
			s := sizes[(r+k)%len(sizes)]
			start, cpu := time.Now(), cpuTime(t)
			st := policy.Compile(policy.Input{Node: "n0", Policies: s.pols, Pods: pods, Namespaces: nss})
			compile, compileCPU := time.Since(start), cpuTime(t)-cpu
			if len(st.Problems) > 0 {
				t.Fatalf("%d policies: problems %+v", s.n, st.Problems)
			}
			start, cpu = time.Now(), cpuTime(t)
			if err := nft.Apply(c, st); err != nil {
				t.Fatal(err)
			}
			apply, applyCPU := time.Since(start), cpuTime(t)-cpu
			// The reference: nft loads the same table, replacing the
			// engine's in one transaction as Apply does.
			listed, err := exec.Command("ip", "netns", "exec", node.Name, nftBin, "list", "table", "inet", nft.Table).Output()
			if err != nil {
				t.Fatalf("nft list table: %v", err)
			}
			file := filepath.Join(dir, fmt.Sprintf("table-%d.nft", s.n))
			text := fmt.Sprintf("table inet %s\ndelete table inet %s\n%s", nft.Table, nft.Table, listed)
			if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			load := exec.Command("ip", "netns", "exec", node.Name, nftBin, "-f", file)
			start = time.Now()
			if out, err := load.CombinedOutput(); err != nil {
				t.Fatalf("nft -f of the engine's own table: %v\n%s", err, out)
			}
			nftF := time.Since(start)
			nftCPU := load.ProcessState.UserTime() + load.ProcessState.SystemTime()
			relisted, err := exec.Command("ip", "netns", "exec", node.Name, nftBin, "list", "table", "inet", nft.Table).Output()
			if err != nil {
				t.Fatalf("nft list table: %v", err)
			}
			if string(relisted) != string(listed) {
				t.Fatalf("%d policies: the table nft -f loaded lists differently from the engine's", s.n)
			}
			if r == 0 {
				s.rules = len(st.Ingress) + len(st.Egress)
				s.sets = len(st.Sets)
				for _, set := range st.Sets {
					s.elems += len(set.Addrs)
				}
				s.bytes = len(listed)
				continue
			}
			s.compile, s.apply, s.nftF = append(s.compile, compile), append(s.apply, apply), append(s.nftF, nftF)
			s.compileCPU, s.applyCPU, s.nftCPU = append(s.compileCPU, compileCPU), append(s.applyCPU, applyCPU), append(s.nftCPU, nftCPU)
		}
	}
	small, big := sizes[0], sizes[1]
	for _, s := range sizes {
		t.Logf("%d policies over 1000 pods: %d rules, %d sets, %d set elements, %d bytes of nft text", s.n, s.rules, s.sets, s.elems, s.bytes)
	}
	med := func(ds []time.Duration) float64 { return millis(quantileD(ds, 0.5)) }
	spread := func(ds []time.Duration) string {
		return fmt.Sprintf("%.1f–%.1f ms over %d rounds", millis(slices.Min(ds)), millis(slices.Max(ds)), len(ds))
	}
	benchRow(fmt.Sprintf("policy compile: 1000 policies over 1000 pods (%d rules, %d sets)", big.rules, big.sets),
		fmt.Sprintf("%.1f ms", med(big.compile)), fmt.Sprintf("100 policies, same run: %.1f ms", med(small.compile)),
		fmt.Sprintf("%.2fx of 100 policies (%s); CPU %.1f vs %.1f ms (%.2fx)", med(big.compile)/med(small.compile), spread(big.compile),
			med(big.compileCPU), med(small.compileCPU), med(big.compileCPU)/med(small.compileCPU)))
	benchRow(fmt.Sprintf("policy apply: 1000 policies over 1000 pods (%d set elements)", big.elems),
		fmt.Sprintf("%.1f ms", med(big.apply)), fmt.Sprintf("nft -f of the same table, same run: %.1f ms", med(big.nftF)),
		fmt.Sprintf("%.2fx of nft -f; 100 policies %.1f ms (%.2fx of its nft -f %.1f ms); %s; CPU (this process; nft's) %.1f vs %.1f ms (%.2fx), 100 policies %.1f vs %.1f ms",
			med(big.apply)/med(big.nftF), med(small.apply), med(small.apply)/med(small.nftF), med(small.nftF), spread(big.apply),
			med(big.applyCPU), med(big.nftCPU), med(big.applyCPU)/med(big.nftCPU), med(small.applyCPU), med(small.nftCPU)))

	// One label change among the 1000 pods, with 100 policies: a local
	// pod's app label moves between two apps in turn.
	pols := small.pols
	changed := slices.Clone(pods)
	var change, compileOnly, full, changeCPU, fullCPU []time.Duration
	var lastState *policy.State
	for r := range 2*rounds + 1 {
		idx := 100*(r%10) + r%10 // a pod of n0
		pod := changed[idx]
		labels := map[string]string{"role": pod.Labels["role"], "app": fmt.Sprintf("app%d", r%20)}
		if labels["app"] == pod.Labels["app"] {
			labels["app"] = "moved"
		}
		changed[idx].Labels = labels
		start, cpu := time.Now(), cpuTime(t)
		st := policy.Compile(policy.Input{Node: "n0", Policies: pols, Pods: changed, Namespaces: nss})
		comp := time.Since(start)
		if err := nft.Apply(c, st); err != nil {
			t.Fatal(err)
		}
		total, totalCPU := time.Since(start), cpuTime(t)-cpu
		lastState = st
		// The reference: the same state applied where no table is.
		if err := nft.Remove(c); err != nil {
			t.Fatal(err)
		}
		start, cpu = time.Now(), cpuTime(t)
		if err := nft.Apply(c, st); err != nil {
			t.Fatal(err)
		}
		fresh, freshCPU := time.Since(start), cpuTime(t)-cpu
		if r == 0 {
			continue
		}
		change, compileOnly, full = append(change, total), append(compileOnly, comp), append(full, fresh)
		changeCPU, fullCPU = append(changeCPU, totalCPU), append(fullCPU, freshCPU)
	}
	// The kernel holds the last change: every set's elements as compiled.
	tbl := &nftables.Table{Name: nft.Table, Family: nftables.TableFamilyINet}
	for _, s := range lastState.Sets {
		kt := nftables.TypeIPAddr
		if s.Family == policy.IPv6 {
			kt = nftables.TypeIP6Addr
		}
		elems, err := c.GetSetElements(&nftables.Set{Table: tbl, Name: s.Name, KeyType: kt})
		if err != nil {
			t.Fatalf("set %s: %v", s.Name, err)
		}
		if len(elems) != len(s.Addrs) {
			t.Fatalf("set %s holds %d elements after the last label change, want %d", s.Name, len(elems), len(s.Addrs))
		}
	}
	benchRow("policy: one pod label change among 1000 pods, 100 policies (compile + apply)",
		fmt.Sprintf("%.1f ms", med(change)), fmt.Sprintf("full apply of the same state into no table, same run: %.1f ms", med(full)),
		fmt.Sprintf("%.2fx of the full apply (compile %.1f ms of it; change %s); CPU %.1f vs %.1f ms (%.2fx)", med(change)/med(full), med(compileOnly), spread(change),
			med(changeCPU), med(fullCPU), med(changeCPU)/med(fullCPU)))
}

func benchRow(figure, value, ref, note string) {
	fmt.Printf("BENCH| %s | %s | %s | %s\n", figure, value, ref, note)
}

func quantileD(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}

// cpuTime is the CPU time (user and system) this process has used: the
// compiler's work and the kernel's work of an apply, which runs in the
// sending thread, less sensitive than wall time to other tenants' load.
func cpuTime(t *testing.T) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// TestBenchPolicyCompileScale prints one node's compile of 100 policies
// that allow every namespace over the pods of 5000 nodes of 30 (150 000:
// what each node does on each pod change once policies exist) beside the
// same policies over 1000 pods, medians of 3 in the same run.
func TestBenchPolicyCompileScale(t *testing.T) {
	pols := manyPolicies(100)
	median := func(pods []policy.Pod) time.Duration {
		var ds []time.Duration
		for range 3 {
			start := time.Now()
			policy.Compile(policy.Input{Node: "n1", Policies: pols, Pods: pods})
			ds = append(ds, time.Since(start))
		}
		slices.Sort(ds)
		return ds[1]
	}
	small, big := median(scalePods(1000)), median(scalePods(150000))
	fmt.Printf("BENCH| policy compile, 100 policies, 150 000 pods (on each pod change) | %.0f ms | 1000 pods: %.1f ms | %.0fx\n",
		big.Seconds()*1000, small.Seconds()*1000, big.Seconds()/small.Seconds())
}
