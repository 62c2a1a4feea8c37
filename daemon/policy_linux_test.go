// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weftnet/weft/cni/antispoof"
	"github.com/weftnet/weft/cni/gate"
	"github.com/weftnet/weft/daemon/policy/nft"
	"github.com/weftnet/weft/daemon/status"
	"github.com/weftnet/weft/e2e/netnstest"
	"github.com/weftnet/weft/subnet"
)

// allowFrom is a policy of namespace x selecting app=dst pods for ingress,
// allowing UDP 80 from app=src pods of x.
func allowFrom(name, dst, src string) *networkingv1.NetworkPolicy {
	udp := corev1.ProtocolUDP
	port := intstr.FromInt32(80)
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": dst}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": src}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &port}},
			}},
		},
	}
}

// TestRunPolicyEnforced: weftd in etcd mode enforces a policy stored in
// etcd for its pods (from their CNI pod records), with real packets: a
// pod the policy does not allow is dropped, one it allows passes; a
// policy added while an allowed pod streams new flows loses none of them;
// a policy change takes effect; a rule deleted by hand comes back within
// one resync; a restart of weftd leaves the table in place (the denied
// pod stays denied, the allowed one keeps its replies throughout).
func TestRunPolicyEnforced(t *testing.T) {
	skipUnlessEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	tn := newTestNode(t, testNetwork)
	dataDir := filepath.Join(t.TempDir(), "cni")
	tn.env["WEFTD_CNI_DATA_DIR"] = dataDir
	tn.env["WEFTD_LOG_LEVEL"] = "info"
	w := startWeftd(t, tn.ns, tn.env)
	w.waitReady(t, 60*time.Second)
	sn := w.status(t).Node.Subnet
	if !sn.IsValid() {
		t.Fatal("no IPv4 subnet leased")
	}
	base := sn.Addr().As4()
	at := func(last byte, bits int) netip.Prefix {
		b := base
		b[3] = last
		return netip.PrefixFrom(netip.AddrFrom4(b), bits)
	}

	// Three routed pods on the node: a and c send, b serves UDP echo.
	netnstest.EnableForwarding(t, tn.ns)
	sfx := netnstest.Suffix(4)
	pods := map[string]*netnstest.NS{}
	for i, name := range []string{"a", "b", "c"} {
		gw, ip := at(byte(1+64*i), 26), at(byte(10+64*i), 26)
		pods[name] = netnstest.AddPod(t, tn.ns, "ppod"+name, "p"+name+"-"+sfx, []netip.Prefix{gw}, []netip.Prefix{ip})
		rec := antispoof.Record{
			ContainerID: "c" + name, IfName: "eth0", Port: fmt.Sprintf("weft%08x", 10+i), MAC: fmt.Sprintf("02:00:00:00:00:%02x", 10+i),
			IPv4: ip.Addr(), Pod: subnet.PodIdentity{Namespace: "x", Name: name, Labels: map[string]string{"app": name}},
		}
		if err := antispoof.WriteRecord(dataDir, rec); err != nil {
			t.Fatal(err)
		}
	}
	bAddr := netip.AddrPortFrom(at(10+64, 26).Addr(), 80)
	netnstest.UDPEcho(t, pods["b"], bAddr)
	// reaches probes with a short timeout (a denial waits it out);
	// answered probes with a long one (an allowed probe is not lost to a
	// slow first neighbour resolution).
	reaches := func(to netip.AddrPort, from string) bool {
		return netnstest.UDPRoundTrip(pods[from], to, 300*time.Millisecond) == nil
	}
	answered := func(to netip.AddrPort, from string) bool {
		return netnstest.UDPRoundTrip(pods[from], to, 2*time.Second) == nil
	}
	for _, from := range []string{"a", "c"} {
		if err := netnstest.UDPRoundTrip(pods[from], bAddr, 3*time.Second); err != nil {
			t.Fatalf("without a policy, %s must reach b: %v", from, err)
		}
	}

	// put stores the policies and returns the store's revision after the
	// write; applied waits until /status shows a policy revision at least
	// rev applied with all three local pods, enforced.
	put := func(nps ...*networkingv1.NetworkPolicy) int64 {
		t.Helper()
		if err := tn.store.PutPolicies(ctx, nps); err != nil {
			t.Fatal(err)
		}
		resp, err := tn.cli.Get(ctx, "weft-revision-probe")
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	localPods := 3
	applied := func(what string, rev int64) time.Duration {
		t.Helper()
		var last *status.Policy
		took := poll(t, 20*time.Second, what, func() string {
			last = w.status(t).Policy
			switch {
			case last == nil:
				return "no policy section in /status"
			case last.Revision < rev || last.LocalPods != localPods:
				return fmt.Sprintf("%+v", *last)
			case !last.Enforced:
				return "not enforced: " + last.Problem
			}
			return ""
		})
		t.Logf("%s: applied %s after the store write (%d policies, %d applies)", what, took.Round(time.Millisecond), last.Policies, last.Applies)
		return took
	}
	applied("allow b from a", put(allowFrom("b-from-a", "b", "a")))
	if !answered(bAddr, "a") {
		t.Error("a → b UDP 80 allowed by the policy, but dropped")
	}
	if reaches(bAddr, "c") {
		t.Error("c → b passed; the policy allows only a")
	}

	// A policy added under traffic: a → b, allowed before and after, runs
	// throughout the table's replacement (every probe a new flow, so each
	// is judged by the rules in force) and loses nothing; c is let in.
	endStream := udpStream(pods["a"], bAddr)
	time.Sleep(200 * time.Millisecond)
	applied("allow b from c too, a → b streaming", put(allowFrom("b-from-c", "b", "c")))
	time.Sleep(200 * time.Millisecond)
	if sent, lost := endStream(); sent < 10 || lost != 0 {
		t.Errorf("a → b while a policy was added: %d of %d probes lost (want 0 of at least 10)", lost, sent)
	} else {
		t.Logf("a → b while a policy was added: %d probes, none lost", sent)
	}
	if !answered(bAddr, "c") {
		t.Error("c → b dropped after the policy allowing it was applied")
	}
	if err := tn.store.DeletePolicy(ctx, "x", "b-from-c"); err != nil {
		t.Fatal(err)
	}
	resp, err := tn.cli.Get(ctx, "weft-revision-probe")
	if err != nil {
		t.Fatal(err)
	}
	applied("b-from-c deleted", resp.Header.Revision)

	// A policy change under traffic: now only c is allowed.
	rev := put(allowFrom("b-from-a", "b", "c"))
	applied("allow b from c instead", rev)
	if a, c := reaches(bAddr, "a"), answered(bAddr, "c"); a || !c {
		t.Errorf("after the change: a reaches b %t (want false), c %t (want true)", a, c)
	}

	// Birth: pod d (app=b, so only c may reach it) is held at the gate
	// as the plugin holds it, before its record exists: nothing reaches
	// it and weftd does not release it. Once its record is written weftd
	// releases it in the transaction that puts it in b's isolation set.
	c, err := nft.NewConn(nftables.WithNetNSFd(int(tn.ns.Handle)))
	if err != nil {
		t.Fatal(err)
	}
	dIP := at(10+64*3, 26)
	d := netnstest.AddPod(t, tn.ns, "ppodd", "pd-"+sfx, []netip.Prefix{at(1+64*3, 26)}, []netip.Prefix{dIP})
	dAddr := netip.AddrPortFrom(dIP.Addr(), 80)
	netnstest.UDPEcho(t, d, dAddr)
	dRec := antispoof.Record{ContainerID: "cd", IfName: "eth0", Port: "weft0000000d", MAC: "02:00:00:00:00:0d",
		IPv4: dIP.Addr(), Pod: subnet.PodIdentity{Namespace: "x", Name: "d", Labels: map[string]string{"app": "b"}}}
	hold(t, tn.ns, dRec)
	if netnstest.UDPRoundTrip(pods["c"], dAddr, 300*time.Millisecond) == nil {
		t.Error("c reached d while d was held")
	}
	if len(heldAt(t, c)) != 1 {
		t.Error("weftd released d, which has no pod record yet")
	}
	poll(t, 5*time.Second, "/status counts d's address as held", func() string {
		if p := w.status(t).Policy; p == nil || p.HeldAddresses != 1 {
			return fmt.Sprintf("%+v", p)
		}
		return ""
	})
	if err := antispoof.WriteRecord(dataDir, dRec); err != nil {
		t.Fatal(err)
	}
	took := poll(t, 5*time.Second, "d released", func() string {
		if h := heldAt(t, c); len(h) > 0 {
			return fmt.Sprint(h)
		}
		return ""
	})
	if !inSet(t, c, "ingress-isolated4", dIP.Addr()) {
		t.Error("d was released before the state that isolates it was applied")
	}
	t.Logf("birth: d released %s after its record was written", took.Round(time.Millisecond))
	localPods = 4
	applied("d added", rev)
	poll(t, 5*time.Second, "/status counts no held address once d is released", func() string {
		if p := w.status(t).Policy; p == nil || p.HeldAddresses != 0 {
			return fmt.Sprintf("%+v", p)
		}
		return ""
	})
	if a, c := reaches(dAddr, "a"), answered(dAddr, "c"); a || !c {
		t.Errorf("d after its release: a reaches it %t (want false), c %t (want true)", a, c)
	}

	// Drift: the ingress chain flushed by hand opens b to a; one resync
	// (1 s here) puts the rules back.
	tbl := &nftables.Table{Name: nft.Table, Family: nftables.TableFamilyINet}
	c.FlushChain(&nftables.Chain{Name: nft.ChainIngress, Table: tbl})
	if err := c.Flush(); err != nil {
		t.Fatalf("flush the ingress chain by hand: %v", err)
	}
	flushed := time.Now()
	took = poll(t, 5*time.Second, "ingress rules restored", func() string {
		rules, err := c.GetRules(tbl, &nftables.Chain{Name: nft.ChainIngress, Table: tbl})
		if err != nil || len(rules) == 0 {
			return fmt.Sprintf("%d rules, %v", len(rules), err)
		}
		return ""
	})
	t.Logf("drift repaired %s after the chain was flushed (resync 1s)", took.Round(time.Millisecond))
	if d := time.Since(flushed); d > 2*time.Second {
		t.Errorf("repair took %s, more than one resync interval (1s) plus margin", d)
	}
	if a, c := reaches(bAddr, "a"), answered(bAddr, "c"); a || !c {
		t.Errorf("after the repair: a reaches b %t (want false), c %t (want true)", a, c)
	}

	// The counters of the policy show in /metrics.
	_, body, err := w.get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`weft_policy_packets_total{rule="ingress default deny ipv4"}`, `weft_policy_packets_total{rule="x/b-from-a ingress[0]`, "weft_policy_applies_total", "weft_policy_enforced 1", "weft_policies 1"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, `weft_policy_packets_total{rule="ingress default deny ipv4"} 0`) {
		t.Error("the ingress default deny counted no packet, but a's probes were dropped")
	}

	// Restart under policy: probes run throughout; a's never pass, c's
	// always get their reply.
	var leaks, losses, probes atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			probes.Add(1)
			if reaches(bAddr, "a") {
				leaks.Add(1)
			}
			if netnstest.UDPRoundTrip(pods["c"], bAddr, time.Second) != nil {
				losses.Add(1)
			}
		}
	}()
	w.stop()
	if gone, _ := w.exited(); !gone || !w.exitedCleanly() {
		t.Fatal("weftd did not exit cleanly")
	}
	if rules, err := c.GetRules(tbl, &nftables.Chain{Name: nft.ChainIngress, Table: tbl}); err != nil || len(rules) == 0 {
		t.Errorf("after weftd stopped the policy table is gone or empty: %d rules, %v", len(rules), err)
	}
	// A pod added while weftd is down stays held until weftd is back.
	eRec := dRec
	eRec.ContainerID, eRec.Port, eRec.MAC, eRec.Pod.Name = "ce", "weft0000000e", "02:00:00:00:00:0e", "e"
	eRec.IPv4 = at(11+64*3, 26).Addr()
	hold(t, tn.ns, eRec)
	if err := antispoof.WriteRecord(dataDir, eRec); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if len(heldAt(t, c)) != 1 {
		t.Error("e, added while weftd was down, is not held")
	}
	w = startWeftd(t, tn.ns, tn.env)
	w.waitReady(t, 60*time.Second)
	localPods = 5
	applied("after the restart", rev)
	if h := heldAt(t, c); len(h) > 0 {
		t.Errorf("after the restart, still held: %v", h)
	}
	time.Sleep(time.Second)
	close(stop)
	<-done
	t.Logf("restart under policy: %d probe rounds, %d denied probes passed, %d allowed probes without reply", probes.Load(), leaks.Load(), losses.Load())
	if leaks.Load() != 0 || losses.Load() != 0 {
		t.Errorf("restart under policy: %d denied probes passed, %d allowed probes got no reply; want 0 and 0", leaks.Load(), losses.Load())
	}
}

