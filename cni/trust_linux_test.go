// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package cni_test

import (
	"bytes"
	"context"
	"encoding/json"
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
	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/cni"
	"github.com/weftnet/weft/cni/ipam"
	"github.com/weftnet/weft/e2e/netnstest"
	"github.com/weftnet/weft/subnet"
)

// These tests take the view of someone who is not root on the node: weftd's
// user, who owns the subnet file's directory, a pod, and another network
// configured on the same node. What they leave must never make the root
// plugin read another file, hang, hand out a live pod's address, or touch
// what is not its own.

// secretLine is what a root-only file holds: no error may show it.
const secretLine = "root:$6$s3cretSalt$s3cretHash:19000:0:99999:7:::"

// bridgeState is what a failed ADD must leave unchanged on the bridge.
type bridgeState struct {
	Exists bool
	Alias  string
	MTU    int
	Addrs  []string
}

func (e *testEnv) bridgeState() bridgeState {
	e.t.Helper()
	l, err := backend.LinkByName(e.nl, e.bridge)
	if err != nil {
		return bridgeState{}
	}
	return bridgeState{true, l.Attrs().Alias, l.Attrs().MTU, globalAddrs(e.t, e.nl, l)}
}

// runPlugin runs the plugin like execPlugin, but gives up after 10 s (so a
// plugin that blocks fails the test instead of hanging it) and returns how
// long it ran.
func (e *testEnv) runPlugin(env []string, stdin []byte) (out []byte, took time.Duration, err error) {
	e.t.Helper()
	err = e.inNode(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(pluginDir, "weft"))
		cmd.Env = env
		cmd.Stdin = bytes.NewReader(stdin)
		start := time.Now()
		var err error
		out, err = cmd.Output()
		took = time.Since(start)
		if ctx.Err() != nil {
			return fmt.Errorf("the plugin was still running after 10s")
		}
		return err
	})
	return out, took, err
}

// TestUnsafeSubnetFile replaces the subnet file with what weftd's user
// could put there and checks that ADD and STATUS fail within 1 s with a
// clear error that shows none of the content, and that the failed ADD
// leaves no veth, no record and the bridge as it was.
func TestUnsafeSubnetFile(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, e *testEnv)
		want  string
	}{
		{"symlink to a root-only file", func(t *testing.T, e *testEnv) {
			target := filepath.Join(t.TempDir(), "shadow")
			mustDo(t, os.WriteFile(target, []byte(secretLine+"\n"), 0o600))
			mustDo(t, os.Symlink(target, e.subnetFile))
		}, "it is a symbolic link"},
		{"FIFO", func(t *testing.T, e *testEnv) {
			mustDo(t, unix.Mkfifo(e.subnetFile, 0o644))
		}, "not a regular file (a FIFO)"},
		{"oversized", func(t *testing.T, e *testEnv) {
			data := append(defaultSubnet.Marshal(), strings.Repeat("# "+secretLine+"\n", 200)...)
			mustDo(t, os.WriteFile(e.subnetFile, data, 0o644))
		}, "more than the 4096 a subnet file may have"},
		{"foreign-owned", func(t *testing.T, e *testEnv) {
			mustDo(t, os.WriteFile(e.subnetFile, defaultSubnet.Marshal(), 0o644))
			mustDo(t, os.Chown(e.subnetFile, 4242, 4242)) // neither root nor the directory's owner (root)
		}, "owned by uid 4242, neither root nor the owner (uid 0) of its directory"},
		{"group-writable", func(t *testing.T, e *testEnv) {
			mustDo(t, os.WriteFile(e.subnetFile, defaultSubnet.Marshal(), 0o644))
			mustDo(t, os.Chmod(e.subnetFile, 0o664))
		}, "writable by group or others (mode 0664)"},
		{"world-writable", func(t *testing.T, e *testEnv) {
			mustDo(t, os.WriteFile(e.subnetFile, defaultSubnet.Marshal(), 0o644))
			mustDo(t, os.Chmod(e.subnetFile, 0o666))
		}, "writable by group or others (mode 0666)"},
		{"content not from weftd", func(t *testing.T, e *testEnv) {
			mustDo(t, os.WriteFile(e.subnetFile, []byte(secretLine+"\n"), 0o644))
		}, "line 1: not KEY=value"},
		{"subnet outside the network", func(t *testing.T, e *testEnv) {
			mustDo(t, os.WriteFile(e.subnetFile, []byte("WEFT_NETWORK=10.244.0.0/16\nWEFT_SUBNET=10.0.0.1/8\nWEFT_MTU=1450\n"), 0o644))
		}, "WEFT_SUBNET: not inside WEFT_NETWORK"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			// A running pod: the bridge exists and the store holds a record.
			l := e.confList("1.1.0", e.weftConf(nil))
			running := netnstest.NewNS(t, "weftcni-pod")
			if _, err := e.add(l, runtimeConf("ctr-running", running)); err != nil {
				t.Fatalf("ADD: %v", err)
			}
			recs, links, br := e.records(), e.links(), e.bridgeState()
			mustDo(t, os.Remove(e.subnetFile))
			c.setup(t, e)

			pod := netnstest.NewNS(t, "weftcni-pod")
			for _, v := range []struct {
				cmd  string
				code uint
			}{{"ADD", types.ErrTryAgainLater}, {"STATUS", types.ErrPluginNotAvailable}} {
				out, took, err := e.runPlugin(cniEnv(v.cmd, "ctr-new", "/run/netns/"+pod.Name, "eth0", pluginDir), e.weftJSON("1.1.0", nil))
				if err == nil {
					t.Fatalf("%s succeeded: %s", v.cmd, out)
				}
				ce := cniError(t, out)
				if ce.Code != v.code || !strings.Contains(ce.Msg, c.want) || !strings.Contains(ce.Msg, e.subnetFile) {
					t.Errorf("%s: code %d %q, want code %d naming %s with %q", v.cmd, ce.Code, ce.Msg, v.code, e.subnetFile, c.want)
				}
				if strings.Contains(string(out), "s3cret") {
					t.Errorf("%s shows the file's content: %s", v.cmd, out)
				}
				if took > time.Second {
					t.Errorf("%s took %v, want under 1s", v.cmd, took)
				}
				t.Logf("%s: %v: %s", v.cmd, took.Round(time.Millisecond), ce.Msg)
			}
			if diff := cmp.Diff(recs, e.records()); diff != "" {
				t.Errorf("records changed (-before +after):\n%s", diff)
			}
			if diff := cmp.Diff(links, e.links()); diff != "" {
				t.Errorf("links changed (-before +after):\n%s", diff)
			}
			if diff := cmp.Diff(br, e.bridgeState()); diff != "" {
				t.Errorf("bridge changed (-before +after):\n%s", diff)
			}
		})
	}
}

