// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e && linux

package e2e_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/weftnet/weft/daemon/membership"
	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/e2etest"
	"github.com/weftnet/weft/subnet"
)

// rogueEnv carries a rogue's spec (JSON) to the test binary re-executed
// in the outside host's namespace.
const rogueEnv = "WEFT_E2E_ROGUE"

// rogueSpec is what a rogue process runs: one raw memberlist member per
// claim, plus Names members that claim nothing, each joining Join.
type rogueSpec struct {
	// Key is the gossip key (base64); empty: no key.
	Key    string             `json:"key,omitempty"`
	BindIP string             `json:"bindIP"`
	Join   []string           `json:"join"`
	Claims []rogueClaim       `json:"claims,omitempty"`
	Names  int                `json:"names,omitempty"`
	Data   subnet.BackendData `json:"data,omitzero"`
}

type rogueClaim struct {
	Name string          `json:"name"`
	Meta membership.Meta `json:"meta"`
}

// rogueDelegate publishes fixed metadata.
type rogueDelegate struct{ meta []byte }

func (d rogueDelegate) NodeMeta(int) []byte                 { return d.meta }
func (d rogueDelegate) NotifyMsg([]byte)                    {}
func (d rogueDelegate) GetBroadcasts(int, int) [][]byte     { return nil }
func (d rogueDelegate) LocalState(bool) []byte              { return nil }
func (d rogueDelegate) MergeRemoteState(buf []byte, _ bool) {}

// TestRogueProcess is not a test: it is the rogue member's program, run by
// startRogue in the outside host's namespace (it skips otherwise). It
// prints "joined <n>" once every member tried to join, then runs until
// killed.
func TestRogueProcess(t *testing.T) {
	raw := os.Getenv(rogueEnv)
	if raw == "" {
		t.Skip("helper process of the adversary tests; runs only when started by them")
	}
	var spec rogueSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		t.Fatal(err)
	}
	var key []byte
	if spec.Key != "" {
		var err error
		if key, err = base64.StdEncoding.DecodeString(spec.Key); err != nil {
			t.Fatal(err)
		}
	}
	type member struct {
		name string
		meta []byte
	}
	var ms []member
	for _, c := range spec.Claims {
		b, _ := json.Marshal(c.Meta)
		ms = append(ms, member{c.Name, b})
	}
	for i := range spec.Names {
		ms = append(ms, member{fmt.Sprintf("rogue-name-%04d", i), nil})
	}
	var lists []*memberlist.Memberlist
	var joined atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16) // joins in flight
	for _, m := range ms {
		cfg := memberlist.DefaultLANConfig()
		cfg.Name = m.name
		cfg.BindAddr, cfg.BindPort = spec.BindIP, 0
		cfg.AdvertiseAddr = spec.BindIP
		cfg.Delegate = rogueDelegate{m.meta}
		cfg.LogOutput = io.Discard
		// Few probes and push-pulls of their own: the load is on the
		// honest nodes. A thousand members in this one process probing
		// every 5 s and pushing their state every 30 s took both of the
		// machine's cores: the thousand joins took 160 s on a quiet
		// machine and over the 5 minutes allowed in one CI run (now
		// about 5 s). Gossip stays at once a second, so every honest
		// node is still flooded past its cap.
		cfg.ProbeInterval = 30 * time.Second
		cfg.PushPullInterval = time.Minute
		cfg.GossipInterval = time.Second
		if key != nil {
			cfg.SecretKey = key
		}
		ml, err := memberlist.Create(cfg)
		if err != nil {
			t.Fatalf("rogue %s: %v", m.name, err)
		}
		lists = append(lists, ml)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := ml.Join(spec.Join); err == nil {
				joined.Add(1)
			}
		})
	}
	wg.Wait()
	fmt.Printf("joined %d of %d\n", joined.Load(), len(ms))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	for _, ml := range lists {
		_ = ml.Shutdown()
	}
	// memberlist's probe goroutines outlive Shutdown briefly; this
	// process is a helper, not a test run whose leaks matter: leave
	// before TestMain's leak check.
	os.Exit(0)
}

