// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/weftnet/weft/cni/antispoof"
	"github.com/weftnet/weft/daemon/status"
	"github.com/weftnet/weft/e2e/netnstest"
	"github.com/weftnet/weft/subnet"
)

// TestRunPolicyExplainAndDropLog: a real weftd with --policy-log-drops=5
// and a policy admitting UDP 80 to b from a only, on one node's bridge:
//
//	pod a ──┐
//	pod b ──┼── node (weftd, inet weft-policy)
//	pod c ──┘
//
// GET /policy/explain agrees with real probes (a → b allowed by the
// policy's rule 0, c → b denied by b's isolation, b → a open); c's denied
// probe yields a drop log line naming c, b, UDP, 80, the default deny
// and the policy; a flood of denied packets yields at most the rate.
func TestRunPolicyExplainAndDropLog(t *testing.T) {
	skipUnlessEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tn := newTestNode(t, testNetwork)
	dataDir := filepath.Join(t.TempDir(), "cni")
	const rate = 5
	tn.env["WEFTD_CNI_DATA_DIR"] = dataDir
	tn.env["WEFTD_LOG_LEVEL"] = "info"
	tn.env["WEFTD_POLICY_LOG_DROPS"] = fmt.Sprint(rate)
	w := startWeftd(t, tn.ns, tn.env)
	w.waitReady(t, 60*time.Second)
	sn := w.status(t).Node.Subnet
	base := sn.Addr().As4()
	at := func(last byte, bits int) netip.Prefix {
		b := base
		b[3] = last
		return netip.PrefixFrom(netip.AddrFrom4(b), bits)
	}
	netnstest.EnableForwarding(t, tn.ns)
	sfx := netnstest.Suffix(4)
	pods := map[string]*netnstest.NS{}
	ips := map[string]netip.Addr{}
	for i, name := range []string{"a", "b", "c"} {
		gw, ip := at(byte(1+64*i), 26), at(byte(10+64*i), 26)
		pods[name] = netnstest.AddPod(t, tn.ns, "dpod"+name, "d"+name+"-"+sfx, []netip.Prefix{gw}, []netip.Prefix{ip})
		ips[name] = ip.Addr()
		rec := antispoof.Record{
			ContainerID: "d" + name, IfName: "eth0", Port: fmt.Sprintf("weft%08x", 20+i), MAC: fmt.Sprintf("02:00:00:00:01:%02x", 20+i),
			IPv4: ip.Addr(), Pod: subnet.PodIdentity{Namespace: "x", Name: name, Labels: map[string]string{"app": name}},
		}
		if err := antispoof.WriteRecord(dataDir, rec); err != nil {
			t.Fatal(err)
		}
	}
	bAddr := netip.AddrPortFrom(ips["b"], 80)
	aAddr := netip.AddrPortFrom(ips["a"], 80)
	netnstest.UDPEcho(t, pods["b"], bAddr)
	netnstest.UDPEcho(t, pods["a"], aAddr)

	if err := tn.store.PutPolicies(ctx, []*networkingv1.NetworkPolicy{allowFrom("b-from-a", "b", "a")}); err != nil {
		t.Fatal(err)
	}
	poll(t, 20*time.Second, "policy applied", func() string {
		p := w.status(t).Policy
		if p == nil || p.Policies != 1 || p.LocalPods != 3 || !p.Enforced {
			return fmt.Sprintf("%+v", p)
		}
		return ""
	})

	explain := func(from, to string) *status.PolicyDirectionVerdict {
		t.Helper()
		q := url.Values{"from": {"x/" + from}, "to": {"x/" + to}, "proto": {"udp"}, "port": {"80"}}
		code, body, err := w.get(status.PolicyExplainPath + "?" + q.Encode())
		if err != nil || code != 200 {
			t.Fatalf("explain %s → %s: %d %v %s", from, to, code, err, body)
		}
		var out status.PolicyExplanation
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatal(err)
		}
		if len(out.Packets) != 1 || out.Packets[0].Egress == nil || out.Packets[0].Ingress == nil {
			t.Fatalf("explain %s → %s: want one IPv4 packet with both directions (one node): %s", from, to, body)
		}
		p := out.Packets[0]
		if !p.Egress.Allowed {
			t.Errorf("explain %s → %s: egress denied, but no policy selects %s for egress: %+v", from, to, from, p.Egress)
		}
		return p.Ingress
	}
	for _, tc := range []struct {
		from, to string
		allowed  bool
		dst      netip.AddrPort
	}{{"a", "b", true, bAddr}, {"c", "b", false, bAddr}, {"b", "a", true, aAddr}} {
		in := explain(tc.from, tc.to)
		timeout := 300 * time.Millisecond
		if in.Allowed {
			timeout = 2 * time.Second
		}
		probe := netnstest.UDPRoundTrip(pods[tc.from], tc.dst, timeout) == nil
		if in.Allowed != probe || probe != tc.allowed {
			t.Errorf("%s → %s UDP 80: explained allowed %t, the probe %t, want %t", tc.from, tc.to, in.Allowed, probe, tc.allowed)
		}
		switch {
		case tc.to == "a" && in.Isolated:
			t.Errorf("%s → a: a is isolated, but no policy selects it: %+v", tc.from, in)
		case tc.allowed && tc.to == "b" && (in.Rule == nil || in.Rule.Policy != "x/b-from-a" || in.Rule.Direction != "ingress" || in.Rule.Index != 0):
			t.Errorf("%s → b: not decided by x/b-from-a ingress rule 0: %+v", tc.from, in)
		case !tc.allowed && (in.Rule != nil || len(in.SelectedBy) != 1 || in.SelectedBy[0] != "x/b-from-a" || in.DefaultDeny == nil || in.DefaultDeny.ID != "ingress default deny ipv4"):
			t.Errorf("%s → b: not denied by b's isolation: %+v", tc.from, in)
		}
	}
	// The counters of the explanation moved with the probes. A table
	// applied anew (the pods' endpoints coming back from etcd, later on a
	// loaded machine) starts its counters at zero: then probe again, on
	// the table now applied.
	for attempt := 1; ; attempt++ {
		applies := w.status(t).Policy.Applies
		if attempt > 1 {
			_ = netnstest.UDPRoundTrip(pods["a"], bAddr, 2*time.Second)
			_ = netnstest.UDPRoundTrip(pods["c"], bAddr, 300*time.Millisecond)
		}
		ab, cb := explain("a", "b"), explain("c", "b")
		if ab.Rule != nil && ab.Rule.Packets > 0 && cb.DefaultDeny != nil && cb.DefaultDeny.Packets > 0 {
			break
		}
		// The first read may have met a table applied after the probes
		// (unseen by the count read before it): probe once more. After
		// that, probe again only while tables are being applied.
		if attempt == 1 || attempt < 3 && w.status(t).Policy.Applies != applies {
			continue
		}
		t.Errorf("a → b: the deciding rule %+v, c → b: the default deny %+v: one counted no packet", ab.Rule, cb.DefaultDeny)
		break
	}

	// c's denied probe gave a log line.
	want := fmt.Sprintf(`src=%s`, ips["c"])
	dropLines := func() []string {
		var out []string
		for _, l := range strings.Split(w.logBuf.String(), "\n") {
			if strings.Contains(l, "network policy dropped a packet") {
				out = append(out, l)
			}
		}
		return out
	}
	poll(t, 5*time.Second, "a drop log line for c → b", func() string {
		for _, l := range dropLines() {
			if strings.Contains(l, want) {
				for _, f := range []string{"dst=" + ips["b"].String(), "proto=UDP", "port=80", `rule="ingress default deny ipv4"`, "pod=x/b", "policies=x/b-from-a"} {
					if !strings.Contains(l, f) {
						return fmt.Sprintf("line %q lacks %s", l, f)
					}
				}
				return ""
			}
		}
		return fmt.Sprintf("no line with %q among %q", want, dropLines())
	})

	// A flood: 2000 denied datagrams from c to b as fast as they go, for
	// about 2 s; the log may say at most burst + rate × elapsed lines.
	time.Sleep(1500 * time.Millisecond) // the buckets refill
	before := len(dropLines())
	var conn *net.UDPConn
	if err := pods["c"].Do(func() (err error) {
		conn, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(bAddr))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	sent := 0
	for time.Since(start) < 2*time.Second {
		for range 20 {
			if _, err := conn.Write([]byte("flood")); err == nil {
				sent++
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // the last lines reach the log
	elapsed := time.Since(start).Seconds()
	logged := len(dropLines()) - before
	most := rate + int(rate*elapsed+0.999)
	t.Logf("flood: %d denied datagrams in %.1f s, %d drop log lines (rate %d/s: at most %d)", sent, elapsed, logged, rate, most)
	if logged < 1 || logged > most {
		t.Errorf("flood of %d packets: %d drop log lines, want 1..%d", sent, logged, most)
	}

	// The metrics count the lines and what reached weftd beyond its rate.
	_, body, err := w.get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("weft_policy_drops_logged_total %d\n", len(dropLines())); !strings.Contains(body, want) {
		t.Errorf("/metrics lacks %q", strings.TrimSpace(want))
	}
	for _, m := range []string{"weft_policy_drops_not_logged_total ", "weft_policy_drop_log_overruns_total "} {
		if !strings.Contains(body, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
}

// TestDropLogGroupTaken: when another socket holds the NFLOG group in the
// namespace, the reader fails with the kernel's reason (weftd retries and
// warns) instead of hanging or reading nothing silently; it stops with
// its context.
func TestDropLogGroupTaken(t *testing.T) {
	netnstest.SkipUnlessRoot(t)
	ns := netnstest.NewNS(t, "dlog")
	newLogger := func() *dropLogger {
		log := logrus.New()
		log.SetOutput(&testLogWriter{t: t})
		return &dropLogger{log: log, bucket: newTokenBucket(5, time.Now()), applied: func() *appliedPolicy { return nil },
			logged: prometheus.NewCounter(prometheus.CounterOpts{Name: "l"}), notLogged: prometheus.NewCounter(prometheus.CounterOpts{Name: "n"}),
			overruns: prometheus.NewCounter(prometheus.CounterOpts{Name: "o"})}
	}
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { first <- ns.Do(func() error { return readDropLog(ctx, DropLogGroup, newLogger()) }) }()
	// Once the kernel lists the group as bound, a second reader fails.
	poll(t, 5*time.Second, "the first reader bound the group", func() string {
		select {
		case err := <-first:
			t.Fatalf("the first reader returned: %v", err)
		default:
		}
		var b []byte
		_ = ns.Do(func() (err error) {
			b, err = os.ReadFile("/proc/thread-self/net/netfilter/nfnetlink_log")
			return err
		})
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 0 && f[0] == fmt.Sprint(DropLogGroup) {
				return ""
			}
		}
		return fmt.Sprintf("nfnetlink_log: %q", b)
	})
	cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
	err := ns.Do(func() error { return readDropLog(cctx, DropLogGroup, newLogger()) })
	ccancel()
	if !(errors.Is(err, unix.EPERM) || errors.Is(err, unix.EBUSY)) || !strings.Contains(err.Error(), "NFLOG group 9950") {
		t.Errorf("second reader: %v, want the kernel's refusal (EPERM or EBUSY) naming the group", err)
	}
	select {
	case err := <-first:
		t.Fatalf("the first reader returned early: %v", err)
	default:
	}
	cancel()
	select {
	case err := <-first:
		if err != nil {
			t.Errorf("the first reader, stopped: %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first reader did not stop within 5 s of its context's end")
	}
}