// TestFamilyTransition runs real pods through a network gaining IPv6 and
// losing it (and gaining it back), with small pools so that the round
// robin wraps: running pods keep their records and addresses, new pods
// get the families of the subnet file they were added under, no address is
// ever held twice (the store is sampled throughout), and a pool whose
// addresses running pods hold is full.
func TestFamilyTransition(t *testing.T) {
	v4 := subnet.SubnetFile{Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.3.1/28"), MTU: 1450}
	dual := v4
	dual.IPv6Network, dual.IPv6Subnet = netip.MustParsePrefix("fd10:244::/56"), netip.MustParsePrefix("fd10:244:0:3::1/124")
	wide := dual
	wide.Subnet = netip.MustParsePrefix("10.244.3.1/24")
	type round struct {
		file subnet.SubnetFile
		pods int // ADDs that succeed
		full bool
	}
	for _, c := range []struct {
		name   string
		rounds []round
	}{
		// A /28 has 13 pod addresses: 5 running pods leave 8.
		{"IPv6 added", []round{{v4, 5, false}, {dual, 8, true}}},
		// A /124 has 14: 5 running pods leave 9, also after the network
		// went IPv4-only and back.
		{"IPv6 dropped and added back", []round{{wide, 5, false}, {func() subnet.SubnetFile {
			f := wide
			f.IPv6Network, f.IPv6Subnet = netip.Prefix{}, netip.Prefix{}
			return f
		}(), 3, false}, {wide, 9, true}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			l := e.confList("1.1.0", e.weftConf(nil))
			stop := e.sampleStore(t)
			type pod struct {
				rt    *libcni.RuntimeConf
				ns    *netnstest.NS
				addrs []string
			}
			var pods []pod
			for i, r := range c.rounds {
				e.writeSubnet(r.file)
				for j := range r.pods {
					ns := netnstest.NewNS(t, "weftcni-pod")
					rt := runtimeConf(fmt.Sprintf("ctr-%d-%d", i, j), ns)
					res, err := e.add(l, rt)
					if err != nil {
						t.Fatalf("round %d: ADD %s: %v", i, rt.ContainerID, err)
					}
					got := addrsOf(res)
					if want := 1 + btoi(r.file.IPv6Subnet.IsValid()); len(got) != want {
						t.Errorf("round %d: %s got %v, want %d addresses", i, rt.ContainerID, got, want)
					}
					pods = append(pods, pod{rt, ns, got})
				}
				if r.full {
					ns := netnstest.NewNS(t, "weftcni-pod")
					rt := runtimeConf("ctr-one-too-many", ns)
					res, err := e.add(l, rt)
					assertCode(t, err, cni.CodeNoAddress, "no free address")
					if err == nil { // checked for duplicates below
						pods = append(pods, pod{rt, ns, addrsOf(res)})
					}
				}
			}
			stop()
			// Every pod, old and new, holds distinct addresses, in the
			// kernel and in the store, and old pods reach new ones.
			owner := map[string]string{}
			for _, p := range pods {
				for _, a := range p.addrs {
					if o, ok := owner[a]; ok {
						t.Errorf("%s handed to %s while %s holds it", a, p.rt.ContainerID, o)
					}
					owner[a] = p.rt.ContainerID
				}
				eth0, err := backend.LinkByName(p.ns.Netlink(t), "eth0")
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(p.addrs, globalAddrs(t, p.ns.Netlink(t), eth0)); diff != "" {
					t.Errorf("%s's addresses in its namespace (-at ADD +now):\n%s", p.rt.ContainerID, diff)
				}
			}
			if n := len(e.records()); n != len(pods) {
				t.Errorf("%d records for %d running pods", n, len(pods))
			}
			first, last := pods[0], pods[len(pods)-1]
			exchange(t, first.ns, last.ns, strings.Split(last.addrs[0], "/")[0])
			for _, p := range pods {
				if err := e.del(l, p.rt); err != nil {
					t.Errorf("DEL %s: %v", p.rt.ContainerID, err)
				}
			}
			e.assertClean()
		})
	}
}

// sampleStore checks, until the returned stop is called, that the store
// never holds one address in two records.
func (e *testEnv) sampleStore(t *testing.T) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
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
						t.Errorf("store holds %s twice: %s and %s", ip, o, name)
					}
					seen[ip] = name
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return func() { close(done); wg.Wait() }
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func mustDo(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// addBridge makes a bridge in the node namespace as someone else would:
// up, with the given alias and addresses.
func (e *testEnv) addBridge(t *testing.T, alias string, addrs ...string) netlink.Link {
	t.Helper()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: e.bridge, TxQLen: -1}}
	mustDo(t, e.nl.LinkAdd(br))
	if alias != "" {
		mustDo(t, e.nl.LinkSetAlias(br, alias))
	}
	for _, a := range addrs {
		n := mustIPNet(a)
		mustDo(t, e.nl.AddrAdd(br, &netlink.Addr{IPNet: &n}))
	}
	mustDo(t, e.nl.LinkSetUp(br))
	return br
}

