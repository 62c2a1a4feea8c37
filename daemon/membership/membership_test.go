// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package membership

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/sirupsen/logrus"
	"go.uber.org/goleak"

	"github.com/weftnet/weft/subnet"
)

// These tests run real memberlist members in this process, on 127.0.0.1
// with ports picked by the kernel. Nothing needs root.

// testLog writes a member's log through t.Logf and keeps every line for
// assertions.
type testLog struct {
	t    *testing.T
	name string

	// mu guards the following.
	mu    sync.Mutex
	done  bool
	lines []string
}

func (l *testLog) Write(p []byte) (int, error) {
	s := strings.TrimRight(string(p), "\n")
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, s)
	if !l.done {
		l.t.Logf("[%s] %s", l.name, s)
	}
	return len(p), nil
}

// grep returns the lines containing all of parts.
func (l *testLog) grep(parts ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, s := range l.lines {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(s, p)
		}
		if ok {
			out = append(out, s)
		}
	}
	return out
}

// node is a running member under test.
type node struct {
	name string
	m    *Membership
	log  *testLog
	stop func()
	done chan error
	// changes counts OnChange calls; concurrent counts overlapping ones.
	changes    atomic.Int64
	concurrent atomic.Int64
}

// testConfig is the tuned default configuration with a quick rejoin loop
// and key file check.
func testConfig(name string) Config {
	return Config{
		Name:             name,
		BindAddr:         "127.0.0.1:0",
		RejoinInterval:   300 * time.Millisecond,
		KeyCheckInterval: 200 * time.Millisecond,
	}
}

// start runs a member with cfg until the test ends. setup, when given,
// may set test hooks before Run.
func start(t *testing.T, cfg Config, setup ...func(*Membership)) *node {
	t.Helper()
	n := &node{name: cfg.Name, log: &testLog{t: t, name: cfg.Name}, done: make(chan error, 1)}
	lg := logrus.New()
	lg.Out = n.log
	lg.Level = logrus.InfoLevel
	lg.Formatter = &logrus.TextFormatter{DisableTimestamp: true}
	cfg.Log = lg
	var inCall atomic.Bool
	cfg.OnChange = func() {
		if !inCall.CompareAndSwap(false, true) {
			n.concurrent.Add(1)
		}
		n.changes.Add(1)
		time.Sleep(time.Millisecond) // widen the window a concurrent call would hit
		inCall.Store(false)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.Name, err)
	}
	for _, f := range setup {
		f(m)
	}
	n.m = m
	ctx, cancel := context.WithCancel(context.Background())
	n.stop = cancel
	go func() { n.done <- m.Run(ctx) }()
	t.Cleanup(func() {
		n.shutdown(t)
		n.log.mu.Lock()
		n.log.done = true
		n.log.mu.Unlock()
	})
	waitFor(t, 5*time.Second, cfg.Name+" started", func() bool { return m.LocalAddr() != "" })
	return n
}

// shutdown stops the member (leaving) and waits for Run to return.
func (n *node) shutdown(t *testing.T) {
	t.Helper()
	n.stop()
	n.wait(t)
}

// kill ends the member without a leave message, as a killed process.
func (n *node) kill(t *testing.T) {
	t.Helper()
	select {
	case <-n.m.crash:
	default:
		close(n.m.crash)
	}
	n.wait(t)
}

func (n *node) wait(t *testing.T) {
	t.Helper()
	select {
	case err, ok := <-n.done:
		if ok && err != nil {
			t.Errorf("%s: Run: %v", n.name, err)
		}
		if ok {
			close(n.done)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: Run did not return within 10 s", n.name)
	}
}

func (n *node) member(name string) (Member, bool) {
	for _, mb := range n.m.Members() {
		if mb.Name == name {
			return mb, true
		}
	}
	return Member{}, false
}

func (n *node) state(name string) State {
	mb, ok := n.member(name)
	if !ok {
		return ""
	}
	return mb.State
}

// waitFor polls cond every 5 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// allSee waits until every observer sees every named member in state st.
func allSee(t *testing.T, timeout time.Duration, observers []*node, names []string, st State) time.Duration {
	t.Helper()
	return waitFor(t, timeout, fmt.Sprintf("%v to see %v %s", nodeNames(observers), names, st), func() bool {
		for _, o := range observers {
			for _, name := range names {
				if o.name != name && o.state(name) != st {
					return false
				}
			}
		}
		return true
	})
}

func nodeNames(ns []*node) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.name)
	}
	return out
}

