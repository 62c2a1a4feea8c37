// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package policy_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weftnet/weft/daemon/policy"
	"github.com/weftnet/weft/daemon/policy/nft"
	"github.com/weftnet/weft/e2e/netnstest"
)

// Topology of the packet tests (all in namespaces made here):
//
//	  x/a  x/b  x/c  y/a  y/b  z/a          pod namespaces, eth0 10.244.1.N/24
//	   │    │    │    │    │    │                          fd10:244:1::N/64
//	 ──┴────┴────┴────┴────┴────┴── br0 10.244.1.1/24, fd10:244:1::1/64
//	                        node ns (forwarding, weft-policy table)
//	                         o-eth 198.18.0.1/24 ─veth─ eth0 198.18.0.2/24   outside ns
//
// Every pod serves TCP and UDP echo on ports 80 and 81. Pods on the bridge
// talk through br_netfilter (bridged IP packets traverse the inet forward
// hook); the outside namespace is routed by the node.

const denyTimeout = 400 * time.Millisecond

type lab struct {
	node, outside *netnstest.NS
	pods          []policy.Pod
	ns            map[string]*netnstest.NS // "x/a" → pod netns
	namespaces    []policy.Namespace
	outsideAddr   netip.Addr
}

func newLab(t *testing.T) *lab {
	netnstest.SkipUnlessRoot(t)
	l := &lab{ns: map[string]*netnstest.NS{}, outsideAddr: netip.MustParseAddr("198.18.0.2")}
	l.node = netnstest.NewNS(t, "pnode")
	netnstest.EnableForwarding(t, l.node)
	netnstest.AddBridge(t, l.node, "br0")
	netnstest.SetupLink(t, l.node, "br0", netip.MustParsePrefix("10.244.1.1/24"), netip.MustParsePrefix("fd10:244:1::1/64"))
	l.outside = netnstest.AddPod(t, l.node, "pout", "o-eth", []netip.Prefix{netip.MustParsePrefix("198.18.0.1/24")}, []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24")})
	for _, port := range []uint16{80, 81} {
		tcpEcho(t, l.outside, port)
		netnstest.UDPEcho(t, l.outside, netip.AddrPortFrom(netip.IPv6Unspecified(), port))
	}
	l.namespaces = []policy.Namespace{{Name: "x", Labels: map[string]string{"ns": "x"}}, {Name: "y", Labels: map[string]string{"ns": "y"}}, {Name: "z", Labels: map[string]string{"ns": "z"}}}
	n := 10
	for _, id := range []string{"x/a", "x/b", "x/c", "y/a", "y/b", "z/a"} {
		n++
		nsName, name, _ := strings.Cut(id, "/")
		v4 := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, 1, byte(n)}), 24)
		v6 := netip.MustParsePrefix(fmt.Sprintf("fd10:244:1::%x/64", n))
		pod := netnstest.NewNS(t, "pod")
		netnstest.Attach(t, l.node, "br0", pod, "eth0", v4, v6)
		netnstest.AddRoute(t, pod, netip.Prefix{}, netip.MustParseAddr("10.244.1.1"), "eth0")
		netnstest.AddRoute(t, pod, netip.Prefix{}, netip.MustParseAddr("fd10:244:1::1"), "eth0")
		l.ns[id] = pod
		l.pods = append(l.pods, policy.Pod{
			Namespace: nsName, Name: name, Node: "n1", Labels: map[string]string{"pod": name},
			IPs:   []netip.Addr{v4.Addr(), v6.Addr()},
			Ports: []policy.NamedPort{{Name: "serve-80-tcp", Protocol: corev1.ProtocolTCP, Port: 80}, {Name: "serve-81-tcp", Protocol: corev1.ProtocolTCP, Port: 81}, {Name: "serve-81-udp", Protocol: corev1.ProtocolUDP, Port: 81}},
		})
		for _, port := range []uint16{80, 81} {
			tcpEcho(t, pod, port)
			netnstest.UDPEcho(t, pod, netip.AddrPortFrom(netip.IPv6Unspecified(), port))
		}
	}
	return l
}

