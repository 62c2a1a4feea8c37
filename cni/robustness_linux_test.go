// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package cni_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/cni"
	"github.com/weftnet/weft/cni/ipam"
	"github.com/weftnet/weft/e2e/netnstest"
)

// TestChurn runs 500 ADD/DEL cycles from 4 concurrent workers and checks
// that no address is ever held twice and nothing leaks.
func TestChurn(t *testing.T) {
	e := newEnv(t)
	l := e.confList("1.1.0", e.weftConf(nil))
	const workers, cycles = 4, 500
	var (
		mu    sync.Mutex
		owner = map[string]string{} // address -> container holding it
		errs  []string
	)
	fail := func(format string, a ...any) {
		mu.Lock()
		errs = append(errs, fmt.Sprintf(format, a...))
		mu.Unlock()
	}
	// The store itself never holds one address twice: sample it while
	// the workers run.
	stop := make(chan struct{})
	sampled := make(chan int)
	go func() {
		n := 0
		defer func() { sampled <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			seen := map[string]string{}
			for _, name := range e.records() {
				parts := strings.Split(name, "_")
				if len(parts) != 3 {
					continue // a temporary file
				}
				for _, ip := range parts[1:] {
					if o, ok := seen[ip]; ok && ip != "-" {
						fail("store holds %s twice: %s and %s", ip, o, name)
					}
					seen[ip] = name
				}
			}
			n++
			time.Sleep(time.Millisecond)
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		pod := netnstest.NewNS(t, "weftcni-churn")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < cycles; i += workers {
				rt := runtimeConf(fmt.Sprintf("churn-%d-%d", w, i), pod)
				res, err := e.add(l, rt)
				if err != nil {
					fail("ADD %s: %v", rt.ContainerID, err)
					return
				}
				ips := addrsOf(res)
				mu.Lock()
				for _, ip := range ips {
					if o, ok := owner[ip]; ok {
						errs = append(errs, fmt.Sprintf("%s handed to %s while %s holds it", ip, rt.ContainerID, o))
					}
					owner[ip] = rt.ContainerID
				}
				mu.Unlock()
				// The pod lives a little: CHECK it while it holds its
				// addresses, so a concurrent double allocation shows.
				if err := e.check(l, rt); err != nil {
					fail("CHECK %s: %v", rt.ContainerID, err)
				}
				// Forget the addresses before DEL: once DEL has released
				// them another worker may rightly get them.
				mu.Lock()
				for _, ip := range ips {
					delete(owner, ip)
				}
				mu.Unlock()
				if err := e.del(l, rt); err != nil {
					fail("DEL %s: %v", rt.ContainerID, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	t.Logf("%d ADD/CHECK/DEL cycles with %d workers in %.1fs; store sampled %d times", cycles, workers, time.Since(start).Seconds(), <-sampled)
	for _, s := range errs {
		t.Error(s)
	}
	e.assertClean()
}

// TestCrash kills the plugin with SIGKILL in the middle of ADD and checks
// that the runtime's next DEL, or a GC, leaves nothing behind and that the
// same container can then be added again. Each point is a state the kill
// leaves, and the test waits until the plugin has visibly reached it:
//
//	BEFORE_ALLOC  the allocation held back, the rest of ADD done up to
//	              waiting for it (the trace's "pod socket" step): no veth
//	              may exist yet, since GC could not tie it to a record
//	AFTER_ALLOC   the record stored, the kill anywhere up to the veth
//	BEFORE_ALIAS  the record stored, the veth made without its alias
//	AFTER_VETH    the record stored, the veth made and named
func TestCrash(t *testing.T) {
	for _, point := range []string{"BEFORE_ALLOC", "AFTER_ALLOC", "BEFORE_ALIAS", "AFTER_VETH"} {
		for _, cleanup := range []string{"DEL", "GC"} {
			t.Run(point+"/"+cleanup, func(t *testing.T) {
				e := newEnv(t)
				pod := netnstest.NewNS(t, "weftcni-pod")
				netnsPath := "/run/netns/" + pod.Name
				trace := filepath.Join(e.dir, "trace")
				var cmd *exec.Cmd
				if err := e.inNode(func() error {
					cmd = exec.Command(filepath.Join(hookDir, "weft"))
					cmd.Env = append(cniEnv("ADD", "ctr-crash", netnsPath, "eth0", hookDir), "WEFT_CNI_TEST_SLEEP_"+point+"=1m", "WEFT_CNI_TEST_TRACE="+trace)
					cmd.Stdin = strings.NewReader(string(e.weftJSON("1.1.0", nil)))
					return cmd.Start()
				}); err != nil {
					t.Fatal(err)
				}
				// Only a record's own name counts: the store writes a
				// record to a temporary file first.
				stored := func() bool {
					return slices.ContainsFunc(e.records(), func(n string) bool { return ipam.KeyOfName(n) != "" })
				}
				veth := func() (alias string, ok bool) {
					l, err := backend.LinkByName(e.nl, cni.HostVethName("ctr-crash", "eth0"))
					if err != nil {
						return "", false
					}
					return l.Attrs().Alias, true
				}
				reached := func() bool {
					switch point {
					case "BEFORE_ALLOC":
						b, _ := os.ReadFile(trace)
						return slices.ContainsFunc(strings.Split(string(b), "\n"), func(l string) bool { return strings.HasPrefix(l, "pod socket ") })
					case "AFTER_ALLOC":
						return stored()
					case "BEFORE_ALIAS":
						_, ok := veth()
						return stored() && ok
					default:
						alias, ok := veth()
						return stored() && ok && alias != ""
					}
				}
				deadline := time.Now().Add(20 * time.Second)
				for !reached() && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
				if !reached() {
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatalf("the plugin never reached %s", point)
				}
				if err := cmd.Process.Kill(); err != nil {
					t.Fatal(err)
				}
				_ = cmd.Wait()
				// What the kill left is the state the point names.
				alias, ok := veth()
				switch {
				case point == "BEFORE_ALLOC" && (ok || stored()):
					t.Errorf("killed while the allocation was held back: veth %v, record %v; want neither", ok, stored())
				case point == "BEFORE_ALIAS" && (!ok || alias != ""):
					t.Errorf("killed before the alias was set: veth %v with alias %q, want one without", ok, alias)
				}

				l := e.confList("1.1.0", e.weftConf(nil))
				rt := runtimeConf("ctr-crash", pod)
				switch cleanup {
				case "DEL":
					if err := e.del(l, rt); err != nil {
						t.Fatalf("DEL after the crash: %v", err)
					}
				case "GC":
					if err := e.inNode(func() error {
						return e.cni.GCNetworkList(context.Background(), l, &libcni.GCArgs{})
					}); err != nil {
						t.Fatalf("GC after the crash: %v", err)
					}
				}
				e.assertClean()
				// The same container can be added again.
				if _, err := e.add(l, rt); err != nil {
					t.Fatalf("ADD after cleanup: %v", err)
				}
				if err := e.del(l, rt); err != nil {
					t.Fatalf("DEL: %v", err)
				}
				e.assertClean()
			})
		}
	}
}

// TestBadInputs checks that bad requests fail with the right CNI code and a
// message naming what to fix, and that they allocate nothing.
func TestBadInputs(t *testing.T) {
	type request struct {
		env   []string
		stdin []byte
	}
	good := func(e *testEnv, pod *netnstest.NS) request {
		return request{cniEnv("ADD", "ctr-bad", "/run/netns/"+pod.Name, "eth0", pluginDir), e.weftJSON("1.1.0", nil)}
	}
	withKey := func(k string, v any) func(*testEnv, *netnstest.NS, *request) {
		return func(e *testEnv, _ *netnstest.NS, r *request) { r.stdin = e.weftJSON("1.1.0", map[string]any{k: v}) }
	}
	dropEnv := func(name string) func(*testEnv, *netnstest.NS, *request) {
		return func(_ *testEnv, _ *netnstest.NS, r *request) {
			var env []string
			for _, kv := range r.env {
				if !strings.HasPrefix(kv, name+"=") {
					env = append(env, kv)
				}
			}
			r.env = env
		}
	}
	for _, c := range []struct {
		name   string
		setup  func(*testEnv, *netnstest.NS, *request)
		code   uint
		substr string
	}{
		{"bad json", func(_ *testEnv, _ *netnstest.NS, r *request) { r.stdin = []byte(`{"cniVersion": "1.1.0", "name": `) }, types.ErrDecodingFailure, "unmarshal"},
		{"mtu not a number", withKey("mtu", "big"), types.ErrInvalidNetworkConfig, `key "mtu": want an integer`},
		{"mtu out of range", withKey("mtu", 100), types.ErrInvalidNetworkConfig, `key "mtu": 100 is outside 576-65535`},
		{"hairpinMode not a bool", withKey("hairpinMode", "yes"), types.ErrInvalidNetworkConfig, `key "hairpinMode": want true or false`},
		{"bridge name too long", withKey("bridge", "a-very-long-bridge-name"), types.ErrInvalidNetworkConfig, `key "bridge"`},
		{"dataDir relative", withKey("dataDir", "var/lib"), types.ErrInvalidNetworkConfig, `key "dataDir": "var/lib" is not an absolute path`},
		{"subnetFile not a string", withKey("subnetFile", 7), types.ErrInvalidNetworkConfig, `key "subnetFile": want a string`},
		{"unsupported cniVersion", func(e *testEnv, _ *netnstest.NS, r *request) {
			r.stdin = []byte(strings.Replace(string(e.weftJSON("1.1.0", nil)), `"1.1.0"`, `"9.9.9"`, 1))
		}, types.ErrIncompatibleCNIVersion, "incompatible"},
		{"no CNI_CONTAINERID", dropEnv("CNI_CONTAINERID"), types.ErrInvalidEnvironmentVariables, "CNI_CONTAINERID"},
		{"no CNI_PATH", dropEnv("CNI_PATH"), types.ErrInvalidEnvironmentVariables, "CNI_PATH"},
		{"no CNI_NETNS", dropEnv("CNI_NETNS"), types.ErrInvalidEnvironmentVariables, "CNI_NETNS"},
		{"no CNI_IFNAME", dropEnv("CNI_IFNAME"), types.ErrInvalidEnvironmentVariables, "CNI_IFNAME"},
		{"netns does not exist", func(_ *testEnv, _ *netnstest.NS, r *request) {
			r.env = cniEnv("ADD", "ctr-bad", "/run/netns/weftcni-does-not-exist", "eth0", pluginDir)
		}, types.ErrInvalidEnvironmentVariables, `CNI_NETNS "/run/netns/weftcni-does-not-exist"`},
		{"subnet file missing", func(e *testEnv, _ *netnstest.NS, _ *request) {
			if err := os.Remove(e.subnetFile); err != nil {
				panic(err)
			}
		}, types.ErrTryAgainLater, "weftd is not ready: subnet file"},
		{"subnet full", func(e *testEnv, _ *netnstest.NS, _ *request) {
			// A /30 has one address for pods; another pod takes it.
			sf := defaultSubnet
			sf.Subnet, sf.IPv6Subnet, sf.IPv6Network = netip.MustParsePrefix("10.244.9.1/30"), netip.Prefix{}, netip.Prefix{}
			e.writeSubnet(sf)
			other := netnstest.NewNS(e.t, "weftcni-pod")
			if _, err := e.add(e.confList("1.1.0", e.weftConf(nil)), runtimeConf("ctr-first", other)); err != nil {
				e.t.Fatalf("ADD of the first pod: %v", err)
			}
		}, cni.CodeNoAddress, "no free address in 10.244.9.0/30"},
		{"interface exists", func(e *testEnv, pod *netnstest.NS, _ *request) {
			h := pod.Netlink(e.t)
			if err := h.LinkAdd(vethPair("eth0")); err != nil {
				e.t.Fatal(err)
			}
		}, cni.CodeIfExists, "interface eth0 already exists"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			pod := netnstest.NewNS(t, "weftcni-pod")
			r := good(e, pod)
			c.setup(e, pod, &r)
			recsBefore, linksBefore := e.records(), e.links()
			out, err := e.execPlugin(pluginDir, r.env, r.stdin)
			if err == nil {
				t.Fatalf("ADD succeeded: %s", out)
			}
			ce := cniError(t, out)
			if ce.Code != c.code || !strings.Contains(ce.Msg, c.substr) {
				t.Errorf("got code %d %q, want code %d with %q", ce.Code, ce.Msg, c.code, c.substr)
			}
			if got := e.records(); len(got) != len(recsBefore) {
				t.Errorf("records %v after the failed ADD, had %v", got, recsBefore)
			}
			if got := e.links(); len(got) != len(linksBefore) {
				t.Errorf("links %v after the failed ADD, had %v", got, linksBefore)
			}
		})
	}
}
