// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build bench

package membership

// TestBenchGossipScale runs 50 encrypted members (50, 100 and 200 with
// WEFT_BENCH_SCALE=1, as `make bench-scale` sets: about 20 minutes more;
// any sizes with WEFT_BENCH_GOSSIP_SIZES=50,100) in this process, each on
// its own UDP and TCP sockets on 127.0.0.1, once with weft's timings (the
// defaults of Config, as weftd uses them) and once with memberlist's
// DefaultLANConfig timings, in the same run. For each it measures:
//
//   - the gossip traffic each member sends (UDP datagrams and TCP push/pull
//     bytes, counted at the transport) and the CPU the process spends per
//     member, over a quiet window;
//   - false suspicions and deaths of live members in that window and
//     during the rest of the run;
//   - how long one metadata change takes to reach every member;
//   - failure detection: members killed one at a time (no leave message),
//     how long until each other member declares it dead (median over all
//     observers and kills) and until the last one does.
//
// Every member runs in this one process on a 2-core machine shared with
// other work, so the machine's CPU, not memberlist, can be what makes a
// member late to answer a probe. Each size therefore records the CPU busy
// fraction of the whole machine and of this process over the quiet window
// and the load average: a false death while the machine is saturated
// (busy ≥ 90%) is marked as the machine's, not the protocol's.

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/sirupsen/logrus"

	"github.com/weftnet/weft/e2e/e2etest"
)

const (
	scaleQuiet   = 15 * time.Second // the window traffic and CPU are measured over
	scaleMetas   = 5                // metadata changes per size
	scaleKills   = 5                // members killed per size
	scaleSatBusy = 0.90             // machine busy fraction counted as saturated
	// scaleSatLate is the wake-up lateness (p99) counted as saturated: half
	// weft's probe timeout.
	scaleSatLate = DefaultProbeTimeout / 2
	// scaleJoinLimit bounds the wait for every member to see every other
	// alive after the start.
	scaleJoinLimit = 4 * time.Minute
)

func TestBenchGossipScale(t *testing.T) {
	sizes := []int{50}
	if v := os.Getenv("WEFT_BENCH_GOSSIP_SIZES"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(f)
			if err != nil || n < 16 { // kills take every third member from the last: keep the 3 seeds
				t.Fatalf("WEFT_BENCH_GOSSIP_SIZES=%q: want sizes of at least 16, comma-separated", v)
			}
			sizes = append(sizes, n)
		}
	} else if os.Getenv(e2etest.BenchScaleEnv) != "" {
		sizes = []int{50, 100, 200}
	} else {
		t.Logf("100 and 200 members: set %s=1 (make bench-scale)", e2etest.BenchScaleEnv)
	}
	key := make([]byte, 32)
	rand.Read(key)
	for _, n := range sizes {
		for _, tc := range []struct {
			name string
			mod  func(*Config)
		}{
			{"weft", nil},
			{"lan", lanDefaults},
		} {
			r := runScale(t, fmt.Sprintf("s%d%s", n, tc.name), n, key, tc.mod)
			r.print(tc.name)
			results[scaleKey{n, tc.name}] = r
		}
		reportScale(t, n, results[scaleKey{n, "weft"}], results[scaleKey{n, "lan"}])
	}
}

type scaleKey struct {
	n    int
	conf string
}

var results = map[scaleKey]*scaleResult{}

// scaleResult is what one cluster measured.
type scaleResult struct {
	n            int
	converged    bool
	converge     time.Duration
	joinBusy     float64 // machine busy fraction while the members joined
	joinProc     float64 // this process's CPU / all CPUs, while joining
	joinSuspects int64   // suspicions of live members while joining
	joinDeaths   int64   // deaths of live members while joining
	suspectViews int     // (observer, member) pairs marked suspect once converged
	// joinLate, quietLate and killLate are the 99th percentile of how late
	// a sleeping goroutine woke up in each phase (see lateness).
	joinLate, quietLate, killLate time.Duration
	bytesPerSec                   float64 // sent per member
	cpuPerMember                  float64 // CPU seconds per second per member
	procBusy                      float64 // this process's CPU / all CPUs, quiet window
	machineBusy                   float64 // all CPUs busy fraction, quiet window
	load1                         float64
	quietSuspects                 int64
	quietDeaths                   int64
	falseDeaths                   int64 // of live members, whole run
	meta                          []time.Duration
	detectEach                    []time.Duration // one per observer and kill
	detectAll                     []time.Duration // one per kill: the last observer
	detectBusy                    float64         // machine busy fraction during the kills
}

