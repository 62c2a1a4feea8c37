// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e && linux

package e2e_test

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/weftnet/weft/daemon/policy"
	"github.com/weftnet/weft/daemon/policy/nft"
	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/e2etest"
	"github.com/weftnet/weft/e2e/netnstest"
	"github.com/weftnet/weft/subnet"
)

// The upstream truth table with real packets: Kubernetes' own e2e
// network-policy suite (test/e2e/network/netpol/network_policy.go, v1.37)
// on a real 3-node dual-stack VXLAN cluster of weftd processes, its 9 pods
// attached by the weft CNI plugin with their identity (K8S_POD_NAMESPACE
// and K8S_POD_NAME in CNI_ARGS, labels in args.cni.labels):
//
//	node1: x/a y/c z/b    node2: x/b y/a z/c    node3: x/c y/b z/a
//
// Pods carry pod=a|b|c, namespaces ns=x|y|z (set with `weftctl namespace
// label`) and kubernetes.io/metadata.name, as upstream. Every pod serves
// TCP and UDP echo on ports 80 and 81 and watches for SCTP INIT chunks on
// a raw socket (this kernel has no SCTP sockets). For each upstream test
// the policies are those of the test, the expected 9×9 matrix is built
// with the test's own Expect calls (upstream's newer revisions create only
// the pods a test needs; its expectations are written per namespace and
// pod, so they give the full 9×9 table here), and the whole matrix is
// probed in parallel for each protocol and port the test validates, over
// IPv4 and IPv6 (the ipBlock tests, built on one pod's address, run once
// per family with that family's address). Self-connections are probed
// and, as upstream (ignoreLoopback), left out of the verdict.
//
// Two drivers put a test's policies in force:
//
//   - weftd (subtests "weftd/..."), the real path: policies stored with
//     `weftctl policy apply -f` and `weftctl policy delete`, namespace
//     labels with `weftctl namespace label`, and each node's weftd
//     compiling them with the published pod endpoints and enforcing them;
//     a test goes on once every node's /status shows the store revision
//     of the test's writes applied.
//   - engine (subtests "engine/..."), for the 5 tests etcd mode cannot
//     express through the CNI call: the 3 named-port tests (container
//     ports are not in the CNI call) and the 2 "updated pod" tests (pod
//     labels change after the pod was created). weftd restarts with
//     --network-policy=false and the test compiles each node's state with
//     daemon/policy and applies it with daemon/policy/nft itself.

// netpolDenyTimeout is how long a probe waits before it counts as denied.
const netpolDenyTimeout = 500 * time.Millisecond

// netpolBudget is the bound on the whole truth-table test.
const netpolBudget = 8 * time.Minute

var netpolPods = []string{"x/a", "x/b", "x/c", "y/a", "y/b", "y/c", "z/a", "z/b", "z/c"}

// npWorld is the cluster as the policy driver and the probes see it.
type npWorld struct {
	c     *e2e.Cluster
	pods  map[string]*e2e.Pod // "x/a" → pod
	sinks map[string]*sctpSink
}

// npLabels are the labels of one stage: upstream's defaults plus what the
// stage adds (the "updated pod/namespace" tests).
type npLabels struct {
	pods, namespaces map[string]map[string]string
}

func (w *npWorld) labels(extraPods, extraNS map[string]map[string]string) npLabels {
	l := npLabels{pods: map[string]map[string]string{}, namespaces: map[string]map[string]string{}}
	for _, ns := range []string{"x", "y", "z"} {
		l.namespaces[ns] = map[string]string{"ns": ns, policy.NamespaceNameLabel: ns}
		for k, v := range extraNS[ns] {
			l.namespaces[ns][k] = v
		}
	}
	for _, id := range netpolPods {
		_, name, _ := strings.Cut(id, "/")
		l.pods[id] = map[string]string{"pod": name}
		for k, v := range extraPods[id] {
			l.pods[id][k] = v
		}
	}
	return l
}

// resetConntrack forgets the connections of earlier probes on every node
// (a UDP or SCTP flow of an earlier case must not pass as established).
func (w *npWorld) resetConntrack(t *testing.T) {
	t.Helper()
	for _, n := range w.c.Nodes() {
		h, err := n.NS.Handle()
		if err != nil {
			t.Fatal(err)
		}
		err = h.ConntrackTableFlush(netlink.ConntrackTable)
		h.Close()
		if err != nil {
			t.Fatalf("flush conntrack on %s: %v", n.Name, err)
		}
	}
}