// cluster starts members named prefix0..prefixN-1, each joining the first,
// and waits until all see each other alive.
func cluster(t *testing.T, prefix string, n int, mod func(*Config)) []*node {
	t.Helper()
	var nodes []*node
	for i := range n {
		cfg := testConfig(fmt.Sprintf("%s%d", prefix, i))
		if i > 0 {
			cfg.Join = []string{nodes[0].m.LocalAddr()}
		}
		if mod != nil {
			mod(&cfg)
		}
		nodes = append(nodes, start(t, cfg))
	}
	allSee(t, 10*time.Second, nodes, nodeNames(nodes), StateAlive)
	return nodes
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func TestJoinMetaPropagationAndLeave(t *testing.T) {
	// Every goroutine the three members start must end once they are shut
	// down (memberlist's listeners, gossip and probe loops, ours).
	ignore := goleak.IgnoreCurrent()
	func() {
		nodes := cluster(t, "j", 3, nil)
		a, b, c := nodes[0], nodes[1], nodes[2]

		if got := a.m.Members(); len(got) != 2 || got[0].Name != "j1" || got[1].Name != "j2" {
			t.Fatalf("a.Members() = %+v, want j1 and j2 (self excluded, sorted)", got)
		}
		meta := Meta{
			NodeID:   "9f0c6a3e-8a1b-4c55-9d2e-1234567890ab",
			Subnet:   netip.MustParsePrefix("10.244.7.0/24"),
			PublicIP: netip.MustParseAddr("198.18.0.7"),
			Data:     subnet.BackendData{VTEPMAC: "02:aa:bb:cc:dd:ee"},
			Epoch:    42,
			Version:  3,
		}
		before := a.changes.Load()
		set := time.Now()
		if err := b.m.SetMeta(meta); err != nil {
			t.Fatal(err)
		}
		want := meta
		want.BootID = b.m.BootID()
		waitFor(t, 5*time.Second, "b's metadata at a and c", func() bool {
			ma, _ := a.member("j1")
			mc, _ := c.member("j1")
			return ma.Meta == want && mc.Meta == want
		})
		t.Logf("metadata change reached every member %s after SetMeta was called", time.Since(set))
		if a.changes.Load() == before {
			t.Error("OnChange not called on a after b's metadata changed")
		}

		// A graceful stop is seen as left, not dead.
		c.shutdown(t)
		allSee(t, 5*time.Second, nodes[:2], []string{"j2"}, StateLeft)
		for _, n := range nodes {
			if n.concurrent.Load() != 0 {
				t.Errorf("%s: OnChange ran concurrently %d times", n.name, n.concurrent.Load())
			}
		}
		a.shutdown(t)
		b.shutdown(t)
	}()
	goleak.VerifyNone(t, ignore)
}

func TestKilledMemberDeclaredDead(t *testing.T) {
	nodes := cluster(t, "k", 2, nil)
	var times []time.Duration
	const trials = 5
	for range trials {
		// One node killed and restarted, as in production: a fresh name per
		// trial would leave dead members behind that memberlist keeps
		// gossiping to for GossipToTheDeadTime, diluting the broadcasts
		// meant for live members (see docs/membership.md).
		cfg := testConfig("victim")
		cfg.Join = []string{nodes[0].m.LocalAddr()}
		v := start(t, cfg)
		allSee(t, 5*time.Second, nodes, []string{v.name}, StateAlive)
		allSee(t, 5*time.Second, []*node{v}, nodeNames(nodes), StateAlive)
		killed := time.Now()
		v.kill(t)
		allSee(t, 5*time.Second, nodes, []string{v.name}, StateDead)
		times = append(times, time.Since(killed))
	}
	slices.Sort(times)
	t.Logf("killed member seen dead by all: median %s, max %s (%d trials): %v", median(times), times[len(times)-1], trials, times)
}

func TestRestartedMemberAccepted(t *testing.T) {
	for _, samePort := range []bool{true, false} {
		t.Run(fmt.Sprintf("samePort=%t", samePort), func(t *testing.T) {
			nodes := cluster(t, "r", 3, nil)
			a, b, c := nodes[0], nodes[1], nodes[2]
			if err := c.m.SetMeta(Meta{Epoch: 1}); err != nil {
				t.Fatal(err)
			}
			oldBoot := c.m.BootID()
			oldAddr := c.m.LocalAddr()
			c.kill(t)

			cfg := testConfig("r2")
			if samePort {
				cfg.BindAddr = oldAddr
			}
			cfg.Join = []string{a.m.LocalAddr()}
			restarted := time.Now()
			c2 := start(t, cfg)
			if err := c2.m.SetMeta(Meta{Epoch: 1}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "restarted r2 alive with its new boot ID at a and b", func() bool {
				for _, o := range []*node{a, b} {
					mb, ok := o.member("r2")
					if !ok || mb.State != StateAlive || mb.Meta.BootID != c2.m.BootID() || mb.Meta.BootID == oldBoot || mb.Addr != c2.m.LocalAddr() {
						return false
					}
				}
				return true
			})
			t.Logf("restarted member (same port %t) accepted by all %s after its start", samePort, time.Since(restarted))
			allSee(t, 5*time.Second, []*node{c2}, []string{"r0", "r1"}, StateAlive)
		})
	}
}

// TestSetMetaNotLost: memberlist can drop a metadata update without a
// word (a refutation that overtakes it, see publish); the update must
// still reach every member. The hook drops updates as memberlist does:
// one (SetMeta publishes again at once), then every one SetMeta makes
// (the rejoin loop publishes again). Without either, the others keep the
// old metadata for ever, as the encryption switch test once saw in CI.
func TestSetMetaNotLost(t *testing.T) {
	for _, drop := range []int{1, publishTries} {
		t.Run(fmt.Sprintf("dropped=%d", drop), func(t *testing.T) {
			a := start(t, testConfig("lost0"))
			var dropped atomic.Int64
			cfg := testConfig("lost1")
			cfg.Join = []string{a.m.LocalAddr()}
			b := start(t, cfg, func(m *Membership) {
				update := m.updateNode
				m.updateNode = func(ml *memberlist.Memberlist) error {
					m.mu.Lock()
					set := m.metaBytes != nil
					m.mu.Unlock()
					if set && dropped.Add(1) <= int64(drop) {
						return errors.New("dropped by the test")
					}
					return update(ml)
				}
			})
			allSee(t, 5*time.Second, []*node{a, b}, []string{"lost0", "lost1"}, StateAlive)
			set := time.Now()
			if err := b.m.SetMeta(Meta{Epoch: 1, Version: 7}); err != nil {
				t.Fatal(err)
			}
			took := waitFor(t, 5*time.Second, "lost1's metadata at lost0", func() bool {
				mb, _ := a.member("lost1")
				return mb.Meta.Version == 7
			})
			if n := dropped.Load(); n < int64(drop) {
				t.Fatalf("the hook dropped %d updates, want %d", n, drop)
			}
			t.Logf("%d updates dropped: the metadata reached lost0 %s after SetMeta began (%s after it returned)",
				drop, time.Since(set), took)
		})
	}
}

func TestSetMetaTooLarge(t *testing.T) {
	m, err := New(testConfig("big"))
	if err != nil {
		t.Fatal(err)
	}
	// The largest realistic metadata: dual-stack, WireGuard, long IDs.
	full := Meta{
		NodeID:     "9f0c6a3e-8a1b-4c55-9d2e-1234567890ab",
		Subnet:     netip.MustParsePrefix("10.244.255.0/24"),
		IPv6Subnet: netip.MustParsePrefix("fd10:244:ffff:ffff::/64"),
		PublicIP:   netip.MustParseAddr("198.19.255.254"),
		PublicIPv6: netip.MustParseAddr("2001:2:0:ffff:ffff:ffff:ffff:ffff"),
		Data: subnet.BackendData{
			VTEPMAC:       "02:aa:bb:cc:dd:ee",
			WireGuardKey:  base64.StdEncoding.EncodeToString(make([]byte, 32)),
			WireGuardPort: 51820,
		},
		Epoch:   1 << 40,
		Version: 1 << 40,
	}
	if err := m.SetMeta(full); err != nil {
		t.Fatalf("SetMeta(realistic maximum): %v", err)
	}
	good := slices.Clone(m.metaBytes)
	t.Logf("realistic maximum metadata: %d bytes", len(good))

	huge := full
	huge.Data.WireGuardKey = strings.Repeat("x", MaxMetaSize)
	err = m.SetMeta(huge)
	if !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("SetMeta(oversized) = %v, want ErrMetaTooLarge", err)
	}
	t.Logf("error: %v", err)
	if string(m.metaBytes) != string(good) {
		t.Error("oversized SetMeta replaced the metadata in force")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	loose := filepath.Join(dir, "loose")
	writeKeys(t, loose, 0o644, newKey(t))
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte(base64.StdEncoding.EncodeToString([]byte("short"))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("# no keys\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no name", Config{}, "name is empty"},
		{"bad bind", Config{Name: "x", BindAddr: "host.example:7950"}, "bind address"},
		{"bad advertise", Config{Name: "x", AdvertiseAddr: "1.2.3.4:99999"}, "advertise"},
		{"timeout above interval", Config{Name: "x", ProbeInterval: time.Second, ProbeTimeout: 2 * time.Second}, "shorter"},
		{"key file mode", Config{Name: "x", KeyFile: loose}, "mode 0644"},
		{"short key", Config{Name: "x", KeyFile: short}, "5 bytes"},
		{"no key", Config{Name: "x", KeyFile: empty}, "no key"},
		{"missing key file", Config{Name: "x", KeyFile: filepath.Join(dir, "nope")}, "no such file"},
		{"key file and keys", Config{Name: "x", KeyFile: filepath.Join(dir, "nope"), Keys: [][]byte{make([]byte, 32)}}, "give one"},
		{"short direct key", Config{Name: "x", Keys: [][]byte{make([]byte, 32), make([]byte, 5)}}, "gossip key 2 is 5 bytes"},
		{"off with a key", Config{Name: "x", Encryption: EncryptionOff, Keys: [][]byte{make([]byte, 32)}}, "encryption is off but gossip keys are given"},
		{"on without a key", Config{Name: "x", Encryption: EncryptionOn}, `mode "on" needs a gossip key`},
		{"accept without a key", Config{Name: "x", Encryption: EncryptionAccept}, `mode "accept" needs a gossip key`},
		{"unknown mode", Config{Name: "x", Encryption: "maybe"}, `unknown gossip encryption mode "maybe"`},
		{"bad allowed range", Config{Name: "x", AllowedCIDRs: []netip.Prefix{{}}}, "not a valid prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New() error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func newKey(t *testing.T) []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// writeKeys replaces path atomically with keys, one base64 key a line.
func writeKeys(t *testing.T, path string, mode os.FileMode, keys ...[]byte) {
	t.Helper()
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestWrongKeyRejected(t *testing.T) {
	dir := t.TempDir()
	k1, k2 := newKey(t), newKey(t)
	nodes := cluster(t, "e", 2, func(c *Config) {
		c.KeyFile = filepath.Join(dir, c.Name)
		writeKeys(t, c.KeyFile, 0o600, k1)
	})

	wrong := testConfig("wrongkey")
	wrong.KeyFile = filepath.Join(dir, "wrong")
	writeKeys(t, wrong.KeyFile, 0o600, k2)
	wrong.Join = []string{nodes[0].m.LocalAddr()}
	w := start(t, wrong)

	none := testConfig("nokey")
	none.Join = []string{nodes[1].m.LocalAddr()}
	n := start(t, none)

	// The cluster logs who was rejected and why.
	waitFor(t, 5*time.Second, "rejection log lines", func() bool {
		return len(nodes[0].log.grep("gossip message rejected: wrong or missing gossip key", "key this node does not have", `from="127.0.0.1:`)) > 0 &&
			len(nodes[1].log.grep("gossip message rejected: wrong or missing gossip key", "no gossip key configured")) > 0
	})
	waitFor(t, 5*time.Second, "the rejected member's log line", func() bool {
		return len(w.log.grep("gossip join rejected: wrong or missing gossip key")) > 0
	})
	// For several rejoin rounds, nobody ever sees the rejected members.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		for _, o := range nodes {
			for _, name := range []string{"wrongkey", "nokey"} {
				if st := o.state(name); st != "" {
					t.Fatalf("%s sees %s as %s; want it rejected", o.name, name, st)
				}
			}
		}
		if len(w.m.Members()) != 0 || len(n.m.Members()) != 0 {
			t.Fatalf("rejected members see the cluster: %v %v", w.m.Members(), n.m.Members())
		}
		time.Sleep(20 * time.Millisecond)
	}
	allSee(t, time.Second, nodes, nodeNames(nodes), StateAlive)
	for _, l := range nodes[0].log.grep("gossip message rejected") {
		t.Logf("log line: %s", l)
	}
	// The warnings are rate-limited per sending host.
	if n := len(nodes[0].log.grep("gossip message rejected")); n > 2 {
		t.Errorf("%d rejection warnings in a few seconds from one host; want them rate-limited", n)
	}
}

func TestKeyRotation(t *testing.T) {
	dir := t.TempDir()
	k1, k2 := newKey(t), newKey(t)
	nodes := cluster(t, "rot", 3, func(c *Config) {
		c.KeyFile = filepath.Join(dir, c.Name)
		writeKeys(t, c.KeyFile, 0o600, k1)
	})

	// Each step is applied on every node, one by one, while gossip runs;
	// the first node reloads on SIGHUP (ReloadKeys), the others notice the
	// file change themselves.
	version := uint64(0)
	step := func(desc string, keys ...[]byte) {
		t.Helper()
		for i, n := range nodes {
			writeKeys(t, n.m.cfg.KeyFile, 0o600, keys...)
			if i == 0 {
				if err := n.m.ReloadKeys(); err != nil {
					t.Fatalf("%s: ReloadKeys: %v", desc, err)
				}
			} else {
				waitFor(t, 5*time.Second, n.name+" reloaded its keys", func() bool {
					n.m.mu.Lock()
					defer n.m.mu.Unlock()
					ring := n.m.keyring.GetKeys()
					return len(ring) == len(keys) && string(ring[0]) == string(keys[0])
				})
			}
			// Everyone stays connected while the cluster is mixed.
			allSee(t, 3*time.Second, nodes, nodeNames(nodes), StateAlive)
		}
		// Gossip still flows: a metadata change reaches everyone.
		version++
		if err := nodes[2].m.SetMeta(Meta{Epoch: 1, Version: version}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, desc+": metadata change reaches all", func() bool {
			for _, o := range nodes[:2] {
				if mb, _ := o.member(nodes[2].name); mb.Meta.Version != version {
					return false
				}
			}
			return true
		})
	}
	step("add new key", k1, k2)
	step("use new key", k2, k1)
	step("remove old key", k2)
	for _, n := range nodes {
		if lines := n.log.grep("gossip message rejected"); len(lines) > 0 {
			t.Errorf("%s rejected messages during rotation: %v", n.name, lines)
		}
		if got := n.log.grep("gossip keys loaded"); len(got) != 3 {
			t.Errorf("%s: %d key reloads logged, want 3", n.name, len(got))
		}
	}

	// A member still on the old key is now refused.
	old := testConfig("oldkey")
	old.KeyFile = filepath.Join(dir, "old")
	writeKeys(t, old.KeyFile, 0o600, k1)
	old.Join = []string{nodes[0].m.LocalAddr()}
	o := start(t, old)
	waitFor(t, 5*time.Second, "old key rejected in the log", func() bool {
		return len(nodes[0].log.grep("gossip message rejected", "key this node does not have")) > 0 &&
			len(o.log.grep("gossip join rejected")) > 0
	})
	if st := nodes[0].state("oldkey"); st != "" {
		t.Errorf("member with the removed key is %s", st)
	}

	// A bad edit keeps the keys in force.
	writeKeys(t, nodes[1].m.cfg.KeyFile, 0o644, k2)
	waitFor(t, 5*time.Second, "mode complaint", func() bool {
		return len(nodes[1].log.grep("gossip key file unusable", "mode 0644")) > 0
	})
	allSee(t, 3*time.Second, nodes, nodeNames(nodes), StateAlive)
}

// cutTransport drops everything a member sends to the addresses in cut,
// as a link that is down: UDP is lost silently, TCP dials fail.
type cutTransport struct {
	memberlist.NodeAwareTransport

	// mu guards the following.
	mu  sync.Mutex
	cut map[string]bool
}

func (c *cutTransport) set(addrs []string, down bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range addrs {
		c.cut[a] = down
	}
}

func (c *cutTransport) isCut(addr string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cut[addr]
}

func (c *cutTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if c.isCut(addr) {
		return time.Now(), nil
	}
	return c.NodeAwareTransport.WriteTo(b, addr)
}

func (c *cutTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if c.isCut(a.Addr) {
		return time.Now(), nil
	}
	return c.NodeAwareTransport.WriteToAddress(b, a)
}

func (c *cutTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if c.isCut(a.Addr) {
		return nil, errors.New("test: link down")
	}
	return c.NodeAwareTransport.DialAddressTimeout(a, timeout)
}

func (c *cutTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if c.isCut(addr) {
		return nil, errors.New("test: link down")
	}
	return c.NodeAwareTransport.DialTimeout(addr, timeout)
}

// TestPartitionHealedByRejoin cuts one member off for longer than
// GossipToTheDeadTime (lowered to 1 s), after which memberlist stops
// talking to dead members, and checks that the rejoin loop reconnects
// the two sides once the link is back, and that without the loop they
// stay apart.
func TestPartitionHealedByRejoin(t *testing.T) {
	for _, rejoin := range []bool{true, false} {
		t.Run(fmt.Sprintf("rejoin=%t", rejoin), func(t *testing.T) {
			var cuts []*cutTransport
			var nodes []*node
			for i := range 3 {
				cfg := testConfig(fmt.Sprintf("p%d", i))
				cfg.GossipToTheDeadTime = time.Second
				if !rejoin {
					cfg.RejoinInterval = time.Hour // only the first join at start
				}
				if i > 0 {
					cfg.Join = []string{nodes[0].m.LocalAddr()}
				}
				ct := &cutTransport{cut: make(map[string]bool)}
				cuts = append(cuts, ct)
				nodes = append(nodes, start(t, cfg, func(m *Membership) {
					m.wrapTransport = func(tr memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
						ct.NodeAwareTransport = tr
						return ct
					}
				}))
			}
			allSee(t, 10*time.Second, nodes, nodeNames(nodes), StateAlive)

			lone, rest := nodes[2], nodes[:2]
			partition := func(down bool) {
				cuts[2].set([]string{nodes[0].m.LocalAddr(), nodes[1].m.LocalAddr()}, down)
				cuts[0].set([]string{lone.m.LocalAddr()}, down)
				cuts[1].set([]string{lone.m.LocalAddr()}, down)
			}
			partition(true)
			allSee(t, 5*time.Second, rest, []string{lone.name}, StateDead)
			allSee(t, 5*time.Second, []*node{lone}, nodeNames(rest), StateDead)
			// Stay apart past GossipToTheDeadTime plus a push/pull round.
			time.Sleep(3 * time.Second)
			allSee(t, time.Second, rest, []string{lone.name}, StateDead)

			partition(false)
			if !rejoin {
				deadline := time.Now().Add(4 * time.Second)
				for time.Now().Before(deadline) {
					if rest[0].state(lone.name) == StateAlive || lone.state(rest[0].name) == StateAlive {
						t.Fatal("partition healed without the rejoin loop: the test does not exercise it")
					}
					time.Sleep(20 * time.Millisecond)
				}
				return
			}
			took := allSee(t, 5*time.Second, nodes, nodeNames(nodes), StateAlive)
			t.Logf("partition healed %s after the link came back", took)
		})
	}
}

// TestSetMetaFillsBootID: the boot ID in the metadata is always the one
// New generated.
func TestSetMetaFillsBootID(t *testing.T) {
	m, err := New(testConfig("boot"))
	if err != nil {
		t.Fatal(err)
	}
	if m.BootID() == "" {
		t.Fatal("New generated no boot ID")
	}
	for _, give := range []string{"", "other-boot"} {
		if err := m.SetMeta(Meta{BootID: give, Epoch: 1}); err != nil {
			t.Fatal(err)
		}
		if m.meta.BootID != m.BootID() {
			t.Errorf("SetMeta(BootID %q): BootID %q, want %q", give, m.meta.BootID, m.BootID())
		}
	}
}

// TestDuplicateNameRefused starts a second live member under a name
// already in use: it is refused while the first lives, and the log names
// both addresses.
func TestDuplicateNameRefused(t *testing.T) {
	nodes := cluster(t, "dup", 2, nil)
	cfg := testConfig("dup1")
	cfg.Join = []string{nodes[0].m.LocalAddr()}
	twin := start(t, cfg)
	waitFor(t, 5*time.Second, "conflict warning", func() bool {
		return len(nodes[0].log.grep("two gossip members claim one name", "member=dup1",
			"addr=\""+nodes[1].m.LocalAddr(), "other_addr=\""+twin.m.LocalAddr())) > 0
	})
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if mb, _ := nodes[0].member("dup1"); mb.Addr != nodes[1].m.LocalAddr() || mb.State != StateAlive {
			t.Fatalf("dup0 sees dup1 as %+v; want the first one, alive", mb)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