// tcpEcho serves TCP echo on [::]:port (both families) in ns.
func tcpEcho(t *testing.T, ns *netnstest.NS, port uint16) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", port))
		return err
	}); err != nil {
		t.Fatalf("listen in %s: %v", ns.Name, err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(2 * time.Second))
				io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
}

// tcpProbe connects from ns to dst and checks that a byte sent comes back
// (the reply direction of an allowed connection passes).
func tcpProbe(ns *netnstest.NS, dst netip.AddrPort) error {
	return tcpProbeWithin(ns, dst, denyTimeout)
}

func tcpProbeWithin(ns *netnstest.NS, dst netip.AddrPort, timeout time.Duration) error {
	var c net.Conn
	err := ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", dst.String(), timeout)
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte{'w'}); err != nil {
		return err
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		return fmt.Errorf("connected but no echo: %w", err)
	}
	return nil
}

func nftConn(t *testing.T, ns *netnstest.NS) *nftables.Conn {
	t.Helper()
	c, err := nft.NewConn(nftables.WithNetNSFd(int(ns.Handle)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (l *lab) apply(t *testing.T, pols []*networkingv1.NetworkPolicy) *policy.State {
	t.Helper()
	for _, np := range pols {
		if errs := policy.Validate(np); errs != nil {
			t.Fatalf("policy %s invalid: %v", np.Name, errs)
		}
	}
	st := policy.Compile(policy.Input{Node: "n1", Policies: pols, Pods: l.pods, Namespaces: l.namespaces})
	if len(st.Problems) > 0 {
		t.Fatalf("problems: %+v", st.Problems)
	}
	if err := nft.Apply(nftConn(t, l.node), st); err != nil {
		t.Fatal(err)
	}
	// Connections of the previous case stay established in conntrack and
	// would pass (a UDP probe reusing a source port): start clean.
	if err := l.node.Do(func() error { return netlink.ConntrackTableFlush(netlink.ConntrackTable) }); err != nil {
		t.Fatalf("flush conntrack: %v", err)
	}
	return st
}

type probe struct {
	from, to string // pod IDs or "outside"
	proto    corev1.Protocol
	port     uint16
	v6       bool
}

func (p probe) String() string {
	fam := ""
	if p.v6 {
		fam = " v6"
	}
	return fmt.Sprintf("%s→%s %s/%d%s", p.from, p.to, p.proto, p.port, fam)
}

func (l *lab) endpoint(id string, v6 bool) (endpoint, *netnstest.NS) {
	if id == "outside" {
		return endpoint{addr: l.outsideAddr}, l.outside
	}
	for i := range l.pods {
		if l.pods[i].Namespace+"/"+l.pods[i].Name == id {
			a := l.pods[i].IPs[0]
			if v6 {
				a = l.pods[i].IPs[1]
			}
			return endpoint{pod: &l.pods[i], addr: a}, l.ns[id]
		}
	}
	panic("no endpoint " + id)
}

// matrix probes every pair (TCP and UDP on 80 and 81 over IPv4, TCP 80
// over IPv6; the outside namespace over IPv4) in parallel and compares the
// outcome with the oracle's.
func (l *lab) matrix(t *testing.T, pols []*networkingv1.NetworkPolicy) {
	t.Helper()
	o := &oracle{policies: pols, pods: l.pods, namespaces: map[string]map[string]string{}}
	for _, ns := range l.namespaces {
		o.namespaces[ns.Name] = ns.Labels
	}
	ids := []string{"outside"}
	for id := range l.ns {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var probes []probe
	for _, from := range ids {
		for _, to := range ids {
			if from == to {
				continue
			}
			for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP} {
				for _, port := range []uint16{80, 81} {
					probes = append(probes, probe{from, to, proto, port, false})
				}
			}
			if from != "outside" && to != "outside" {
				probes = append(probes, probe{from, to, corev1.ProtocolTCP, 80, true})
			}
		}
	}
	var mu sync.Mutex
	var wrong []string
	allowed := 0
	var wg sync.WaitGroup
	sem := make(chan struct{}, 48)
	for _, p := range probes {
		src, srcNS := l.endpoint(p.from, p.v6)
		dst, _ := l.endpoint(p.to, p.v6)
		want := o.allowed(src, dst, p.proto, int32(p.port))
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ap := netip.AddrPortFrom(dst.addr, p.port)
			try := func(timeout time.Duration) error {
				if p.proto == corev1.ProtocolTCP {
					return tcpProbeWithin(srcNS, ap, timeout)
				}
				return netnstest.UDPRoundTrip(srcNS, ap, timeout)
			}
			err := try(denyTimeout)
			if err != nil && want {
				// On a loaded machine an allowed probe may miss the short
				// deny timeout: an allowed flow must pass within 3 s, a
				// wrongly denied one fails again.
				err = try(3 * time.Second)
			}
			mu.Lock()
			defer mu.Unlock()
			if want {
				allowed++
			}
			if (err == nil) != want {
				wrong = append(wrong, fmt.Sprintf("%s: got allowed=%v (err %v), want %v", p, err == nil, err, want))
			}
		}()
	}
	wg.Wait()
	sort.Strings(wrong)
	if len(wrong) > 0 {
		t.Errorf("%d of %d probes disagree with the oracle:\n%s", len(wrong), len(probes), strings.Join(wrong, "\n"))
	}
	if allowed == 0 {
		t.Errorf("no probe expected allowed: the case proves nothing")
	}
	t.Logf("%d probes, %d allowed, as the oracle says", len(probes), allowed)
}

func np(ns, name string, spec networkingv1.NetworkPolicySpec) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
}

func sel(kv ...string) *metav1.LabelSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &metav1.LabelSelector{MatchLabels: m}
}