// reach is an expected or observed 9×9 table, built with the calls of
// upstream's Reachability.
type reach map[string]map[string]bool

func newReach(def bool) reach {
	r := reach{}
	for _, f := range netpolPods {
		r[f] = map[string]bool{}
		for _, to := range netpolPods {
			r[f][to] = def
		}
	}
	return r
}

func (r reach) expect(from, to string, v bool) reach { r[from][to] = v; return r }

// expectPeer sets every pair whose ends match the peers "ns/pod", "ns/"
// (any pod of ns) or "" (any pod).
func (r reach) expectPeer(from, to string, v bool) reach {
	match := func(peer, id string) bool {
		if peer == "" {
			return true
		}
		ns, pod, _ := strings.Cut(peer, "/")
		ins, ipod, _ := strings.Cut(id, "/")
		return ns == ins && (pod == "" || pod == ipod)
	}
	for _, f := range netpolPods {
		for _, to2 := range netpolPods {
			if match(from, f) && match(to, to2) {
				r[f][to2] = v
			}
		}
	}
	return r
}

func (r reach) expectAllIngress(pod string, v bool) reach { return r.expectPeer("", pod, v) }
func (r reach) expectAllEgress(pod string, v bool) reach  { return r.expectPeer(pod, "", v) }

// pretty prints the table as upstream's TruthTable.PrettyPrint does ("."
// connected, "X" not).
func (r reach) pretty() string {
	lines := []string{strings.Join(append([]string{"-\t"}, netpolPods...), "\t")}
	for _, f := range netpolPods {
		line := []string{f}
		for _, to := range netpolPods {
			mark := "X"
			if r[f][to] {
				mark = "."
			}
			line = append(line, mark+"\t")
		}
		lines = append(lines, strings.Join(line, "\t"))
	}
	return strings.Join(lines, "\n")
}

// npCheck is one ValidateOrFail of an upstream test.
type npCheck struct {
	proto corev1.Protocol
	port  uint16
	want  reach
}

// npStage is the cluster state between two ValidateOrFail groups: the
// policies present and the labels added.
type npStage struct {
	pols      []*networkingv1.NetworkPolicy
	podLabels map[string]map[string]string
	nsLabels  map[string]map[string]string
	// problems, when set, is the policy ("ns/name") whose rules the
	// nodes must report as unenforceable (a named port no pod declares);
	// otherwise no problem may be reported.
	problems string
	checks   []npCheck
}

type npCase struct {
	name string
	// family is 0 when the test's policies hold for both families (its
	// tables are probed over IPv4 and IPv6), else 4 or 6: the policies
	// name one address of that family in an ipBlock, and only that
	// family is probed.
	family int
	// engine, when set, says why etcd mode cannot express the test
	// through the CNI call: it runs on the engine driver.
	engine string
	stages []npStage
}

func (tc npCase) families() []bool {
	switch tc.family {
	case 4:
		return []bool{false}
	case 6:
		return []bool{true}
	}
	return []bool{false, true}
}

