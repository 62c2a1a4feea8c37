// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build bench && linux

package e2e_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/e2etest"
	"github.com/weftnet/weft/subnet"
	subnetetcd "github.com/weftnet/weft/subnet/etcd"
)

// stormNetwork has room for 16384 /24 subnets.
const stormNetwork = `{"Network": "10.0.0.0/10", "Backend": {"Type": "vxlan"}}`

// simRecord is the record of simulated node i: a unique name, node ID,
// public IP (198.19.0.0/16) and VTEP MAC.
func simRecord(name string, i int) subnet.Record {
	mac := make(net.HardwareAddr, 6)
	rand.Read(mac)
	mac[0] = mac[0]&^1 | 2 // unicast, locally administered
	return subnet.Record{
		NodeName:    name,
		NodeID:      uuid.NewString(),
		PublicIP:    netip.AddrFrom4([4]byte{198, 19, byte(i / 250), byte(1 + i%250)}),
		BackendType: subnet.BackendVXLAN,
		BackendData: subnet.BackendData{VTEPMAC: mac.String()},
		Version:     1,
	}
}

// TestBenchEtcdClusterStorm: start storms of 100 to 5000 distinct
// nodes claiming at once (16 etcd connections, each claimer a real
// subnet/etcd Store claim) against a 3-member etcd cluster of weft-etcd
// processes, each in its own namespace, beside the same storms against a
// single weft-etcd in the same run: p50/p99 claim time, all subnets
// distinct, and the CPU the etcd processes used over the storm (utime +
// stime of /proc/PID/stat, summed over the members).
func TestBenchEtcdClusterStorm(t *testing.T) {
	sizes := []int{100, 500, 1000, 2000, 5000}
	type result = stormResult
	run := func(t *testing.T, members int) map[int]result {
		c := e2etest.NewCluster(t, e2e.Options{Nodes: -1, EtcdMembers: members, NetworkConfig: stormNetwork})
		var procs []*e2e.Proc
		var cli func() (*clientv3.Client, error)
		if members > 1 {
			for _, m := range c.EtcdCluster.Members {
				procs = append(procs, m.Proc())
			}
			cli = c.EtcdCluster.Client
		} else {
			procs = []*e2e.Proc{c.Etcd.Proc()}
			cli = c.Etcd.Client
		}
		out := map[int]result{}
		for _, n := range sizes {
			r := claimStorm(t, cli, procs, fmt.Sprintf("/storm-%d", n), n)
			out[n] = r
			t.Logf("%d-member etcd, %d claimers: p50 %s, p99 %s, wall %s, etcd CPU %s, database in use +%d kB (%d B a node)", members, n,
				r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond), r.wall.Round(time.Millisecond), r.cpu.Round(10*time.Millisecond),
				r.dbBytes/1000, r.dbBytes/int64(n))
		}
		return out
	}
	var one, three map[int]result
	t.Run("1-member", func(t *testing.T) { one = run(t, 1) })
	t.Run("3-member", func(t *testing.T) { three = run(t, 3) })
	if one == nil || three == nil {
		t.Fatal("a storm did not complete")
	}
	for _, n := range sizes {
		o, th := one[n], three[n]
		ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
		for _, f := range []struct {
			name     string
			got, ref time.Duration
		}{
			{"claim time p50", th.p50, o.p50},
			{"claim time p99", th.p99, o.p99},
			{"etcd CPU (sum of members)", th.cpu, o.cpu},
		} {
			benchRow(fmt.Sprintf("start storm, %d claimers, 3-member etcd: %s", n, f.name), fmt.Sprintf("%.0f ms", ms(f.got)),
				fmt.Sprintf("1-member etcd: %.0f ms", ms(f.ref)), fmt.Sprintf("%.2fx", ms(f.got)/ms(f.ref)))
			for _, p := range []e2etest.BenchPoint{
				{Series: "claim storm, 3-member etcd: " + f.name, Size: float64(n), Value: ms(f.got), Unit: "ms", Ref: "1-member etcd", RefValue: ms(f.ref)},
			} {
				if err := e2etest.WriteBenchPoint(p); err != nil {
					t.Error(err)
				}
			}
		}
		benchRow(fmt.Sprintf("start storm, %d claimers, 3-member etcd: wall", n), fmt.Sprintf("%.0f ms", ms(th.wall)),
			fmt.Sprintf("1-member etcd: %.0f ms", ms(o.wall)), fmt.Sprintf("%.2fx; 0 duplicates", ms(th.wall)/ms(o.wall)))
	}
}

// stormResult is what one storm measured.
type stormResult struct {
	p50, p99, wall, cpu time.Duration
	// dbBytes is the growth of etcd's database in use (DbSizeInUse)
	// over the storm.
	dbBytes int64
}

// claimStorm has n distinct nodes claim at once under prefix, through 16
// clients, and checks that every claim succeeded with its own subnet and
// that etcd holds n lease keys. It returns the claim-time quantiles, the
// storm's wall time and the CPU the etcd processes used meanwhile.
func claimStorm(t *testing.T, newClient func() (*clientv3.Client, error), etcd []*e2e.Proc, prefix string, n int) (r stormResult) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cfg, err := subnet.ParseConfig([]byte(stormNetwork))
	if err != nil {
		t.Fatal(err)
	}
	var stores []*subnetetcd.Store
	var first *clientv3.Client
	for range 16 {
		cli, err := newClient()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		if first == nil {
			first = cli
		}
		stores = append(stores, subnetetcd.New(subnetetcd.Config{Client: cli, Prefix: prefix, LeaseTTL: time.Hour}))
	}
	if err := stores[0].PutConfig(ctx, []byte(stormNetwork)); err != nil {
		t.Fatal(err)
	}
	recs := make([]subnet.Record, n)
	for i := range n {
		recs[i] = simRecord(fmt.Sprintf("storm-%04d", i), i)
	}
	cpu := func() time.Duration {
		var sum time.Duration
		for _, p := range etcd {
			d, err := p.CPUTime()
			if err != nil {
				t.Fatal(err)
			}
			sum += d
		}
		return sum
	}
	took := make([]time.Duration, n)
	got := make([]netip.Prefix, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	ready := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-ready
			start := time.Now()
			var l *subnet.Lease
			l, errs[i] = stores[i%len(stores)].Claim(ctx, subnet.ClaimRequest{Config: cfg, Record: recs[i]})
			took[i] = time.Since(start)
			if l != nil {
				got[i] = l.Subnet
			}
		})
	}
	dbInUse := func() int64 {
		st, err := first.Status(ctx, first.Endpoints()[0])
		if err != nil {
			t.Fatal(err)
		}
		return st.DbSizeInUse
	}
	db0 := dbInUse()
	cpu0 := cpu()
	start := time.Now()
	close(ready)
	wg.Wait()
	r.wall = time.Since(start)
	r.cpu = cpu() - cpu0
	r.dbBytes = dbInUse() - db0
	seen := map[netip.Prefix]int{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("storm claim %d: %v", i, errs[i])
		}
		if j, dup := seen[got[i]]; dup {
			t.Fatalf("%s given to storm-%04d and storm-%04d", got[i], j, i)
		}
		seen[got[i]] = i
	}
	v, err := stores[0].List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Leases) != n {
		t.Fatalf("etcd holds %d leases after the storm, want %d", len(v.Leases), n)
	}
	slices.Sort(took)
	r.p50, r.p99 = took[n/2], took[(n*99)/100]
	return r
}