func port(p corev1.Protocol, v intstr.IntOrString) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: &p, Port: &v}
}

var (
	ingressOnly = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	egressOnly  = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	both        = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
)

// e2eCases are policies of Kubernetes' e2e network-policy suite
// (test/e2e/network/netpol/network_policy.go), by the suite's test names,
// adapted to this lab's namespaces x, y, z, plus cases of weft's own.
func e2eCases() []struct {
	name string
	pols []*networkingv1.NetworkPolicy
} {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	end81 := int32(81)
	return []struct {
		name string
		pols []*networkingv1.NetworkPolicy
	}{
		{"should support a 'default-deny-ingress' policy", []*networkingv1.NetworkPolicy{
			np("x", "deny-ingress", networkingv1.NetworkPolicySpec{PolicyTypes: ingressOnly})}},
		{"should support a 'default-deny-all' policy", []*networkingv1.NetworkPolicy{
			np("x", "deny-all", networkingv1.NetworkPolicySpec{PolicyTypes: both})}},
		{"should enforce policy to allow traffic from pods within server namespace based on PodSelector", []*networkingv1.NetworkPolicy{
			np("x", "x-a-allow-x-b", networkingv1.NetworkPolicySpec{PodSelector: *sel("pod", "a"),
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("pod", "b")}}}}})}},
		{"should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector", []*networkingv1.NetworkPolicy{
			np("x", "allow-other-ns", networkingv1.NetworkPolicySpec{PodSelector: *sel("pod", "a"),
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{
					MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "ns", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"x"}}}}}}}}})}},
		{"should enforce policy based on PodSelector with MatchExpressions", []*networkingv1.NetworkPolicy{
			np("x", "match-expr", networkingv1.NetworkPolicySpec{PodSelector: *sel("pod", "a"),
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{
					MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "pod", Operator: metav1.LabelSelectorOpIn, Values: []string{"b"}}}}}}}}})}},
		{"should enforce policy based on PodSelector and NamespaceSelector", []*networkingv1.NetworkPolicy{
			np("x", "pod-and-ns", networkingv1.NetworkPolicySpec{PodSelector: *sel("pod", "a"),
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("pod", "b"),
					NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpIn, Values: []string{"y", "z"}}}}}}}}})}},
		{"should enforce policy based on Ports", []*networkingv1.NetworkPolicy{
			np("x", "port-81", networkingv1.NetworkPolicySpec{PodSelector: *sel("pod", "a"),
				Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{port(tcp, intstr.FromInt32(81))}}}})}},
		{"should allow ingress access on one named port", []*networkingv1.NetworkPolicy{
			np("x", "named-81", networkingv1.NetworkPolicySpec{
				Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{port(tcp, intstr.FromString("serve-81-tcp"))}}}})}},
		{"should enforce ingress policy allowing any port traffic to a server on a specific protocol", []*networkingv1.NetworkPolicy{
			np("x", "udp-only", networkingv1.NetworkPolicySpec{PodSelector: *sel("pod", "a"),
				Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp}}}}})}},
		{"should enforce multiple, stacked policies with overlapping podSelectors", []*networkingv1.NetworkPolicy{
			np("x", "allow-80", networkingv1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{port(tcp, intstr.FromInt32(80))}}}}),
			np("x", "allow-81-from-y", networkingv1.NetworkPolicySpec{PodSelector: *sel("pod", "a"),
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("ns", "y")}}, Ports: []networkingv1.NetworkPolicyPort{port(tcp, intstr.FromInt32(81))}}}})}},
		{"should support denying of egress traffic on the client side (even if the server explicitly allows this traffic)", []*networkingv1.NetworkPolicy{
			np("x", "deny-egress-a", networkingv1.NetworkPolicySpec{PodSelector: *sel("pod", "a"), PolicyTypes: egressOnly}),
			np("y", "allow-all-ingress", networkingv1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyIngressRule{{}}})}},
		{"should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector", []*networkingv1.NetworkPolicy{
			np("x", "egress-to-y-b", networkingv1.NetworkPolicySpec{PodSelector: *sel("pod", "a"), PolicyTypes: egressOnly,
				Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("pod", "b"), NamespaceSelector: sel("ns", "y")}}}}})}},
		{"should enforce except clause while egress access to server in CIDR block", []*networkingv1.NetworkPolicy{
			np("x", "egress-except", networkingv1.NetworkPolicySpec{PodSelector: *sel("pod", "a"), PolicyTypes: egressOnly,
				Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.244.1.0/24", Except: []string{"10.244.1.14/32"}}}}}}})}},
		{"should enforce policy to allow ingress traffic from pods in all namespaces", []*networkingv1.NetworkPolicy{
			np("x", "all-namespaces", networkingv1.NetworkPolicySpec{PodSelector: *sel("pod", "a"),
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}}}}})}},
		{"should support allow-all policy", []*networkingv1.NetworkPolicy{
			np("x", "deny", networkingv1.NetworkPolicySpec{PolicyTypes: both}),
			np("x", "allow-all", networkingv1.NetworkPolicySpec{PolicyTypes: both, Ingress: []networkingv1.NetworkPolicyIngressRule{{}}, Egress: []networkingv1.NetworkPolicyEgressRule{{}}})}},
		{"should enforce ingress policy allowing a port range with endPort", []*networkingv1.NetworkPolicy{
			np("y", "range", networkingv1.NetworkPolicySpec{PolicyTypes: ingressOnly,
				Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: ptr(intstr.FromInt32(80)), EndPort: &end81}}}}})}},
		{"weft: ingress from an ipBlock outside the cluster, with except", []*networkingv1.NetworkPolicy{
			np("z", "from-outside", networkingv1.NetworkPolicySpec{
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "198.18.0.0/16", Except: []string{"198.18.1.0/24"}}}}}}})}},
		{"weft: replies pass to a server whose egress is denied", []*networkingv1.NetworkPolicy{
			np("y", "no-egress", networkingv1.NetworkPolicySpec{PolicyTypes: egressOnly})}},
	}
}