// TestBridgeOwnership checks which bridges the plugin manages: its own
// (marked with the network's alias), an unmarked one holding only weft's
// addresses (adopted), and no other: another network's bridge and
// someone's br0 are refused with an error naming the bridge, and nothing
// of theirs changes.
func TestBridgeOwnership(t *testing.T) {
	refused := []struct {
		name  string
		setup func(t *testing.T, e *testEnv)
		want  []string
	}{
		{"foreign address", func(t *testing.T, e *testEnv) {
			e.addBridge(t, "", "198.18.7.1/24")
		}, []string{"is not weft's (it carries 198.18.7.1/24, outside the cluster network)", "never strips another's addresses"}},
		{"foreign alias", func(t *testing.T, e *testEnv) {
			e.addBridge(t, "uplink")
		}, []string{`is not weft's (its alias is "uplink")`}},
		{"foreign port", func(t *testing.T, e *testEnv) {
			br := e.addBridge(t, "")
			v := vethPair("up" + netnstest.Suffix(6))
			mustDo(t, e.nl.LinkAdd(v))
			mustDo(t, e.nl.LinkSetMaster(v, br))
		}, []string{"is one of its ports"}},
		{"another weft network's", func(t *testing.T, e *testEnv) {
			other := netnstest.NewNS(t, "weftcni-pod")
			if _, err := e.add(e.confList("1.1.0", e.weftConf(nil)), runtimeConf("ctr-weftnet", other)); err != nil {
				t.Fatalf("ADD in network weftnet: %v", err)
			}
		}, []string{`belongs to weft network "weftnet", so network "othernet" cannot use it`}},
	}
	for _, c := range refused {
		t.Run("refused/"+c.name, func(t *testing.T) {
			e := newEnv(t)
			c.setup(t, e)
			br, links := e.bridgeState(), e.links()
			pod := netnstest.NewNS(t, "weftcni-pod")
			out, err := e.execPlugin(pluginDir, cniEnv("ADD", "ctr-other", "/run/netns/"+pod.Name, "eth0", pluginDir), e.namedJSON("othernet"))
			if err == nil {
				t.Fatalf("ADD succeeded: %s", out)
			}
			ce := cniError(t, out)
			if ce.Code != types.ErrInvalidNetworkConfig || !strings.Contains(ce.Msg, "bridge "+e.bridge+" ") {
				t.Errorf("code %d %q, want code 7 naming bridge %s", ce.Code, ce.Msg, e.bridge)
			}
			for _, w := range c.want {
				if !strings.Contains(ce.Msg, w) {
					t.Errorf("message %q lacks %q", ce.Msg, w)
				}
			}
			if diff := cmp.Diff(br, e.bridgeState()); diff != "" {
				t.Errorf("bridge changed (-before +after):\n%s", diff)
			}
			if diff := cmp.Diff(links, e.links()); diff != "" {
				t.Errorf("links changed (-before +after):\n%s", diff)
			}
			if recs := e.storeRecords("othernet"); len(recs) > 0 {
				t.Errorf("records of the refused network: %v", recs)
			}
		})
	}

	t.Run("adopted: an earlier version's bridge", func(t *testing.T) {
		e := newEnv(t)
		// Unmarked, with the gateway of an earlier subnet of the node and
		// an IPv6 link-local address.
		e.addBridge(t, "", "10.244.9.1/24")
		l := e.confList("1.1.0", e.weftConf(nil))
		pod := netnstest.NewNS(t, "weftcni-pod")
		if _, err := e.add(l, runtimeConf("ctr-adopt", pod)); err != nil {
			t.Fatalf("ADD: %v", err)
		}
		want := bridgeState{true, cni.BridgeAlias("weftnet"), 1450, []string{"10.244.3.1/24", "fd10:244:0:3::1/64"}}
		if diff := cmp.Diff(want, e.bridgeState()); diff != "" {
			t.Errorf("bridge (-want +got):\n%s", diff)
		}
		mustDo(t, e.del(l, runtimeConf("ctr-adopt", pod)))
	})
	t.Run("own bridge keeps another's address", func(t *testing.T) {
		e := newEnv(t)
		l := e.confList("1.1.0", e.weftConf(nil))
		pod := netnstest.NewNS(t, "weftcni-pod")
		if _, err := e.add(l, runtimeConf("ctr-1", pod)); err != nil {
			t.Fatalf("ADD: %v", err)
		}
		br, err := backend.LinkByName(e.nl, e.bridge)
		mustDo(t, err)
		n := mustIPNet("198.18.7.1/24")
		mustDo(t, e.nl.AddrAdd(br, &netlink.Addr{IPNet: &n}))
		pod2 := netnstest.NewNS(t, "weftcni-pod")
		if _, err := e.add(l, runtimeConf("ctr-2", pod2)); err != nil {
			t.Fatalf("second ADD: %v", err)
		}
		if got := e.bridgeState().Addrs; !slices.Contains(got, "198.18.7.1/24") || !slices.Contains(got, "10.244.3.1/24") {
			t.Errorf("bridge addresses %v, want the gateway and the address someone added", got)
		}
		mustDo(t, e.del(l, runtimeConf("ctr-1", pod)))
		mustDo(t, e.del(l, runtimeConf("ctr-2", pod2)))
	})
}