// hold holds r's addresses at the gate in ns, as the CNI plugin's ADD does.
func hold(t *testing.T, ns *netnstest.NS, r antispoof.Record) {
	t.Helper()
	err := ns.Do(func() error {
		held, err := gate.Hold(r.Port, r.MAC, []netip.Addr{r.IPv4})
		if err == nil && !held {
			err = fmt.Errorf("no gate: weftd did not make nftables table inet %s", gate.Table)
		}
		return err
	})
	if err != nil {
		t.Fatalf("hold %s: %v", r.Port, err)
	}
}

// heldAt lists the gate's held addresses.
func heldAt(t *testing.T, c *nftables.Conn) []gate.Pending {
	t.Helper()
	h, err := gate.List(c)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// inSet reports whether a is in the policy table's set name.
func inSet(t *testing.T, c *nftables.Conn, name string, a netip.Addr) bool {
	t.Helper()
	es, err := c.GetSetElements(&nftables.Set{Table: &nftables.Table{Name: nft.Table, Family: nftables.TableFamilyINet}, Name: name, KeyType: nftables.TypeIPAddr})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if b, ok := netip.AddrFromSlice(e.Key); ok && b == a {
			return true
		}
	}
	return false
}

// udpStream sends UDP probes from pod to addr one after another until the
// returned function is called, which reports how many were sent and how
// many got no answer. Each probe is one datagram from a new socket (a new
// flow, judged by the rules in force) given 500 ms to be answered: a drop
// is a lost probe, never made up for by a retry.
func udpStream(pod *netnstest.NS, addr netip.AddrPort) func() (sent, lost int) {
	var stop atomic.Bool
	done := make(chan struct{})
	var s, l int
	go func() {
		defer close(done)
		buf := make([]byte, 64)
		for !stop.Load() {
			s++
			var c *net.UDPConn
			err := pod.Do(func() (err error) {
				c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
				return err
			})
			if err == nil {
				msg := fmt.Appendf(nil, "probe %d", s)
				c.SetDeadline(time.Now().Add(500 * time.Millisecond))
				var n int
				if _, err = c.Write(msg); err == nil {
					n, err = c.Read(buf)
				}
				if err == nil && string(buf[:n]) != string(msg) {
					err = fmt.Errorf("answer %q to %q", buf[:n], msg)
				}
				c.Close()
			}
			if err != nil {
				l++
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return func() (int, int) {
		stop.Store(true)
		<-done
		return s, l
	}
}