func ptr[T any](v T) *T { return &v }

func TestPolicyWithPackets(t *testing.T) {
	l := newLab(t)
	var kerr error
	if err := l.node.Do(func() error { kerr = nft.CheckKernel(); return nil }); err != nil {
		t.Fatal(err)
	}
	if kerr != nil {
		t.Fatalf("kernel check in a fresh namespace: %v (FIELD-NOTES says br_netfilter is on here)", kerr)
	}
	for _, c := range e2eCases() {
		t.Run(c.name, func(t *testing.T) {
			st := l.apply(t, c.pols)
			l.matrix(t, c.pols)
			ctrs, err := nft.Counters(nftConn(t, l.node))
			if err != nil {
				t.Fatal(err)
			}
			var hit []string
			for id, ctr := range ctrs {
				if ctr.Packets > 0 {
					hit = append(hit, fmt.Sprintf("%s=%d", id, ctr.Packets))
				}
			}
			sort.Strings(hit)
			policyHit := false
			for _, r := range append(st.Ingress, st.Egress...) {
				policyHit = policyHit || ctrs[r.ID].Packets > 0
			}
			for _, f := range []policy.Family{policy.IPv4, policy.IPv6} {
				policyHit = policyHit || ctrs[nft.DropCounter(true, f)].Packets > 0 || ctrs[nft.DropCounter(false, f)].Packets > 0
			}
			if !policyHit {
				t.Errorf("no policy rule's counter moved: %v", hit)
			}
			t.Logf("%d rules; counters: %s", len(st.Ingress)+len(st.Egress), strings.Join(hit, " "))
		})
	}
}