func TestNetworkPolicyTruthTable(t *testing.T) {
	start := time.Now()
	// weftd enforces policy (etcd mode) on every node; see the drivers
	// at the top of the file.
	c := e2etest.NewCluster(t, e2e.Options{Nodes: 3, DualStack: true})
	ctx := t.Context()
	w := &npWorld{c: c, pods: map[string]*e2e.Pod{}, sinks: map[string]*sctpSink{}}
	nodes := c.Nodes()
	for _, n := range nodes {
		var kerr error
		if err := n.NS.Do(func() error { kerr = nft.CheckKernel(); return nil }); err != nil {
			t.Fatal(err)
		}
		if kerr != nil {
			t.Fatalf("%s: %v", n.Name, kerr)
		}
		if err := n.WaitReady(ctx, 60*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	clusterUp := time.Since(start)
	wd := newWeftdDriver(t, c)
	wd.labelNamespaces(t, nil)
	for i, id := range netpolPods {
		// Each node holds one pod of each namespace and of each name
		// (node1: x/a y/c z/b), so most pairs cross nodes over VXLAN
		// and some share a bridge.
		ns, pod := i/3, i%3
		n := nodes[(ns+pod)%3]
		nsName, podName, _ := strings.Cut(id, "/")
		p, err := n.AddPodAs(ctx, subnet.PodIdentity{Namespace: nsName, Name: podName, Labels: map[string]string{"pod": podName}})
		if err != nil {
			t.Fatal(err)
		}
		if !p.IP.IsValid() || !p.IPv6.IsValid() {
			t.Fatalf("pod %s on %s is not dual-stack: %v %v", id, n.Name, p.IP, p.IPv6)
		}
		w.serve(t, id, p)
		t.Logf("%s is %s on %s (%s, %s)", id, p.Name, n.Name, p.IP, p.IPv6)
	}
	setup := time.Since(start)

	// Without policy everything reaches everything, on every protocol:
	// the probes work, and a denied probe below is the policy's doing.
	if skipped := wd.apply(t, nil, nil); len(skipped) > 0 {
		t.Fatalf("no policy, yet parts skipped: %v", skipped)
	}
	for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP} {
		for _, v6 := range []bool{false, true} {
			w.validate(t, "no policy", npCheck{proto, 80, newReach(true)}, v6)
		}
	}

	cases := upstreamCases(w)
	count := map[string]int{}
	upstream := map[string]bool{}
	for _, tc := range cases {
		upstream[tc.name] = true
		count[fmt.Sprintf("family %d", tc.family)]++
	}
	run := func(t *testing.T, tc npCase, apply func(*testing.T, npStage) []string) {
		note := ""
		if tc.engine != "" {
			note = "engine driver (the test's policies compiled and applied by the test, not by weftd): " + tc.engine
		}
		w.runCase(t, tc, note, apply)
	}
	t.Run("weftd", func(t *testing.T) {
		for _, tc := range cases {
			if tc.engine == "" {
				count["weftd"]++
				run(t, tc, func(t *testing.T, st npStage) []string {
					if st.podLabels != nil {
						t.Fatal("pod labels change after creation: etcd mode cannot express it (mark the case engine)")
					}
					return wd.apply(t, st.pols, st.nsLabels)
				})
			}
		}
	})
	slices.Sort(wd.took)
	if n := len(wd.took); n > 0 {
		t.Logf("weftctl's last write → every node enforcing it, %d stages: median %.1f ms, max %.1f ms", n, millis(wd.took[n/2]), millis(wd.took[n-1]))
	}
	w.engineDriverTakeOver(t)
	t.Run("engine", func(t *testing.T) {
		w.engineDriver(t, nil, w.labels(nil, nil))
		for _, v6 := range []bool{false, true} {
			w.validate(t, "no policy, engine driver", npCheck{corev1.ProtocolTCP, 80, newReach(true)}, v6)
		}
		for _, tc := range cases {
			if tc.engine != "" {
				count["engine"]++
				run(t, tc, func(t *testing.T, st npStage) []string {
					return w.engineDriver(t, st.pols, w.labels(st.podLabels, st.nsLabels))
				})
			}
		}
	})
	total := time.Since(start)
	t.Logf("%d upstream tests in %d cases (%d through weftd, %d on the engine driver): %d probed over IPv4 and IPv6, %d over IPv4 and %d over IPv6 with that family's ipBlock; binaries and cluster %v, 9 pods %v, whole test %v",
		len(upstream), len(cases), count["weftd"], count["engine"], count["family 0"], count["family 4"], count["family 6"],
		clusterUp.Round(time.Second), (setup - clusterUp).Round(time.Second), total.Round(time.Second))
	if total > netpolBudget {
		t.Errorf("the truth table took %v, over its %v budget", total.Round(time.Second), netpolBudget)
	}
}

// serve makes p the pod id of the truth table: TCP and UDP echo on ports
// 80 and 81, and an SCTP sink.
func (w *npWorld) serve(t *testing.T, id string, p *e2e.Pod) {
	t.Helper()
	w.pods[id] = p
	for _, port := range []uint16{80, 81} {
		for _, serve := range []func(e2e.NS, netip.AddrPort) (*e2e.Server, error){e2e.ServeTCP, e2e.ServeUDP} {
			s, err := serve(p.NS, netip.AddrPortFrom(netip.IPv6Unspecified(), port))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
		}
	}
	sink, err := newSCTPSink(p.NS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sink.Close)
	w.sinks[id] = sink
}

// runCase runs tc as a subtest: apply puts each stage in force and
// returns the policies ("ns/name") whose parts the nodes reported as not
// enforced; then the stage's matrices are probed.
func (w *npWorld) runCase(t *testing.T, tc npCase, note string, apply func(*testing.T, npStage) []string) {
	t.Run(tc.runName(), func(t *testing.T) {
		if note != "" {
			t.Log(note)
		}
		for si, st := range tc.stages {
			skipped := apply(t, st)
			if (len(skipped) > 0) != (st.problems != "") {
				t.Fatalf("stage %d: parts reported as not enforced: %v; want some for %q", si, skipped, st.problems)
			}
			for _, p := range skipped {
				if p != st.problems {
					t.Fatalf("stage %d: unexpected part not enforced, of %s", si, p)
				}
			}
			w.resetConntrack(t)
			for _, ck := range st.checks {
				for _, v6 := range tc.families() {
					w.validate(t, fmt.Sprintf("stage %d", si), ck, v6)
				}
			}
		}
	})
}

// runName is the subtest's name: upstream's, with the ipBlock family
// for the tests run once per family.
func (tc npCase) runName() string {
	if tc.family != 0 {
		return fmt.Sprintf("%s [IPv%d ipBlock]", tc.name, tc.family)
	}
	return tc.name
}

// validate probes the whole 9×9 matrix for ck in parallel and compares it
// with the expected one, printing both (and their comparison) as
// upstream's truth tables when they differ.
func (w *npWorld) validate(t *testing.T, stage string, ck npCheck, v6 bool) {
	t.Helper()
	got := newReach(false)
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []string
	for _, from := range netpolPods {
		for _, to := range netpolPods {
			wg.Add(1)
			go func() {
				defer wg.Done()
				want := ck.want[from][to]
				ok, err := w.probe(from, to, ck.proto, ck.port, v6, netpolDenyTimeout)
				if !ok && want && from != to {
					// On a loaded machine an allowed probe may miss the
					// short deny timeout: an allowed flow passes within
					// 3 s, a wrongly denied one fails again.
					ok, err = w.probe(from, to, ck.proto, ck.port, v6, 3*time.Second)
				}
				mu.Lock()
				defer mu.Unlock()
				got[from][to] = ok
				if err != nil && !strings.Contains(err.Error(), "timeout") && !strings.Contains(err.Error(), "deadline") && !strings.Contains(err.Error(), "not seen") {
					errs = append(errs, fmt.Sprintf("%s → %s: %v", from, to, err))
				}
			}()
		}
	}
	wg.Wait()
	fam := "IPv4"
	if v6 {
		fam = "IPv6"
	}
	right, wrong := 0, 0
	cmp := newReach(true)
	for _, f := range netpolPods {
		for _, to := range netpolPods {
			cmp[f][to] = got[f][to] == ck.want[f][to]
			switch {
			case f == to: // loopback: ignored, as upstream
			case cmp[f][to]:
				right++
			default:
				wrong++
			}
		}
	}
	label := fmt.Sprintf("%s %s/%d %s", stage, ck.proto, ck.port, fam)
	if wrong > 0 {
		sort.Strings(errs)
		t.Errorf("%s: reachability: correct:%d, incorrect:%d\n\nexpected:\n\n%s\n\nobserved:\n\n%s\n\ncomparison:\n\n%s\n\n%s",
			label, right, wrong, ck.want.pretty(), got.pretty(), cmp.pretty(), strings.Join(errs, "\n"))
		return
	}
	t.Logf("%s: reachability: correct:%d, incorrect:0", label, right)
}

// probe reports whether from reaches to on proto/port: a TCP or UDP echo
// comes back, or an SCTP INIT is seen by the destination's raw socket.
// A refusal or any error other than silence is returned as err.
func (w *npWorld) probe(from, to string, proto corev1.Protocol, port uint16, v6 bool, timeout time.Duration) (bool, error) {
	src, dst := w.pods[from], w.pods[to]
	ap := netip.AddrPortFrom(dst.Addr(v6), port)
	var err error
	switch proto {
	case corev1.ProtocolTCP:
		err = e2e.TCPEcho(src.NS, ap, []byte("netpol"), timeout)
	case corev1.ProtocolUDP:
		err = e2e.UDPEcho(src.NS, ap, []byte("netpol"), timeout)
	case corev1.ProtocolSCTP:
		err = w.sinks[to].probe(src.NS, src.Addr(v6), ap, timeout)
	default:
		return false, fmt.Errorf("protocol %s", proto)
	}
	return err == nil, err
}

// sctpSink watches for SCTP packets arriving in one pod, over IPv4 and
// IPv6, on raw sockets (the kernel has no SCTP sockets; raw ones see the
// packets all the same).
type sctpSink struct {
	mu   sync.Mutex
	seen map[sctpKey]bool
	fds  []int
	stop atomic.Bool
	wg   sync.WaitGroup
}

type sctpKey struct {
	src          netip.Addr
	sport, dport uint16
}

func newSCTPSink(ns e2e.NS) (*sctpSink, error) {
	s := &sctpSink{seen: map[sctpKey]bool{}}
	for _, af := range []int{unix.AF_INET, unix.AF_INET6} {
		var fd int
		if err := ns.Do(func() (err error) {
			fd, err = unix.Socket(af, unix.SOCK_RAW, unix.IPPROTO_SCTP)
			return err
		}); err != nil {
			s.Close()
			return nil, fmt.Errorf("raw sctp socket in %s: %w", ns.Name, err)
		}
		s.fds = append(s.fds, fd)
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			s.Close()
			return nil, err
		}
		s.wg.Add(1)
		go s.read(fd, af == unix.AF_INET)
	}
	return s, nil
}