// scaleMember is one member: lighter than the tests' node (no log kept).
type scaleMember struct {
	name  string
	m     *Membership
	stop  context.CancelFunc
	done  chan error
	alive atomic.Bool
}

// scaleCluster is every member and what the bench records about them.
type scaleCluster struct {
	t       *testing.T
	members []*scaleMember
	byName  map[string]*scaleMember
	traffic *trafficCount

	// Counted from the members' log lines (see stateHook).
	suspects, deaths atomic.Int64 // of members not killed
	// mu guards the following.
	mu     sync.Mutex
	deadAt map[string][]time.Time // victim -> when each observer declared it dead
	metaAt map[string]time.Time   // observer -> when it saw the metadata target
	target struct {
		name    string
		version uint64
	}
}

// stateHook counts "gossip member state changed" lines.
type stateHook struct{ c *scaleCluster }

func (h stateHook) Levels() []logrus.Level { return []logrus.Level{logrus.InfoLevel} }

func (h stateHook) Fire(e *logrus.Entry) error {
	if e.Message != "gossip member state changed" {
		return nil
	}
	name, _ := e.Data["member"].(string)
	st, _ := e.Data["state"].(State)
	c := h.c
	c.mu.Lock()
	victim := c.byName[name]
	c.mu.Unlock()
	live := victim != nil && victim.alive.Load()
	switch st {
	case StateSuspect:
		if live {
			c.suspects.Add(1)
		}
	case StateDead:
		if live {
			c.deaths.Add(1)
			return nil
		}
		c.mu.Lock()
		c.deadAt[name] = append(c.deadAt[name], time.Now())
		c.mu.Unlock()
	}
	return nil
}

func runScale(t *testing.T, prefix string, n int, key []byte, mod func(*Config)) *scaleResult {
	t.Helper()
	c := &scaleCluster{t: t, byName: map[string]*scaleMember{}, traffic: &trafficCount{},
		deadAt: map[string][]time.Time{}, metaAt: map[string]time.Time{}}
	r := &scaleResult{n: n}
	hook := stateHook{c}
	start := time.Now()
	j0, p0 := machineCPU(), processCPU()
	late := startLateness()
	var seeds []string
	for i := range n {
		cfg := Config{Name: fmt.Sprintf("%s-%03d", prefix, i), BindAddr: "127.0.0.1:0",
			Keys: [][]byte{key}, Encryption: EncryptionOn, Join: seeds}
		if mod != nil {
			mod(&cfg)
		}
		mb := c.start(cfg, hook)
		if len(seeds) < 3 {
			seeds = append(seeds, mb.m.LocalAddr())
		}
	}
	defer c.stopAll()
	ok := c.waitAllAlive(scaleJoinLimit, n)
	r.converge = time.Since(start)
	r.joinLate = late.stop()
	r.joinBusy, r.joinProc = machineCPU().busyFraction(j0), (processCPU()-p0).Seconds()/r.converge.Seconds()/float64(j0.cpus)
	r.joinSuspects, r.joinDeaths = c.suspects.Load(), c.deaths.Load()
	if !ok {
		// On a saturated machine that is a figure (the rows say so);
		// otherwise it is a failure of the membership.
		report := t.Errorf
		if r.joinBusy >= scaleSatBusy || r.joinLate >= scaleSatLate {
			report = t.Logf
		}
		report("%d members (%s) did not all see each other alive within %s (machine %.0f%% busy, wake-ups %s late): %v",
			n, prefix, scaleJoinLimit, 100*r.joinBusy, r.joinLate, c.views())
		return r
	}
	r.converged = true
	r.suspectViews = c.views()[StateSuspect]

	// The quiet window.
	c.suspects.Store(0)
	c.deaths.Store(0)
	c.traffic.reset()
	cpu0, ru0 := machineCPU(), processCPU()
	late = startLateness()
	time.Sleep(scaleQuiet)
	r.quietLate = late.stop()
	cpu1, ru1 := machineCPU(), processCPU()
	sent := c.traffic.total()
	r.bytesPerSec = float64(sent) / scaleQuiet.Seconds() / float64(n)
	r.cpuPerMember = (ru1 - ru0).Seconds() / scaleQuiet.Seconds() / float64(n)
	r.procBusy = (ru1 - ru0).Seconds() / scaleQuiet.Seconds() / float64(cpu1.cpus)
	r.machineBusy = cpu1.busyFraction(cpu0)
	r.load1 = loadAvg()
	r.quietSuspects, r.quietDeaths = c.suspects.Load(), c.deaths.Load()

	// Metadata changes.
	for i := range scaleMetas {
		r.meta = append(r.meta, c.metaChange(c.members[(i*7+1)%n], uint64(i+1)))
	}

	// Kills, one at a time.
	k0 := machineCPU()
	late = startLateness()
	for i := range scaleKills {
		v := c.members[n-1-i*3]
		each, all := c.kill(v, n-1-i)
		r.detectEach = append(r.detectEach, each...)
		r.detectAll = append(r.detectAll, all)
	}
	r.detectBusy = machineCPU().busyFraction(k0)
	r.killLate = late.stop()
	r.falseDeaths = c.deaths.Load() // counted since the quiet window began
	slices.Sort(r.meta)
	slices.Sort(r.detectEach)
	slices.Sort(r.detectAll)
	return r
}