// namedJSON is the stdin of a direct weft call in the network called name.
func (e *testEnv) namedJSON(name string) []byte {
	m := e.weftConf(nil)
	m["cniVersion"], m["name"] = "1.1.0", name
	b, err := json.Marshal(m)
	mustDo(e.t, err)
	return b
}

// storeRecords returns the record files of network name's store.
func (e *testEnv) storeRecords(name string) []string {
	ents, _ := os.ReadDir(filepath.Join(e.dataDir, name))
	var out []string
	for _, d := range ents {
		if n := d.Name(); n != "lock" && n != "last4" && n != "last6" {
			out = append(out, n)
		}
	}
	return out
}

// TestGCScope checks what GC removes: stale attachments of its own
// network, and never a weft-named veth of another network on its bridge;
// and that a record whose veth the kernel would not delete stays for the
// next GC (the plugin is run without CAP_NET_ADMIN, so the kernel refuses
// the delete with EPERM).
func TestGCScope(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("skipping: needs setpriv (util-linux) to run the plugin without CAP_NET_ADMIN")
	}
	e := newEnv(t)
	l := e.confList("1.1.0", e.weftConf(nil))
	var rts []*libcni.RuntimeConf
	for i := range 4 {
		rt := runtimeConf(fmt.Sprintf("ctr-gc-%d", i), netnstest.NewNS(t, "weftcni-pod"))
		if _, err := e.add(l, rt); err != nil {
			t.Fatalf("ADD: %v", err)
		}
		rts = append(rts, rt)
	}
	// A pod of another network, attached to this bridge before the bridge
	// was marked (an earlier version of the plugin allowed it): a
	// weft-named veth with its own alias.
	br, err := backend.LinkByName(e.nl, e.bridge)
	mustDo(t, err)
	foreign := cni.HostVethName("ctr-othernet", "eth0")
	peer := "fp" + netnstest.Suffix(6)
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: foreign, TxQLen: -1}, PeerName: peer, PeerTxQLen: -1}
	mustDo(t, e.nl.LinkAdd(v))
	mustDo(t, e.nl.LinkSetAlias(v, cni.VethAlias("ctr-othernet", "eth0")))
	mustDo(t, e.nl.LinkSetMaster(v, br))
	// Pod 3's veth is already gone (its namespace was removed); its
	// record is left.
	host3, err := backend.LinkByName(e.nl, cni.HostVethName(rts[3].ContainerID, "eth0"))
	mustDo(t, err)
	mustDo(t, e.nl.LinkDel(host3))

	gcJSON := e.weftJSON("1.1.0", map[string]any{"cni.dev/valid-attachments": []map[string]string{{"containerID": rts[0].ContainerID, "ifname": "eth0"}}})
	// Without CAP_NET_ADMIN: the veths of pods 1 and 2 cannot go, so
	// their records stay; pod 3's record goes.
	var out []byte
	err = e.inNode(func() error {
		cmd := exec.Command("setpriv", "--inh-caps=-net_admin", "--ambient-caps=-net_admin", "--bounding-set=-net_admin", filepath.Join(pluginDir, "weft"))
		cmd.Env = cniEnv("GC", "", "", "", pluginDir)
		cmd.Stdin = bytes.NewReader(gcJSON)
		var err error
		out, err = cmd.Output()
		return err
	})
	if err == nil {
		t.Fatalf("GC without CAP_NET_ADMIN succeeded: %s", out)
	}
	ce := cniError(t, out)
	for _, i := range []int{1, 2} {
		if want := "delete veth " + cni.HostVethName(rts[i].ContainerID, "eth0") + " (its address record is kept for the next GC)"; ce.Code != cni.CodeGC || !strings.Contains(ce.Msg, want) {
			t.Errorf("GC: code %d %q, want code %d with %q", ce.Code, ce.Msg, cni.CodeGC, want)
		}
	}
	wantLinks := func(ids ...int) []string {
		out := []string{foreign, peer}
		for _, i := range ids {
			out = append(out, cni.HostVethName(rts[i].ContainerID, "eth0"))
		}
		slices.Sort(out)
		return out
	}
	holds := func(want ...int) {
		t.Helper()
		var got []int
		for i, rt := range rts {
			if slices.ContainsFunc(e.records(), func(r string) bool { return strings.HasPrefix(r, ipamKey(rt.ContainerID)) }) {
				got = append(got, i)
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("pods with records (-want +got):\n%s", diff)
		}
	}
	holds(0, 1, 2)
	if diff := cmp.Diff(wantLinks(0, 1, 2), e.links()); diff != "" {
		t.Errorf("links after the failed GC (-want +got):\n%s", diff)
	}
	// The next GC, with the right to delete links, finishes the job and
	// leaves the other network's veth alone.
	out, err = e.execPlugin(pluginDir, cniEnv("GC", "", "", "", pluginDir), gcJSON)
	if err != nil {
		t.Fatalf("GC: %v %s", err, out)
	}
	holds(0)
	if diff := cmp.Diff(wantLinks(0), e.links()); diff != "" {
		t.Errorf("links after GC (-want +got):\n%s", diff)
	}
	// Even with nothing valid, the other network's veth stays.
	if err := e.inNode(func() error { return e.newCNI().GCNetworkList(context.Background(), l, &libcni.GCArgs{}) }); err != nil {
		t.Fatalf("GC (none valid): %v", err)
	}
	holds()
	if diff := cmp.Diff(wantLinks(), e.links()); diff != "" {
		t.Errorf("links after GC with nothing valid (-want +got):\n%s", diff)
	}
}

func ipamKey(containerID string) string {
	return ipam.Key(containerID, "eth0")
}