// rogue is a running rogue process.
type rogue struct {
	cmd    *exec.Cmd
	joined string
}

// startRogue runs spec in ns (the outside host) and waits until its
// members tried to join.
func startRogue(t *testing.T, ns e2e.NS, spec rogueSpec) *rogue {
	t.Helper()
	raw, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := ns.Command(context.Background(), exe, "-test.run=^TestRogueProcess$")
	cmd.Env = append(os.Environ(), rogueEnv+"="+string(raw))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &rogue{cmd: cmd}
	t.Cleanup(r.stop)
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "joined ") {
				line <- sc.Text()
			}
		}
		close(line)
	}()
	select {
	case l, ok := <-line:
		if !ok {
			t.Fatal("rogue process ended before joining")
		}
		r.joined = l
	case <-time.After(5 * time.Minute):
		t.Fatal("rogue process did not join within 5 minutes")
	}
	return r
}

// stop ends the rogue process (ip netns exec execs the test binary, so the
// PID is the rogue's).
func (r *rogue) stop() {
	if r.cmd.Process == nil || r.cmd.ProcessState != nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-done
	}
}

// metricSum sums the samples of a metric family in n's /metrics whose
// labels contain every one of labels.
func metricSum(ctx context.Context, n *e2e.Node, name string, labels ...string) (float64, error) {
	code, body, err := n.Get(ctx, "/metrics")
	if err != nil || code != 200 {
		return 0, fmt.Errorf("GET /metrics on %s: %d %v", n.Name, code, err)
	}
	var sum float64
	for _, l := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(l, name+"{") && !strings.HasPrefix(l, name+" ") {
			continue
		}
		ok := true
		for _, lb := range labels {
			ok = ok && strings.Contains(l, lb)
		}
		if !ok {
			continue
		}
		f := strings.Fields(l)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

// kernelClean checks that nothing of the rogue (its address, MACs, or
// subnets) is in any node's routes, neighbours or FDB, and that every
// honest peer is routed as before.
func kernelClean(nodes []*e2e.Node, rogueIP netip.Addr, macs []string, subnets []netip.Prefix, want map[string]e2e.KernelRoute) error {
	for _, n := range nodes {
		k, err := n.Kernel()
		if err != nil {
			return err
		}
		for _, r := range k.Routes {
			if r.Gw == rogueIP || slices.Contains(subnets, r.Dst) {
				return fmt.Errorf("%s: rogue route %s", n.Name, r)
			}
		}
		for _, f := range k.FDB {
			if f.Dst == rogueIP {
				return fmt.Errorf("%s: FDB entry towards the rogue: %+v", n.Name, f)
			}
		}
		for _, m := range macs {
			if f, ok := k.FDBFor(m); ok {
				return fmt.Errorf("%s: rogue FDB entry %+v", n.Name, f)
			}
			for _, ne := range k.Neighbours {
				if strings.EqualFold(ne.MAC, m) {
					return fmt.Errorf("%s: rogue neighbour %+v", n.Name, ne)
				}
			}
		}
		for key, r := range want {
			node, dst, _ := strings.Cut(key, " ")
			if node != n.Name {
				continue
			}
			got, ok := k.RouteTo(netip.MustParsePrefix(dst))
			if !ok || got != r {
				return fmt.Errorf("%s: route to %s is %v (present %v), want %s", n.Name, dst, got, ok, r)
			}
		}
	}
	return nil
}

// TestAdversary runs rogue gossip members and rogue lease records against a
// three-node VXLAN cluster that gossips encrypted with the store's key (the
// default), under pod traffic between the honest nodes:
//
//   - a member without the key is refused at the transport;
//   - members with the key claim another node's subnet at a higher epoch,
//     a subnet outside the network, a /25 inside a peer's /24, 0.0.0.0/1,
//     and a dead node's name and subnet;
//   - 1000 member names flood the member table (capped at 200 here);
//   - lease records written straight into etcd: 0.0.0.0/1, a /32 of
//     etcd's address, a /25 inside a peer's /24.
//
// For each, nothing reaches routes, neighbours or FDB on any node (read
// from the kernel), the honest routes stay, /status and the metrics show
// the rejection, and the pod stream loses nothing.
func TestAdversary(t *testing.T) {
	const maxMembers = 200
	c := e2etest.NewCluster(t, e2e.Options{Nodes: 4, PodsPerNode: 1, ResyncInterval: time.Second,
		WeftdArgs: []string{"--log-format", "json", "--gossip-max-members", strconv.Itoa(maxMembers)}})
	ctx := t.Context()
	all := c.Nodes()
	for _, n := range all {
		if err := n.WaitReady(ctx, 60*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := waitGossipAlive(ctx, all, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, n := range all {
		st, err := n.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Node.GossipEncryption != "on" || st.Node.GossipKeySource != "store" || st.Node.GossipWarning != "" {
			t.Fatalf("%s gossips with encryption %q, key from %q (warning %q); want on, from the store, by default",
				n.Name, st.Node.GossipEncryption, st.Node.GossipKeySource, st.Node.GossipWarning)
		}
	}
	// node4 dies; its lease stays in etcd (its TTL is a day).
	dead := all[3]
	deadSubnet, err := dead.Subnet()
	if err != nil {
		t.Fatal(err)
	}
	if err := dead.Kill(); err != nil {
		t.Fatal(err)
	}
	nodes := all[:3]
	// Wait until every node holds it dead, so that its name can be taken
	// from another address (memberlist's dead-node reclaim).
	err = e2e.Eventually(30*time.Second, 100*time.Millisecond, func() error {
		for _, n := range nodes {
			st, err := n.Status(ctx)
			if err != nil {
				return err
			}
			if s := memberState(st, dead.Name); s != "dead" {
				return fmt.Errorf("%s holds %s %q", n.Name, dead.Name, s)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := c.Etcd.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, e2e.EtcdPrefix+"/gossip-key")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("the store's gossip key: %v (%d keys)", err, len(resp.Kvs))
	}
	key := string(resp.Kvs[0].Value)

	subnets := map[string]netip.Prefix{}
	for _, n := range all {
		s, err := n.Subnet()
		if err != nil {
			t.Fatal(err)
		}
		subnets[n.Name] = s
	}
	// The routes every node holds now: they must stay as they are.
	want := map[string]e2e.KernelRoute{}
	for _, n := range nodes {
		k, err := n.Kernel()
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range all {
			if o == n {
				continue
			}
			r, ok := k.RouteTo(subnets[o.Name])
			if !ok {
				t.Fatalf("%s has no route to %s's %s", n.Name, o.Name, subnets[o.Name])
			}
			want[n.Name+" "+subnets[o.Name].String()] = r
		}
	}
	stream, err := e2e.StartStream(nodes[0].Pods()[0].NS, nodes[1].Pods()[0].IP, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	stream2, err := e2e.StartStream(nodes[2].Pods()[0].NS, nodes[0].Pods()[0].IP, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var joinAddrs []string
	for _, n := range nodes {
		joinAddrs = append(joinAddrs, net.JoinHostPort(n.IP.String(), strconv.Itoa(e2e.GossipPort)))
	}
	rogueIP := e2e.OutsideIP
	var macs []string
	var rogueSubnets []netip.Prefix

	t.Run("no-key", func(t *testing.T) {
		offsets := map[string]int64{}
		for _, n := range nodes {
			offsets[n.Name] = e2e.FileSize(n.LogFile)
		}
		r := startRogue(t, c.Outside, rogueSpec{BindIP: rogueIP.String(), Join: joinAddrs,
			Claims: []rogueClaim{{Name: "rogue-nokey", Meta: membership.Meta{Subnet: netip.MustParsePrefix("10.244.250.0/24"), PublicIP: rogueIP, Epoch: 1 << 40}}}})
		if r.joined != "joined 0 of 1" {
			t.Errorf("a member without the key: %s, want no join", r.joined)
		}
		err := e2e.Eventually(20*time.Second, 200*time.Millisecond, func() error {
			for _, n := range nodes {
				found := false
				for _, e := range gossipLogLines(n, offsets[n.Name], "gossip message rejected: wrong or missing gossip key") {
					found = found || strings.Contains(fmt.Sprint(e["from"]), rogueIP.String())
				}
				if !found {
					return fmt.Errorf("%s has not logged the refusal of %s", n.Name, rogueIP)
				}
			}
			return nil
		})
		if err != nil {
			t.Error(err)
			for _, n := range nodes {
				data, _ := os.ReadFile(n.LogFile)
				for _, l := range strings.Split(string(data[min(int(offsets[n.Name]), len(data)):]), "\n") {
					if strings.Contains(l, rogueIP.String()) || strings.Contains(l, "gossip message rejected") {
						t.Logf("%s: %s", n.Name, l)
					}
				}
			}
		}
		for _, n := range nodes {
			st, err := n.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if s := memberState(st, "rogue-nokey"); s != "" {
				t.Errorf("%s lists the keyless rogue as a member (%s)", n.Name, s)
			}
		}
		r.stop()
	})

	t.Run("claims", func(t *testing.T) {
		upper := subnets[nodes[2].Name].Addr().As4()
		upper[3] = 128
		claims := []rogueClaim{
			{"rogue-epoch", membership.Meta{NodeID: "rogue", Subnet: subnets[nodes[1].Name], Epoch: 1 << 40, Version: 99}},
			{"rogue-outside", membership.Meta{NodeID: "rogue", Subnet: netip.MustParsePrefix("10.99.0.0/24"), Epoch: 1 << 40}},
			{"rogue-25", membership.Meta{NodeID: "rogue", Subnet: netip.PrefixFrom(netip.AddrFrom4(upper), 25), Epoch: 1 << 40}},
			{"rogue-half", membership.Meta{NodeID: "rogue", Subnet: netip.MustParsePrefix("0.0.0.0/1"), Epoch: 1 << 40}},
			{dead.Name, membership.Meta{NodeID: "rogue", Subnet: deadSubnet, Epoch: 1 << 40, Version: 99}},
		}
		for i := range claims {
			mac := fmt.Sprintf("02:42:00:00:00:%02x", i+1)
			claims[i].Meta.PublicIP = rogueIP
			claims[i].Meta.Data = subnet.BackendData{VTEPMAC: mac}
			macs = append(macs, mac)
			// Honest subnets (node2's, the dead node4's) keep their
			// routes: want checks those are unchanged.
			if !slices.Contains(slices.Collect(maps.Values(subnets)), claims[i].Meta.Subnet) {
				rogueSubnets = append(rogueSubnets, claims[i].Meta.Subnet)
			}
		}
		start := time.Now()
		r := startRogue(t, c.Outside, rogueSpec{Key: key, BindIP: rogueIP.String(), Join: joinAddrs, Claims: claims})
		t.Logf("rogue with the key: %s", r.joined)
		err := e2e.Eventually(30*time.Second, 100*time.Millisecond, func() error {
			for _, n := range nodes {
				st, err := n.Status(ctx)
				if err != nil {
					return err
				}
				got := map[string]string{}
				for _, rj := range st.Rejected {
					if rj.Source == "gossip" {
						got[rj.Name] = rj.Reason
					}
				}
				for _, cl := range claims {
					if _, ok := got[cl.Name]; !ok {
						return fmt.Errorf("%s does not list %s's claim of %s as rejected (rejected: %v)", n.Name, cl.Name, cl.Meta.Subnet, got)
					}
				}
				v, err := metricSum(ctx, n, "weft_peers_rejected", `source="gossip"`)
				if err != nil {
					return err
				}
				if v < float64(len(claims)) {
					return fmt.Errorf("%s: weft_peers_rejected{source=gossip} = %v, want >= %d", n.Name, v, len(claims))
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("every node shows every rogue claim as rejected after %.2f s", time.Since(start).Seconds())
		st, _ := nodes[0].Status(ctx)
		for _, rj := range st.Rejected {
			t.Logf("%s rejected: %s %s (%s): %s", nodes[0].Name, rj.Name, rj.Subnet, rj.Source, rj.Reason)
		}
		// Through several resyncs (1 s each), nothing of the rogue's is in
		// any kernel and the honest routes are unchanged.
		for range 5 {
			if err := kernelClean(nodes, rogueIP, macs, rogueSubnets, want); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
		}
		r.stop()
	})

	t.Run("1000-names", func(t *testing.T) {
		n := nodes[0]
		rss0, err := n.Proc().RSS()
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		r := startRogue(t, c.Outside, rogueSpec{Key: key, BindIP: rogueIP.String(), Join: joinAddrs[:1], Names: 1000})
		t.Logf("1000 rogue names after %.1f s: %s", time.Since(start).Seconds(), r.joined)
		// Let gossip spread them, then measure.
		time.Sleep(10 * time.Second)
		for _, o := range nodes {
			st, err := o.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Members) > maxMembers+len(all) {
				t.Errorf("%s's member table holds %d members, cap %d (+%d the store names)", o.Name, len(st.Members), maxMembers, len(all))
			}
			refused, err := metricSum(ctx, o, "weft_gossip_members_refused_total")
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d members, %v names refused", o.Name, len(st.Members), refused)
			if o == n && refused == 0 {
				t.Errorf("%s refused no name", o.Name)
			}
		}
		rss1, err := n.Proc().RSS()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s RSS %.1f MiB before, %.1f MiB with 1000 rogue names (%+.1f MiB)", n.Name, float64(rss0)/(1<<20), float64(rss1)/(1<<20), float64(rss1-rss0)/(1<<20))
		if rss1-rss0 >= 10<<20 {
			t.Errorf("RSS grew by %.1f MiB, want < 10 MiB", float64(rss1-rss0)/(1<<20))
		}
		if err := kernelClean(nodes, rogueIP, macs, rogueSubnets, want); err != nil {
			t.Error(err)
		}
		r.stop()
	})

	t.Run("etcd-leases", func(t *testing.T) {
		upper := subnets[nodes[1].Name].Addr().As4()
		upper[3] = 128
		bad := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/1"), netip.PrefixFrom(e2e.EtcdIP, 32), netip.PrefixFrom(netip.AddrFrom4(upper), 25)}
		start := time.Now()
		for i, p := range bad {
			mac := fmt.Sprintf("02:42:00:00:01:%02x", i+1)
			macs = append(macs, mac)
			rec, _ := json.Marshal(map[string]any{"nodeName": fmt.Sprintf("rogue-lease-%d", i), "nodeID": fmt.Sprintf("00000000-0000-4000-8000-00000000000%d", i),
				"subnet": p.String(), "publicIP": rogueIP.String(), "backendType": "vxlan", "backendData": map[string]string{"vtepMAC": mac}, "version": 1})
			if _, err := cli.Put(ctx, e2e.EtcdPrefix+"/leases/"+subnet.KeyName(p), string(rec)); err != nil {
				t.Fatal(err)
			}
		}
		err := e2e.Eventually(30*time.Second, 100*time.Millisecond, func() error {
			for _, n := range nodes {
				st, err := n.Status(ctx)
				if err != nil {
					return err
				}
				keys := map[string]bool{}
				for _, r := range st.RejectedLeases {
					keys[r.Key] = true
				}
				for _, p := range bad {
					if !keys[subnet.KeyName(p)] {
						return fmt.Errorf("%s does not list lease %s as rejected (%+v)", n.Name, p, st.RejectedLeases)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("every node shows every rogue lease as rejected after %.2f s", time.Since(start).Seconds())
		for range 3 {
			if err := kernelClean(nodes, rogueIP, macs, bad, want); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
		}
	})

	for _, s := range []*e2e.Stream{stream, stream2} {
		res := s.Stop()
		t.Logf("pod stream during the attacks: %s", res)
		if res.Sent == 0 || res.Lost() != 0 {
			t.Errorf("pod traffic between honest nodes: %s, want nothing lost", res)
		}
	}
}
