// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build bench

package membership

import (
	"fmt"
	"os/exec"
	"runtime"
	"slices"
	"testing"
	"time"
)

// lanDefaults is memberlist's DefaultLANConfig timing, the reference.
func lanDefaults(c *Config) {
	c.ProbeInterval = time.Second
	c.ProbeTimeout = 500 * time.Millisecond
	c.SuspicionMult = 4
	c.GossipInterval = 200 * time.Millisecond
	c.PushPullInterval = 30 * time.Second
}

// benchDetection kills a third member trials times and returns how long
// until both others reported it dead.
func benchDetection(t *testing.T, prefix string, trials int, mod func(*Config)) []time.Duration {
	nodes := cluster(t, prefix, 2, mod)
	var out []time.Duration
	for range trials {
		// The same node killed and restarted each time (see TestKilledMemberDeclaredDead).
		cfg := testConfig(prefix + "-victim")
		if mod != nil {
			mod(&cfg)
		}
		cfg.Join = []string{nodes[0].m.LocalAddr()}
		v := start(t, cfg)
		allSee(t, 10*time.Second, nodes, []string{v.name}, StateAlive)
		allSee(t, 10*time.Second, []*node{v}, nodeNames(nodes), StateAlive)
		killed := time.Now()
		v.kill(t)
		allSee(t, 30*time.Second, nodes, []string{v.name}, StateDead)
		out = append(out, time.Since(killed))
	}
	for _, n := range nodes {
		n.shutdown(t)
	}
	slices.Sort(out)
	return out
}

// benchMeta changes the third member's metadata trials times and returns
// how long until both others saw each change.
func benchMeta(t *testing.T, prefix string, trials int, mod func(*Config)) []time.Duration {
	nodes := cluster(t, prefix, 3, mod)
	var out []time.Duration
	for i := range trials {
		v := uint64(i + 1)
		set := time.Now()
		if err := nodes[2].m.SetMeta(Meta{Epoch: 1, Version: v}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "metadata change", func() bool {
			for _, o := range nodes[:2] {
				if mb, _ := o.member(nodes[2].name); mb.Meta.Version != v {
					return false
				}
			}
			return true
		})
		out = append(out, time.Since(set))
		time.Sleep(100 * time.Millisecond) // let the broadcast queue drain
	}
	for _, n := range nodes {
		n.shutdown(t)
	}
	slices.Sort(out)
	return out
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
func msecs(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
}

// TestBenchGossip measures failure detection and metadata propagation
// with weft's tuned timings against memberlist's DefaultLANConfig, in the
// same run, with 3 in-process members on loopback.
func TestBenchGossip(t *testing.T) {
	const trials = 10
	tuned := benchDetection(t, "bt", trials, nil)
	t.Logf("tuned detection: %v", tuned)
	def := benchDetection(t, "bd", trials, lanDefaults)
	t.Logf("default detection: %v", def)
	fmt.Printf("BENCH| gossip failure detection, median (3 members, %d kills) | %s | memberlist DefaultLANConfig: %s | %.1fx faster\n",
		trials, secs(median(tuned)), secs(median(def)), median(def).Seconds()/median(tuned).Seconds())
	fmt.Printf("BENCH| gossip failure detection, max (3 members, %d kills) | %s | memberlist DefaultLANConfig: %s | %.1fx faster\n",
		trials, secs(tuned[len(tuned)-1]), secs(def[len(def)-1]), def[len(def)-1].Seconds()/tuned[len(tuned)-1].Seconds())

	mt := benchMeta(t, "mt", trials, nil)
	md := benchMeta(t, "md", trials, lanDefaults)
	t.Logf("metadata tuned %v default %v", mt, md)
	fmt.Printf("BENCH| gossip metadata change reaches all, median (3 members, %d changes) | %s | memberlist DefaultLANConfig: %s | %.1fx faster\n",
		trials, msecs(median(mt)), msecs(median(md)), median(md).Seconds()/median(mt).Seconds())
	fmt.Printf("BENCH| gossip metadata change reaches all, max (3 members, %d changes) | %s | memberlist DefaultLANConfig: %s | %.1fx faster\n",
		trials, msecs(mt[len(mt)-1]), msecs(md[len(md)-1]), md[len(md)-1].Seconds()/mt[len(mt)-1].Seconds())
}

// startLoad runs 2 CPU-bound processes per CPU until the test ends.
func startLoad(t *testing.T) int {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("needs sh to generate load")
	}
	var spinners []*exec.Cmd
	t.Cleanup(func() {
		for _, c := range spinners {
			c.Process.Kill()
			c.Wait()
		}
	})
	for range 2 * runtime.NumCPU() {
		c := exec.Command(sh, "-c", "while :; do :; done")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		spinners = append(spinners, c)
	}
	return len(spinners)
}

// TestBenchGossipUnderLoad keeps every CPU busy (2 spinning processes per
// CPU) and measures, with the tuned timings, false "dead" verdicts in a
// healthy 3-member cluster over 20 s, then failure detection time.
func TestBenchGossipUnderLoad(t *testing.T) {
	nodes := cluster(t, "ld", 3, nil)
	n := startLoad(t)
	suspicions, deaths := 0, 0
	prev := map[string]State{}
	end := time.Now().Add(20 * time.Second)
	for time.Now().Before(end) {
		for _, o := range nodes {
			for _, mb := range o.m.Members() {
				key := o.name + ">" + mb.Name
				if mb.State != prev[key] {
					switch mb.State {
					case StateSuspect:
						suspicions++
					case StateDead:
						deaths++
						t.Errorf("%s declared %s dead under load", o.name, mb.Name)
					}
				}
				prev[key] = mb.State
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, o := range nodes {
		o.shutdown(t)
	}
	fmt.Printf("BENCH| gossip false deaths under load, 20 s (3 members, %d spinners on %d CPUs) | %d (%d suspicions) | requirement: 0 | tuned timings\n",
		n, runtime.NumCPU(), deaths, suspicions)

	times := benchDetection(t, "lk", 10, nil)
	t.Logf("detection under load: %v", times)
	fmt.Printf("BENCH| gossip failure detection under load, median (3 members, 10 kills) | %s | requirement: 1.5 s | max %s\n",
		secs(median(times)), secs(times[len(times)-1]))
}