func (s *sctpSink) read(fd int, v4 bool) {
	defer s.wg.Done()
	buf := make([]byte, 2048)
	for !s.stop.Load() {
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue
		}
		b := buf[:n]
		if v4 { // IPv4 raw sockets get the IP header, IPv6 ones do not
			ihl := int(b[0]&0x0f) * 4
			if len(b) < ihl {
				continue
			}
			b = b[ihl:]
		}
		if len(b) < 16 || b[12] != 1 { // common header + an INIT chunk
			continue
		}
		var src netip.Addr
		switch a := from.(type) {
		case *unix.SockaddrInet4:
			src = netip.AddrFrom4(a.Addr)
		case *unix.SockaddrInet6:
			src = netip.AddrFrom16(a.Addr)
		default:
			continue
		}
		s.mu.Lock()
		s.seen[sctpKey{src, binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:])}] = true
		s.mu.Unlock()
	}
}

// Close stops the readers and closes the sockets.
func (s *sctpSink) Close() {
	s.stop.Store(true)
	s.wg.Wait()
	for _, fd := range s.fds {
		unix.Close(fd)
	}
}

var sctpPort atomic.Uint32

// probe sends SCTP INIT chunks from src (address srcAddr) to dst every
// 100 ms until the sink sees one or timeout passes. Each probe uses a
// source port of its own, so an earlier probe's packet never counts.
func (s *sctpSink) probe(src e2e.NS, srcAddr netip.Addr, dst netip.AddrPort, timeout time.Duration) error {
	sport := uint16(20000 + sctpPort.Add(1)%40000)
	af := unix.AF_INET6
	var sa unix.Sockaddr = &unix.SockaddrInet6{Addr: dst.Addr().As16()}
	if dst.Addr().Is4() {
		af = unix.AF_INET
		sa = &unix.SockaddrInet4{Addr: dst.Addr().As4()}
	}
	var fd int
	if err := src.Do(func() (err error) {
		fd, err = unix.Socket(af, unix.SOCK_RAW, unix.IPPROTO_SCTP)
		return err
	}); err != nil {
		return fmt.Errorf("raw sctp socket in %s: %w", src.Name, err)
	}
	defer unix.Close(fd)
	pkt := netnstest.SCTPInit(sport, dst.Port())
	key := sctpKey{srcAddr, sport, dst.Port()}
	deadline := time.Now().Add(timeout)
	for next := time.Now(); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if !time.Now().Before(next) {
			if err := unix.Sendto(fd, pkt, 0, sa); err != nil {
				return fmt.Errorf("send sctp INIT to %s: %w", dst, err)
			}
			next = time.Now().Add(100 * time.Millisecond)
		}
		s.mu.Lock()
		ok := s.seen[key]
		s.mu.Unlock()
		if ok {
			return nil
		}
	}
	return fmt.Errorf("sctp INIT to %s not seen within %v", dst, timeout)
}