func (c *scaleCluster) start(cfg Config, hook logrus.Hook) *scaleMember {
	lg := logrus.New()
	lg.Out = io.Discard
	lg.Level = logrus.InfoLevel
	lg.AddHook(hook)
	cfg.Log = lg
	mb := &scaleMember{name: cfg.Name, done: make(chan error, 1)}
	cfg.OnChange = func() { c.checkMeta(mb) }
	m, err := New(cfg)
	if err != nil {
		c.t.Fatalf("New(%s): %v", cfg.Name, err)
	}
	m.wrapTransport = func(tr memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
		return &countingTransport{NodeAwareTransport: tr, c: c.traffic}
	}
	mb.m = m
	mb.alive.Store(true)
	c.mu.Lock()
	c.members = append(c.members, mb)
	c.byName[mb.name] = mb
	c.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	mb.stop = cancel
	go func() { mb.done <- m.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for m.LocalAddr() == "" {
		if time.Now().After(deadline) {
			c.t.Fatalf("%s did not start", cfg.Name)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return mb
}

func (c *scaleCluster) stopAll() {
	var wg sync.WaitGroup
	for _, mb := range c.members {
		if !mb.alive.Load() {
			continue
		}
		mb.alive.Store(false)
		wg.Add(1)
		go func() {
			defer wg.Done()
			mb.stop()
			<-mb.done
		}()
	}
	wg.Wait()
	// memberlist's Shutdown does not wait for a probe in flight (it ends
	// within ProbeInterval): the package's leak check would see it.
	deadline := time.Now().Add(5 * time.Second)
	buf := make([]byte, 8<<20)
	for time.Now().Before(deadline) {
		if !bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("memberlist.(*Memberlist).probeNode")) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitAllAlive polls (every 200 ms: each poll reads every member's table)
// until every live member holds want-1 others alive or suspect. Suspect
// counts: a member marks another suspect when its own probe of it failed
// and clears the mark only when its next probe is answered, which with
// n members comes round once every n probe intervals (the views, not
// memberlist, hold such a stale mark: see suspectsLeft).
func (c *scaleCluster) waitAllAlive(timeout time.Duration, want int) bool {
	deadline := time.Now().Add(timeout)
	next := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if time.Now().After(next) {
			c.t.Logf("still converging: %v", c.views())
			next = time.Now().Add(10 * time.Second)
		}
		ok := true
		for _, mb := range c.members {
			if !mb.alive.Load() {
				continue
			}
			alive := 0
			for _, o := range mb.m.Members() {
				if o.State == StateAlive || o.State == StateSuspect {
					alive++
				}
			}
			if alive != want-1 {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Logf("members' views at the deadline: %v", c.views())
	return false
}

// views counts, over every live member's table, the states it holds and
// the members missing from it.
func (c *scaleCluster) views() map[State]int {
	count := map[State]int{}
	live := c.live()
	for _, mb := range c.members {
		if !mb.alive.Load() {
			continue
		}
		ms := mb.m.Members()
		for _, o := range ms {
			count[o.State]++
		}
		count["missing"] += max(0, live-1-len(ms))
	}
	return count
}

// checkMeta runs in a member's OnChange: it records when the member first
// sees the metadata target.
func (c *scaleCluster) checkMeta(mb *scaleMember) {
	c.mu.Lock()
	tgt := c.target
	_, seen := c.metaAt[mb.name]
	c.mu.Unlock()
	if tgt.name == "" || seen || mb.name == tgt.name {
		return
	}
	for _, o := range mb.m.Members() {
		if o.Name == tgt.name && o.Meta.Version >= tgt.version {
			c.mu.Lock()
			if _, seen := c.metaAt[mb.name]; !seen {
				c.metaAt[mb.name] = time.Now()
			}
			c.mu.Unlock()
			return
		}
	}
}

// metaChange sets v's metadata version and returns how long until every
// other live member saw it.
func (c *scaleCluster) metaChange(v *scaleMember, version uint64) time.Duration {
	c.mu.Lock()
	c.target.name, c.target.version = v.name, version
	clear(c.metaAt)
	c.mu.Unlock()
	set := time.Now()
	if err := v.m.SetMeta(Meta{Epoch: 1, Version: version}); err != nil {
		c.t.Fatal(err)
	}
	live := c.live()
	deadline := set.Add(2 * time.Minute)
	for {
		c.mu.Lock()
		got := len(c.metaAt)
		var last time.Time
		for _, at := range c.metaAt {
			if at.After(last) {
				last = at
			}
		}
		c.mu.Unlock()
		if got >= live-1 {
			c.mu.Lock()
			c.target.name = ""
			c.mu.Unlock()
			time.Sleep(200 * time.Millisecond) // let the broadcast queues drain
			return last.Sub(set)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("metadata change of %s reached %d of %d members in 2 min", v.name, got, live-1)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *scaleCluster) live() int {
	n := 0
	for _, mb := range c.members {
		if mb.alive.Load() {
			n++
		}
	}
	return n
}

// kill ends v without a leave message and waits until the others (want of
// them) all declared it dead. It returns each observer's detection time
// and the last one's.
func (c *scaleCluster) kill(v *scaleMember, want int) ([]time.Duration, time.Duration) {
	v.alive.Store(false)
	killed := time.Now()
	close(v.m.crash)
	<-v.done
	deadline := killed.Add(2 * time.Minute)
	for {
		c.mu.Lock()
		at := slices.Clone(c.deadAt[v.name])
		c.mu.Unlock()
		if len(at) >= want {
			var each []time.Duration
			for _, a := range at {
				each = append(each, a.Sub(killed))
			}
			return each, slices.Max(each)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s killed: %d of %d members declared it dead in 2 min", v.name, len(at), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lateness measures how late a 10 ms sleep in this process wakes up: how
// long a goroutine that is ready to run (a member about to answer a
// probe) waits for a CPU. Late wake-ups of tens of milliseconds mean the
// machine, not memberlist, is too slow for a 100 ms probe timeout.
type lateness struct {
	stopc chan struct{}
	done  chan []time.Duration
}

func startLateness() *lateness {
	l := &lateness{stopc: make(chan struct{}), done: make(chan []time.Duration, 1)}
	go func() {
		var late []time.Duration
		for {
			select {
			case <-l.stopc:
				slices.Sort(late)
				l.done <- late
				return
			default:
			}
			t0 := time.Now()
			time.Sleep(10 * time.Millisecond)
			late = append(late, time.Since(t0)-10*time.Millisecond)
		}
	}()
	return l
}

// stop returns the 99th percentile of the lateness measured.
func (l *lateness) stop() time.Duration {
	close(l.stopc)
	return quantile(<-l.done, 0.99)
}

// trafficCount counts the bytes every member sends.
type trafficCount struct{ udp, tcp atomic.Int64 }

func (c *trafficCount) reset()       { c.udp.Store(0); c.tcp.Store(0) }
func (c *trafficCount) total() int64 { return c.udp.Load() + c.tcp.Load() }

// countingTransport counts datagrams sent and the bytes both ways on TCP
// connections this member dials (push/pull and the fallback probes): a
// stream's two directions are both counted at its dialling end, so the sum
// over all members is what all of them sent.
type countingTransport struct {
	memberlist.NodeAwareTransport
	c *trafficCount
}

func (t *countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	t.c.udp.Add(int64(len(b)))
	return t.NodeAwareTransport.WriteTo(b, addr)
}

func (t *countingTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	t.c.udp.Add(int64(len(b)))
	return t.NodeAwareTransport.WriteToAddress(b, a)
}

func (t *countingTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	conn, err := t.NodeAwareTransport.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: conn, c: &t.c.tcp}, nil
}

func (t *countingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	conn, err := t.NodeAwareTransport.DialTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: conn, c: &t.c.tcp}, nil
}

type countingConn struct {
	net.Conn
	c *atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.c.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.c.Add(int64(n))
	return n, err
}

// cpuTimes is /proc/stat's first line.
type cpuTimes struct {
	busy, total uint64
	cpus        int
}

func machineCPU() cpuTimes {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	var ct cpuTimes
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 8 && f[0] == "cpu":
			for i, v := range f[1:] {
				x, _ := strconv.ParseUint(v, 10, 64)
				ct.total += x
				if i != 3 && i != 4 { // idle, iowait
					ct.busy += x
				}
			}
		case len(f) > 0 && strings.HasPrefix(f[0], "cpu"):
			ct.cpus++
		}
	}
	return ct
}

// busyFraction is the share of all CPUs' time that was busy since before.
func (ct cpuTimes) busyFraction(before cpuTimes) float64 {
	if ct.total <= before.total {
		return 0
	}
	return float64(ct.busy-before.busy) / float64(ct.total-before.total)
}

// processCPU is this process's user and system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loadAvg() float64 {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := bytes.Fields(raw)
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(string(f[0]), 64)
	return v
}

func quantile(s []time.Duration, q float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func (r *scaleResult) saturated() bool {
	return r.machineBusy >= scaleSatBusy || r.detectBusy >= scaleSatBusy
}

func (r *scaleResult) print(conf string) {
	fmt.Printf("gossip scale %s, %d members: converged %v in %s (machine %.0f%% busy, process %.0f%% of all CPUs, %d suspicions and %d deaths of live members meanwhile; %d views suspect at the end)\n",
		conf, r.n, r.converged, r.converge.Round(time.Millisecond), 100*r.joinBusy, 100*r.joinProc, r.joinSuspects, r.joinDeaths, r.suspectViews)
	if !r.converged {
		return
	}
	fmt.Printf("gossip scale %s, %d members: wake-ups late (p99) %s joining, %s quiet, %s killing\n", conf, r.n, r.joinLate, r.quietLate, r.killLate)
	fmt.Printf("gossip scale %s, %d members: %.0f B/s and %.2f%% CPU per member; process %.0f%%, machine %.0f%% busy, load %.2f; "+
		"quiet window: %d suspicions, %d deaths; false deaths after the join %d; metadata %v; detection all %v (kills: machine %.0f%% busy)\n",
		conf, r.n, r.bytesPerSec, 100*r.cpuPerMember, 100*r.procBusy, 100*r.machineBusy, r.load1,
		r.quietSuspects, r.quietDeaths, r.falseDeaths, r.meta, r.detectAll, 100*r.detectBusy)
}

// reportScale prints the BENCH rows of one size and writes them out.
func reportScale(t *testing.T, n int, w, l *scaleResult) {
	t.Helper()
	busy := func(r *scaleResult) string {
		if !r.converged {
			s := fmt.Sprintf("machine %.0f%% busy and wake-ups %s late (p99) while joining", 100*r.joinBusy, msecs(r.joinLate))
			if r.joinBusy >= scaleSatBusy || r.joinLate >= scaleSatLate {
				s += " (saturated: false deaths then are the machine's)"
			}
			return s
		}
		s := fmt.Sprintf("machine %.0f%%/%.0f%%/%.0f%% busy and wake-ups %s/%s/%s late (p99) while joining/quiet/killing",
			100*r.joinBusy, 100*r.machineBusy, 100*r.detectBusy, msecs(r.joinLate), msecs(r.quietLate), msecs(r.killLate))
		if max(r.joinBusy, r.machineBusy, r.detectBusy) >= scaleSatBusy || max(r.joinLate, r.quietLate, r.killLate) >= scaleSatLate {
			s += " (saturated: false deaths then are the machine's)"
		}
		return s
	}
	row := func(figure string, wv, lv float64, unit, note string) {
		ratio := "n/a"
		if lv != 0 {
			ratio = fmt.Sprintf("%.2fx", wv/lv)
		}
		fmt.Printf("BENCH| gossip %d members (encrypted): %s | %s | memberlist DefaultLANConfig: %s | %s; %s\n",
			n, figure, fmtUnit(wv, unit), fmtUnit(lv, unit), ratio, note)
		if wv < 0 || lv < 0 {
			return // not measured: no point
		}
		if err := e2etest.WriteBenchPoint(e2etest.BenchPoint{Series: "gossip (encrypted): " + figure, Size: float64(n), Value: wv, Unit: unit,
			Ref: "memberlist DefaultLANConfig", RefValue: lv}); err != nil {
			t.Error(err)
		}
	}
	conv := func(r *scaleResult) float64 {
		if !r.converged {
			return -1 // not converged within scaleJoinLimit
		}
		return r.converge.Seconds()
	}
	row("join: all see all alive after the start (-1: not within the limit)", conv(w), conv(l), "s",
		fmt.Sprintf("members started one after another, each joining the first 3; limit %s", scaleJoinLimit))
	row("false deaths of live members while joining", float64(w.joinDeaths), float64(l.joinDeaths), "count",
		fmt.Sprintf("weft: %d suspicions, LAN: %d; weft: %s; LAN: %s", w.joinSuspects, l.joinSuspects, busy(w), busy(l)))
	if !w.converged || !l.converged {
		return
	}
	row("suspect marks left once all see all", float64(w.suspectViews), float64(l.suspectViews), "count",
		fmt.Sprintf("(observer, member) pairs of %d; a mark clears at the observer's next answered probe of the member", n*(n-1)))
	d := func(v time.Duration) float64 { return v.Seconds() }
	row("failure detection, median of each member's", d(quantile(w.detectEach, 0.5)), d(quantile(l.detectEach, 0.5)), "s",
		fmt.Sprintf("%d kills x %d observers", scaleKills, len(w.detectEach)/scaleKills))
	row("failure detection, p99 of each member's", d(quantile(w.detectEach, 0.99)), d(quantile(l.detectEach, 0.99)), "s", "")
	row("failure detection, until the last member, max", d(w.detectAll[len(w.detectAll)-1]), d(l.detectAll[len(l.detectAll)-1]), "s", "")
	row("false deaths of live members after the join", float64(w.falseDeaths), float64(l.falseDeaths), "count",
		fmt.Sprintf("weft: %d suspicions in the %s quiet window; %s", w.quietSuspects, scaleQuiet, busy(w)))
	row("gossip sent per member", w.bytesPerSec, l.bytesPerSec, "B/s", fmt.Sprintf("UDP and TCP, %s quiet window", scaleQuiet))
	row("CPU per member", 100*w.cpuPerMember, 100*l.cpuPerMember, "% of a CPU",
		fmt.Sprintf("whole process %.0f%% of %d CPUs; load %.2f", 100*w.procBusy, machineCPU().cpus, w.load1))
	row("metadata change reaches all, median", 1000*d(quantile(w.meta, 0.5)), 1000*d(quantile(l.meta, 0.5)), "ms", fmt.Sprintf("%d changes", scaleMetas))
	row("metadata change reaches all, max", 1000*d(w.meta[len(w.meta)-1]), 1000*d(l.meta[len(l.meta)-1]), "ms", "")
}

func fmtUnit(v float64, unit string) string {
	switch unit {
	case "count":
		return strconv.FormatFloat(v, 'f', 0, 64)
	case "B/s":
		return fmt.Sprintf("%.0f B/s", v)
	case "% of a CPU":
		return fmt.Sprintf("%.2f%% of a CPU", v)
	}
	return fmt.Sprintf("%.2f %s", v, unit)
}
