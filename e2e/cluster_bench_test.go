// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build bench

package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/weftnet/weft/subnet"
	subnetetcd "github.com/weftnet/weft/subnet/etcd"
)

// Reference figures measured for flannel on this kind of machine (see
// /work/shared/FIELD-NOTES.md, "VXLAN"): they are from an earlier run, not
// this one, and are labelled so.
const (
	flannelReadyRef  = "flannel (FIELD-NOTES, earlier run): 228–322 ms"
	flannelRoutesRef = "flannel (FIELD-NOTES, earlier run): 228–327 ms (ready 228–322, then routes 0–5)"
	flannelRSSRef    = "flannel (FIELD-NOTES, earlier run): 41–43 MB"
)

func benchRow(figure, value, ref, note string) {
	fmt.Printf("BENCH| %s | %s | %s | %s\n", figure, value, ref, note)
}

func median(ds []float64) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// TestBenchThroughput: one TCP stream, pod on node1 → pod on node2 over
// VXLAN, against node1 → node2 over the underlay veth/bridge, interleaved
// in the same run (iperf3, 3 s per run, 3 rounds, medians).
func TestBenchThroughput(t *testing.T) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		benchRow("pod-to-pod TCP throughput across nodes (VXLAN)", "n/a", "node-to-node underlay: n/a", "skipped: iperf3 not installed (make bench installs it)")
		t.Skip("iperf3 not installed: apt-get install iperf3 (make bench does)")
	}
	c := NewForTest(t, Options{Nodes: 2, PodsPerNode: 1})
	n1, n2 := c.Nodes()[0], c.Nodes()[1]
	p1, p2 := n1.Pods()[0], n2.Pods()[0]
	var pod, under []float64
	for round := 0; round < 3; round++ {
		u, err := iperf(t, n1.NS, n2.NS, n2.IP)
		if err != nil {
			t.Fatalf("underlay: %v", err)
		}
		under = append(under, u)
		p, err := iperf(t, p1.NS, p2.NS, p2.IP)
		if err != nil {
			t.Fatalf("pod to pod: %v", err)
		}
		pod = append(pod, p)
		t.Logf("round %d: underlay %.2f Gbit/s, pod-to-pod %.2f Gbit/s", round+1, u/1e9, p/1e9)
	}
	mp, mu := median(pod), median(under)
	benchRow("pod-to-pod TCP throughput across nodes (VXLAN, 1 stream)", fmt.Sprintf("%.2f Gbit/s", mp/1e9),
		fmt.Sprintf("node-to-node underlay (same run): %.2f Gbit/s", mu/1e9),
		fmt.Sprintf("%.2f of underlay (flannel measured 0.93, FIELD-NOTES)", mp/mu))
}

// iperf runs an iperf3 server in srvNS on addr and a 3-second client in
// cliNS, and returns the received bits per second.
func iperf(t *testing.T, cliNS, srvNS NS, addr netip.Addr) (float64, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := srvNS.Command(ctx, "iperf3", "-s", "-1", "--forceflush", "-B", addr.String(), "-p", "5201")
	stdout, err := srv.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := srv.Start(); err != nil {
		return 0, fmt.Errorf("start iperf3 server: %w", err)
	}
	defer srv.Wait()
	defer srv.Process.Kill()
	// Wait for the server's "Server listening" line (a probe connection
	// would use up the one-off server's single test).
	listening := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ok := false
		for sc.Scan() {
			if !ok && strings.Contains(sc.Text(), "listening") {
				ok = true
				listening <- true
			}
		}
		if !ok {
			listening <- false
		}
	}()
	select {
	case ok := <-listening:
		if !ok {
			return 0, errors.New("iperf3 server exited before listening")
		}
	case <-time.After(10 * time.Second):
		return 0, errors.New("iperf3 server not listening after 10 s")
	}
	out, err := cliNS.Command(ctx, "iperf3", "-c", addr.String(), "-p", "5201", "-t", "3", "-J").Output()
	if err != nil {
		return 0, fmt.Errorf("iperf3 client: %w: %s", err, out)
	}
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return 0, fmt.Errorf("parse iperf3 output: %w", err)
	}
	if res.Error != "" {
		return 0, fmt.Errorf("iperf3: %s", res.Error)
	}
	return res.End.SumReceived.BitsPerSecond, nil
}

