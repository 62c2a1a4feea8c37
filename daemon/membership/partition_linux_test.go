// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package membership

// TestPartitionDefaultsNetns checks, with the production defaults
// (GossipToTheDeadTime 30 s, rejoin every 2 s), that a node cut off for
// 45 s is declared dead and is alive again within seconds of its link
// coming back. Each member runs in its own network namespace, in a child
// process (this test binary re-executed under `ip netns exec`, see
// TestMemberHelper), because memberlist opens TCP connections from any
// thread and so must run wholly inside the namespace.
//
//	 ns <id>-a            ns <id>-b            ns <id>-c
//	 eth0 198.18.77.1     eth0 198.18.77.2     eth0 198.18.77.3
//	   │                    │                    │
//	   pa ──────────────── pb ──────────────── pc     (cut: pc down)
//	        bridge br0 in ns <id>-hub

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/weftnet/weft/e2e/netnstest"
)

const helperEnv = "WEFT_MEMBERSHIP_HELPER"

// helperSpec is what the parent tells a helper process to run.
type helperSpec struct {
	Name, BindAddr string
	Join           []string
}

// TestMemberHelper is not a test: it is the child process of
// TestPartitionDefaultsNetns. It runs one member with the Config in
// $WEFT_MEMBERSHIP_HELPER and prints its member table as a JSON line
// whenever it changes, until SIGTERM.
func TestMemberHelper(t *testing.T) {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		t.Skip("helper process for TestPartitionDefaultsNetns")
	}
	var hs helperSpec
	if err := json.Unmarshal([]byte(spec), &hs); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Name: hs.Name, BindAddr: hs.BindAddr, Join: hs.Join}
	lg := logrus.New()
	lg.Out = os.Stderr
	cfg.Log = lg
	var mu sync.Mutex
	var m *Membership
	print := func() {
		mu.Lock()
		defer mu.Unlock()
		b, _ := json.Marshal(m.Members())
		fmt.Printf("MEMBERS %s\n", b)
	}
	cfg.OnChange = print
	var err error
	if m, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// nsMember is a member running in a child process.
type nsMember struct {
	name string
	cmd  *exec.Cmd
	// mu guards view.
	mu   sync.Mutex
	view map[string]State
}

func (n *nsMember) state(name string) State {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.view[name]
}

func skipUnlessRoot(t *testing.T) {
	t.Helper()
	netnstest.SkipUnlessRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2)")
	}
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func TestPartitionDefaultsNetns(t *testing.T) {
	skipUnlessRoot(t)
	if testing.Short() {
		t.Skip("takes about a minute")
	}
	var rnd [3]byte
	rand.Read(rnd[:])
	id := "wm" + hex.EncodeToString(rnd[:])
	hub := id + "-hub"
	names := []string{"a", "b", "c"}
	var created []string
	t.Cleanup(func() {
		for _, ns := range created {
			exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	run(t, "ip", "netns", "add", hub)
	created = append(created, hub)
	run(t, "ip", "-n", hub, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", hub, "link", "set", "br0", "up")
	for i, n := range names {
		ns := id + "-" + n
		run(t, "ip", "netns", "add", ns)
		created = append(created, ns)
		run(t, "ip", "-n", hub, "link", "add", "p"+n, "type", "veth", "peer", "name", "eth0", "netns", ns)
		run(t, "ip", "-n", hub, "link", "set", "p"+n, "master", "br0", "up")
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
		run(t, "ip", "-n", ns, "addr", "add", fmt.Sprintf("198.18.77.%d/24", i+1), "dev", "eth0")
		run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	}

	var members []*nsMember
	for i, n := range names {
		hs := helperSpec{Name: n, BindAddr: fmt.Sprintf("198.18.77.%d:7950", i+1)}
		if i > 0 {
			hs.Join = []string{"198.18.77.1:7950"}
		}
		spec, _ := json.Marshal(hs)
		cmd := exec.Command("ip", "netns", "exec", id+"-"+n, os.Args[0], "-test.run=^TestMemberHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"="+string(spec))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		logf, err := os.Create(fmt.Sprintf("%s/%s.log", t.TempDir(), n))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		m := &nsMember{name: n, cmd: cmd, view: map[string]State{}}
		members = append(members, m)
		done := make(chan struct{})
		go func() {
			defer close(done)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				line, ok := strings.CutPrefix(sc.Text(), "MEMBERS ")
				if !ok {
					continue
				}
				var mbs []Member
				if json.Unmarshal([]byte(line), &mbs) != nil {
					continue
				}
				m.mu.Lock()
				for _, mb := range mbs {
					m.view[mb.Name] = mb.State
				}
				m.mu.Unlock()
			}
		}()
		t.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
			}
			cmd.Wait()
			logf.Close()
			if t.Failed() {
				b, _ := os.ReadFile(logf.Name())
				t.Logf("member %s log:\n%s", n, b)
			}
		})
	}
	see := func(timeout time.Duration, obs []*nsMember, who []string, st State) time.Duration {
		t.Helper()
		return waitFor(t, timeout, fmt.Sprintf("%v to see %v %s", obs, who, st), func() bool {
			for _, o := range obs {
				for _, w := range who {
					if o.name != w && o.state(w) != st {
						return false
					}
				}
			}
			return true
		})
	}
	see(15*time.Second, members, names, StateAlive)

	cut := time.Now()
	run(t, "ip", "-n", hub, "link", "set", "pc", "down")
	took := see(10*time.Second, members[:2], []string{"c"}, StateDead)
	see(10*time.Second, members[2:], []string{"a", "b"}, StateDead)
	t.Logf("cut-off member declared dead after %s", took)
	// Stay apart longer than GossipToTheDeadTime (30 s): memberlist alone
	// no longer contacts the other side after that.
	for time.Since(cut) < 45*time.Second {
		if members[0].state("c") != StateDead || members[2].state("a") != StateDead {
			t.Fatalf("sides met during the partition: a sees c %s, c sees a %s", members[0].state("c"), members[2].state("a"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	run(t, "ip", "-n", hub, "link", "set", "pc", "up")
	healed := see(15*time.Second, members, names, StateAlive)
	t.Logf("after a 45 s partition, everyone alive again %s after the link came back", healed)
}

func (n *nsMember) String() string { return n.name }