// The node itself reaches its pods (kubelet probes) under default deny,
// and a rule deleted by hand comes back on the next apply.
func TestNodeReachesPodsAndDriftRepair(t *testing.T) {
	l := newLab(t)
	pols := []*networkingv1.NetworkPolicy{np("x", "deny-all", networkingv1.NetworkPolicySpec{PolicyTypes: both})}
	st := l.apply(t, pols)
	xa, _ := l.endpoint("x/a", false)
	xa6, _ := l.endpoint("x/a", true)
	for _, a := range []netip.Addr{xa.addr, xa6.addr} {
		if err := tcpProbe(l.node, netip.AddrPortFrom(a, 80)); err != nil {
			t.Errorf("node → %s:80 under default deny: %v", a, err)
		}
	}
	_, xb := l.endpoint("x/b", false)
	dst := netip.AddrPortFrom(xa.addr, 80)
	if err := tcpProbe(xb, dst); err == nil {
		t.Fatal("x/b → x/a allowed under default deny")
	}
	// Delete the ingress and egress drop rules by hand: the traffic passes.
	c := nftConn(t, l.node)
	tbl := &nftables.Table{Name: nft.Table, Family: nftables.TableFamilyINet}
	for _, ch := range []string{nft.ChainIngress, nft.ChainEgress} {
		rules, err := c.GetRules(tbl, &nftables.Chain{Name: ch, Table: tbl})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			if id, _ := userdata.GetString(r.UserData, userdata.TypeComment); strings.Contains(id, "default deny ipv4") {
				if err := c.DelRule(r); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := tcpProbe(xb, dst); err != nil {
		t.Fatalf("with the drop rules deleted by hand, x/b → x/a still fails (%v): the test proves nothing", err)
	}
	if err := nft.Apply(c, st); err != nil {
		t.Fatal(err)
	}
	if err := tcpProbe(xb, dst); err == nil {
		t.Fatal("after re-apply, x/b → x/a allowed: drift not repaired")
	}
}

// Without br_netfilter's call into the IP hooks, bridged pod traffic
// bypasses the table: CheckKernel must say so.
func TestCheckKernelDetectsBypass(t *testing.T) {
	l := newLab(t)
	l.apply(t, []*networkingv1.NetworkPolicy{np("x", "deny-ingress", networkingv1.NetworkPolicySpec{PolicyTypes: ingressOnly})})
	xb := l.ns["x/b"]
	dst, _ := l.endpoint("x/a", false)
	if err := tcpProbe(xb, netip.AddrPortFrom(dst.addr, 80)); err == nil {
		t.Fatal("default deny does not hold with bridge-nf-call-iptables=1")
	}
	var kerr error
	if err := l.node.Do(func() error {
		if err := os.WriteFile("/proc/sys/net/bridge/bridge-nf-call-iptables", []byte("0\n"), 0o644); err != nil {
			return err
		}
		kerr = nft.CheckKernel()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(kerr, nft.ErrNotEnforced) {
		t.Fatalf("CheckKernel with bridge-nf-call-iptables=0: %v, want ErrNotEnforced", kerr)
	}
	t.Logf("reported: %v", kerr)
	if err := tcpProbe(xb, netip.AddrPortFrom(dst.addr, 80)); err != nil {
		t.Fatalf("with bridge-nf-call-iptables=0 the bridged packet was still filtered (%v): then the check would be needless", err)
	}
}

// sctpSeen sends an SCTP INIT from src to dst:port over a raw socket and
// reports whether a raw SCTP socket in dstNS saw it (this kernel has no
// SCTP sockets; raw ones see the packets all the same).
func sctpSeen(t *testing.T, src, dstNS *netnstest.NS, dst netip.Addr, port uint16) bool {
	return sctpSeenWithin(t, src, dstNS, dst, port, denyTimeout)
}

func sctpSeenWithin(t *testing.T, src, dstNS *netnstest.NS, dst netip.Addr, port uint16, timeout time.Duration) bool {
	t.Helper()
	var rfd int
	if err := dstNS.Do(func() (err error) {
		rfd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_SCTP)
		return err
	}); err != nil {
		t.Fatalf("raw sctp socket: %v", err)
	}
	defer unix.Close(rfd)
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	if err := unix.SetsockoptTimeval(rfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	srcPort := uint16(40000 + time.Now().UnixNano()%20000)
	var sfd int
	if err := src.Do(func() (err error) {
		sfd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_SCTP)
		return err
	}); err != nil {
		t.Fatalf("raw sctp socket: %v", err)
	}
	defer unix.Close(sfd)
	// Up to four tries 100 ms apart (one lost to a link still coming up
	// must not count as "not seen").
	start := time.Now()
	deadline := start.Add(timeout)
	buf := make([]byte, 2048)
	for time.Now().Before(deadline) {
		if err := unix.Sendto(sfd, netnstest.SCTPInit(srcPort, port), 0, &unix.SockaddrInet4{Addr: dst.As4()}); err != nil {
			t.Fatalf("send sctp init: %v", err)
		}
		n, _, err := unix.Recvfrom(rfd, buf, 0)
		if err != nil {
			continue
		}
		ihl := int(buf[0]&0x0f) * 4
		if n >= ihl+12 && binary.BigEndian.Uint16(buf[ihl:]) == srcPort && binary.BigEndian.Uint16(buf[ihl+2:]) == port {
			t.Logf("sctp %s → %s:%d seen after %v", src.Name, dst, port, time.Since(start).Round(time.Millisecond))
			return true
		}
	}
	return false
}

// SCTP rules, proven with raw INIT packets seen or not at the destination.
func TestSCTPWithRawPackets(t *testing.T) {
	l := newLab(t)
	sctp := corev1.ProtocolSCTP
	xa, xaNS := l.endpoint("x/a", false)
	_, xb := l.endpoint("x/b", false)
	_, ya := l.endpoint("y/a", false)
	// Without policy every INIT arrives: a miss below is the policy's doing.
	for _, src := range []*netnstest.NS{xb, ya} {
		for _, p := range []uint16{80, 81} {
			if !sctpSeenWithin(t, src, xaNS, xa.addr, p, 5*time.Second) {
				t.Fatalf("without policy, sctp INIT from %s to port %d not seen", src.Name, p)
			}
		}
	}
	l.apply(t, []*networkingv1.NetworkPolicy{np("x", "sctp-80-from-x", networkingv1.NetworkPolicySpec{PodSelector: *sel("pod", "a"),
		Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}},
			Ports: []networkingv1.NetworkPolicyPort{port(sctp, intstr.FromInt32(80))}}}})})
	for _, c := range []struct {
		name string
		src  *netnstest.NS
		port uint16
		want bool
	}{{"x/b → x/a sctp/80 (allowed)", xb, 80, true}, {"x/b → x/a sctp/81 (other port)", xb, 81, false}, {"y/a → x/a sctp/80 (other namespace)", ya, 80, false}} {
		if got := sctpSeen(t, c.src, xaNS, xa.addr, c.port); got != c.want {
			t.Errorf("%s: seen = %v, want %v", c.name, got, c.want)
		}
	}
	ctrs, err := nft.Counters(nftConn(t, l.node))
	if err != nil {
		t.Fatal(err)
	}
	if ctrs[nft.DropCounter(false, policy.IPv4)].Packets == 0 {
		t.Errorf("ingress drop counter did not move: %+v", ctrs)
	}
}