// TestBenchJoin: a node joins a running 3-node cluster, 5 times (nodes 4
// to 8): weftd start → /readyz 200, and start → a route to its subnet on
// every peer.
func TestBenchJoin(t *testing.T) {
	c := NewForTest(t, Options{Nodes: 3, Logf: func(string, ...any) {}})
	ctx := t.Context()
	var ready, routes, propagate []float64
	for trial := 0; trial < 5; trial++ {
		peers := c.Nodes()
		n, err := c.AddNode(0)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		err = Eventually(30*time.Second, 2*time.Millisecond, func() error {
			code, _, err := n.Get(ctx, "/readyz")
			if err != nil {
				return err
			}
			if code != 200 {
				return fmt.Errorf("HTTP %d", code)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s not ready: %v\n%s", n.Name, err, n.LogTail(30))
		}
		tReady := time.Since(start)
		sub, err := n.Subnet()
		if err != nil {
			t.Fatal(err)
		}
		pending := slices.Clone(peers)
		err = Eventually(30*time.Second, 2*time.Millisecond, func() error {
			pending = slices.DeleteFunc(pending, func(p *Node) bool {
				k, err := p.Kernel()
				if err != nil {
					return false
				}
				_, ok := k.RouteTo(sub)
				return ok
			})
			if len(pending) > 0 {
				return fmt.Errorf("%d peers without a route to %s", len(pending), sub)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		tRoutes := time.Since(start)
		ready = append(ready, msOf(tReady))
		routes = append(routes, msOf(tRoutes))
		propagate = append(propagate, msOf(tRoutes-tReady))
		t.Logf("%s: ready %.0f ms, routes on all %d peers %.0f ms", n.Name, msOf(tReady), len(peers), msOf(tRoutes))
	}
	benchRow("join: weftd start → ready (median of 5)", fmt.Sprintf("%.0f ms (max %.0f)", median(ready), slices.Max(ready)), flannelReadyRef, "node joins a running cluster of 3–7")
	benchRow("join: weftd start → route on every peer (median of 5)", fmt.Sprintf("%.0f ms (max %.0f)", median(routes), slices.Max(routes)), flannelRoutesRef,
		fmt.Sprintf("ready → routes everywhere: median %.0f ms", median(propagate)))
}

func msOf(d time.Duration) float64 { return d.Seconds() * 1000 }

// TestBenchRSS: weftd resident memory in a 3-node cluster, then with 500
// simulated peers (lease records claimed straight in etcd through the lease
// store, from inside the underlay namespace).
func TestBenchRSS(t *testing.T) {
	const simulated = 500
	cfg := `{"Network":"10.240.0.0/12","SubnetLen":24,"Backend":{"Type":"vxlan"}}`
	c := NewForTest(t, Options{Nodes: 3, PodsPerNode: 1, NetworkConfig: cfg, Logf: func(string, ...any) {}})
	ctx := t.Context()
	settle := func() {
		// Let the daemons reach their steady state (first resyncs, gossip
		// push/pull) before reading RSS; a duration, not a condition.
		time.Sleep(3 * time.Second)
	}
	settle()
	rss3, err := maxRSS(c)
	if err != nil {
		t.Fatal(err)
	}
	benchRow("weftd RSS, 3 nodes (max of 3)", fmt.Sprintf("%.1f MB", rss3/1e6), flannelRSSRef, fmt.Sprintf("%.2f of flannel's 42 MB", rss3/42e6))

	cli, err := c.Etcd.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	store := subnetetcd.New(subnetetcd.Config{Client: cli, Prefix: EtcdPrefix})
	netcfg, err := subnet.ParseConfig([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := 0; i < simulated; i++ {
		mac := make(net.HardwareAddr, 6)
		rand.Read(mac)
		mac[0] = mac[0]&^1 | 2 // unicast, locally administered
		rec := subnet.Record{
			NodeName:    fmt.Sprintf("sim-%03d", i),
			NodeID:      uuid.NewString(),
			PublicIP:    netip.AddrFrom4([4]byte{198, 19, byte(i / 250), byte(1 + i%250)}),
			BackendType: subnet.BackendVXLAN,
			BackendData: subnet.BackendData{VTEPMAC: mac.String()},
			Version:     1,
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := store.Claim(cctx, subnet.ClaimRequest{Config: netcfg, Record: rec, TTL: time.Hour})
		cancel()
		if err != nil {
			t.Fatalf("claim for simulated peer %d: %v", i, err)
		}
	}
	written := time.Since(start)
	n1 := c.Nodes()[0]
	want := simulated + len(c.Nodes()) - 1
	err = Eventually(60*time.Second, 50*time.Millisecond, func() error {
		k, err := n1.Kernel()
		if err != nil {
			return err
		}
		if len(k.Routes) < want {
			return fmt.Errorf("%s has %d weft routes, want %d", n1.Name, len(k.Routes), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	programmed := time.Since(start)
	settle()
	rss500, err := maxRSS(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes() {
		if !n.Running() {
			t.Errorf("weftd on %s died with %d peers", n.Name, simulated)
		}
	}
	benchRow(fmt.Sprintf("weftd RSS, 3 nodes + %d simulated peers (max of 3)", simulated), fmt.Sprintf("%.1f MB", rss500/1e6),
		fmt.Sprintf("weftd with 3 nodes (same run): %.1f MB", rss3/1e6),
		fmt.Sprintf("%.2fx; %d leases written in %.1f s, all routes on node1 %.1f s after the first write", rss500/rss3, simulated, written.Seconds(), programmed.Seconds()))
}

func maxRSS(c *Cluster) (float64, error) {
	var m int64
	var per []string
	for _, n := range c.Nodes() {
		r, err := n.Proc().RSS()
		if err != nil {
			return 0, err
		}
		per = append(per, fmt.Sprintf("%s %.1f MB", n.Name, float64(r)/1e6))
		m = max(m, r)
	}
	fmt.Printf("    weftd RSS: %s\n", strings.Join(per, ", "))
	return float64(m), nil
}
