// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/weftnet/weft/subnet"
	subnetetcd "github.com/weftnet/weft/subnet/etcd"
	"github.com/weftnet/weft/subnet/etcd/etcdtest"
)

// etcdServer is a real etcd embedded in the test process, started by
// TestMain; every test uses its own key prefix.
var etcdServer *etcdtest.Server

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "weftctl-etcd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	etcdServer, err = etcdtest.Start(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	etcdServer.Stop()
	os.RemoveAll(dir)
	// The commands' etcd clients must all be closed by now, and the
	// server's goroutines ended with Stop.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// env is one test's etcd prefix and the connection flags that reach it.
type env struct {
	t      *testing.T
	prefix string
	store  *subnetetcd.Store
	cli    *clientv3.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	// Connection flags must not leak in from the environment of the run.
	for _, f := range []string{"etcd-endpoints", "etcd-prefix", "etcd-cafile", "etcd-certfile", "etcd-keyfile", "etcd-username", "etcd-password"} {
		t.Setenv(envName(f), "")
	}
	cli, err := etcdServer.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	prefix := fmt.Sprintf("/weftctl-test/%s-%08x", strings.ReplaceAll(t.Name(), "/", "_"), rand.Uint32())
	return &env{t: t, prefix: prefix, cli: cli, store: subnetetcd.New(subnetetcd.Config{Client: cli, Prefix: prefix, LeaseTTL: 2 * time.Hour})}
}

func (e *env) conn() []string {
	return []string{"--etcd-endpoints", etcdServer.Endpoint(), "--etcd-prefix", e.prefix}
}

// run runs a weftctl command in-process with the connection flags added
// after the subcommand words (the first nwords arguments).
func (e *env) run(cmd func(context.Context, []string, *cmdIO) error, nwords int, args []string, stdin string, tty bool) (string, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append(append(append([]string{}, args[:nwords]...), e.conn()...), args[nwords:]...)
	var out, errOut bytes.Buffer
	err := cmd(ctx, full, &cmdIO{in: strings.NewReader(stdin), out: &out, errOut: &errOut, tty: tty})
	return out.String(), err
}

func (e *env) config(args ...string) (string, error) {
	return e.run(runConfig, 1, args, "", false)
}

func (e *env) claim(name string, cfg *subnet.Config, pub string) *subnet.Lease {
	e.t.Helper()
	rec := subnet.Record{NodeName: name, NodeID: "id-" + name, PublicIP: netip.MustParseAddr(pub), BackendType: cfg.Backend.Type, Version: 1}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := e.store.Claim(ctx, subnet.ClaimRequest{Config: cfg, Record: rec})
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestConfigSetGet(t *testing.T) {
	e := newEnv(t)
	noConfig := "no network config at " + e.prefix + "/config: run weftctl config set --network <CIDR> (e.g. 10.244.0.0/16) to write one"

	t.Run("dry run from flags", func(t *testing.T) {
		out, err := e.config("set", "--network", "10.244.0.0/16", "--backend", "wireguard", "--persistent-keepalive", "25", "--dry-run")
		if err != nil {
			t.Fatal(err)
		}
		want := "{\n  \"Network\": \"10.244.0.0/16\",\n  \"Backend\": {\n    \"Type\": \"wireguard\",\n    \"PersistentKeepalive\": 25\n  }\n}\n"
		if out != want {
			t.Errorf("dry run printed:\n%s\nwant:\n%s", out, want)
		}
		if _, err := e.config("get"); errText(err) != noConfig {
			t.Errorf("get after a dry run: %v, want %q", err, noConfig)
		}
	})

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"flag of another backend", []string{"set", "--network", "10.244.0.0/16", "--backend", "wireguard", "--vni", "5"},
			"invalid network config: --vni is not valid for backend type wireguard"},
		{"host bits", []string{"set", "--network", "10.244.1.0/16"},
			"invalid network config: --network 10.244.1.0/16 has host bits set: write it as 10.244.0.0/16"},
		{"subnet len", []string{"set", "--network", "10.244.0.0/16", "--subnet-len", "16"},
			"invalid network config: --subnet-len 16 must be longer than the prefix of 10.244.0.0/16 (/16): with /16 there is only 1 subnet"},
		{"malformed", []string{"set", "--network", "10.244/16"},
			`invalid network config: --network "10.244/16" is not a valid CIDR (want an address and a prefix length, such as 10.244.0.0/16 or fd10:244::/56)`},
		{"file and flags", []string{"set", "-f", "x.json", "--network", "10.244.0.0/16"},
			"config set: give either -f or flags such as --network, not both"},
		{"nothing", []string{"set"},
			"config set: nothing to write: give --network (and other flags) or -f file.json; see weftctl config set -h"},
		{"no subcommand", []string{}, "config: no subcommand given (set or get)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if len(tt.args) == 0 {
				err = runConfig(context.Background(), nil, &cmdIO{out: &bytes.Buffer{}, errOut: &bytes.Buffer{}})
			} else {
				_, err = e.config(tt.args...)
			}
			if errText(err) != tt.want {
				t.Errorf("error %q\nwant  %q", errText(err), tt.want)
			}
		})
	}
	if _, err := e.config("get"); errText(err) != noConfig {
		t.Fatalf("an invalid config was written: %v", err)
	}

	t.Run("set and get", func(t *testing.T) {
		out, err := e.config("set", "--network", "10.244.0.0/16", "--ipv6-network", "fd10:244::/56", "--vni", "7", "--direct-routing")
		if err != nil {
			t.Fatal(err)
		}
		if want := "network config written to " + e.prefix + "/config\n"; out != want {
			t.Errorf("set printed %q, want %q", out, want)
		}
		out, err = e.config("get")
		if err != nil {
			t.Fatal(err)
		}
		want := "{\n  \"Network\": \"10.244.0.0/16\",\n  \"IPv6Network\": \"fd10:244::/56\",\n  \"Backend\": {\n    \"VNI\": 7,\n    \"DirectRouting\": true\n  }\n}\n"
		if out != want {
			t.Errorf("get printed:\n%s\nwant:\n%s", out, want)
		}
		out, err = e.config("get", "--effective")
		if err != nil {
			t.Fatal(err)
		}
		c, err := subnet.ParseConfig([]byte(out))
		if err != nil || c.SubnetLen != 24 || c.IPv6SubnetLen != 64 || c.Backend.Port != 8472 || c.Backend.VNI != 7 {
			t.Errorf("get --effective printed %s (%v)", out, err)
		}
	})

	t.Run("from a file and from stdin", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "net.json")
		os.WriteFile(path, []byte(`{"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw", "VNI": 1}}`), 0o644)
		_, err := e.config("set", "-f", path)
		if want := "invalid network config in " + path + ": Backend.VNI is not valid for backend type host-gw"; errText(err) != want {
			t.Errorf("set -f with a bad file: %v, want %q", err, want)
		}
		js := `{"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}`
		if _, err := e.run(runConfig, 1, []string{"set", "-f", "-"}, js, false); err != nil {
			t.Fatal(err)
		}
		out, err := e.config("get")
		if err != nil || out != js+"\n" {
			t.Errorf("get printed %q (%v), want the file as given", out, err)
		}
	})

	t.Run("invalid config in etcd", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		bad := `{"Network": "10.244.0.0/16", "SubnetLen": 8}`
		if _, err := e.cli.Put(ctx, e.prefix+"/config", bad); err != nil {
			t.Fatal(err)
		}
		out, err := e.config("get")
		if out != bad+"\n" {
			t.Errorf("get printed %q, want the stored value", out)
		}
		want := "the network config at " + e.prefix + "/config is invalid: SubnetLen 8 must be longer than the prefix of 10.244.0.0/16 (/16): with /8 there is only 1 subnet\n" +
			"weftd keeps using its last good config; fix it with weftctl config set"
		if errText(err) != want {
			t.Errorf("get: %q, want %q", errText(err), want)
		}
	})

	t.Run("refuses to strand live leases", func(t *testing.T) {
		if _, err := e.config("set", "--network", "10.244.0.0/16"); err != nil {
			t.Fatal(err)
		}
		cfg, _ := subnet.ParseConfig([]byte(`{"Network": "10.244.0.0/16"}`))
		l := e.claim("node-a", cfg, "198.18.0.2")
		_, err := e.config("set", "--network", "10.245.0.0/16")
		want := fmt.Sprintf("config set: 1 live lease(s) do not fit the new network: %s (node-a)\n", l.Subnet) +
			"changing the network under running nodes breaks their pods; drain and remove them first (weftctl leases rm <node>), or pass --force"
		if errText(err) != want {
			t.Errorf("set under a live lease: %q\nwant %q", errText(err), want)
		}
		if _, err := e.config("set", "--network", "10.245.0.0/16", "--force"); err != nil {
			t.Errorf("set --force: %v", err)
		}
	})

}

// TestConfigSetFamilyChange: adding or removing an address family while
// leases are live asks for --force and explains what running pods keep.
func TestConfigSetFamilyChange(t *testing.T) {
	e := newEnv(t)
	if _, err := e.config("set", "--network", "10.246.0.0/16"); err != nil {
		t.Fatal(err)
	}
	cfg, _ := subnet.ParseConfig([]byte(`{"Network": "10.246.0.0/16"}`))
	e.claim("node-f", cfg, "198.18.0.3")
	_, err := e.config("set", "--network", "10.246.0.0/16", "--ipv6-network", "fd10:246::/56")
	if got := errText(err); !strings.Contains(got, "adds IPv6 (fd10:246::/56)") ||
		!strings.Contains(got, "running pods keep the addresses they have") || !strings.Contains(got, "pass --force") {
		t.Errorf("adding IPv6 under a live lease: %q, want the family change explained and --force asked for", got)
	}
	if c, err := e.store.GetConfig(context.Background()); err != nil || c.IPv6Network.IsValid() {
		t.Errorf("config after the refused change: %+v (%v), want IPv4 only still", c, err)
	}
	if _, err := e.config("set", "--network", "10.246.0.0/16", "--ipv6-network", "fd10:246::/56", "--force"); err != nil {
		t.Errorf("set --force: %v", err)
	}
	// Same families, other settings: no question asked.
	if _, err := e.config("set", "--network", "10.246.0.0/16", "--ipv6-network", "fd10:246::/56", "--vni", "7"); err != nil {
		t.Errorf("set without a family change: %v", err)
	}
}

func TestConnFlagsFromEnv(t *testing.T) {
	e := newEnv(t)
	t.Setenv("WEFTCTL_ETCD_ENDPOINTS", etcdServer.Endpoint())
	t.Setenv("WEFTCTL_ETCD_PREFIX", e.prefix)
	// A data flag never comes from the environment.
	t.Setenv("WEFTCTL_NETWORK", "10.244.0.0/16")
	var out bytes.Buffer
	cio := &cmdIO{in: strings.NewReader(""), out: &out, errOut: &out}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := runConfig(ctx, []string{"set"}, cio)
	if want := "config set: nothing to write: give --network (and other flags) or -f file.json; see weftctl config set -h"; errText(err) != want {
		t.Errorf("set with WEFTCTL_NETWORK only: %v", err)
	}
	if err := runConfig(ctx, []string{"set", "--network", "10.244.0.0/16"}, cio); err != nil {
		t.Fatalf("set with connection from the environment: %v", err)
	}
	if _, err := e.store.GetConfig(ctx); err != nil {
		t.Errorf("config not written under the prefix from WEFTCTL_ETCD_PREFIX: %v", err)
	}
	// A flag beats the environment.
	t.Setenv("WEFTCTL_ETCD_ENDPOINTS", "http://127.0.0.1:1")
	if err := runConfig(ctx, []string{"get", "--etcd-endpoints", etcdServer.Endpoint()}, cio); err != nil {
		t.Errorf("get with --etcd-endpoints overriding the environment: %v", err)
	}
	// An unreachable etcd gets an error that says what to check.
	start := time.Now()
	err = runConfig(ctx, []string{"get"}, cio)
	if err == nil || !strings.Contains(err.Error(), "cannot reach etcd at http://127.0.0.1:1: check --etcd-endpoints (or WEFTCTL_ETCD_ENDPOINTS) and that etcd runs") {
		t.Errorf("get from a dead endpoint: %v", err)
	}
	t.Logf("dead endpoint reported after %.1f s", time.Since(start).Seconds())
}

// TestLeasesRejected: records the store rejects are named on stderr with
// the reason; stdout keeps only the leases.
func TestLeasesRejected(t *testing.T) {
	e := newEnv(t)
	cfg, _ := subnet.ParseConfig([]byte(`{"Network": "10.244.0.0/16"}`))
	a := e.claim("node-a", cfg, "198.18.0.2")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A key and a record subnet that are not node-a's (its subnet is
	// drawn at random: writing over its key would leave no lease).
	var free []int
	for i := 8; len(free) < 2; i++ {
		if a.Subnet != netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", i)) {
			free = append(free, i)
		}
	}
	key, recSubnet := fmt.Sprintf("10.244.%d.0", free[1]), fmt.Sprintf("10.244.%d.0", free[0])
	if _, err := e.cli.Put(ctx, e.prefix+"/leases/"+key+"-24", `{"nodeName":"x","nodeID":"y","subnet":"`+recSubnet+`/24"}`); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	err := runLeases(ctx, append(e.conn(), "-o", "json"), &cmdIO{in: strings.NewReader(""), out: &out, errOut: &errOut})
	if err != nil {
		t.Fatal(err)
	}
	var leases []leaseJSON
	if err := json.Unmarshal(out.Bytes(), &leases); err != nil || len(leases) != 1 || leases[0].Subnet != a.Subnet {
		t.Errorf("stdout: %v, %s", err, out.String())
	}
	want := "rejected " + e.prefix + "/leases/" + key + "-24: record's subnet is " + recSubnet + "/24, not the key's subnet " + key + "/24\n"
	if errOut.String() != want {
		t.Errorf("stderr %q, want %q", errOut.String(), want)
	}
}

// TestConnNoDowngrade: weftctl refuses credentials with a plain endpoint
// (it shares subnet/etcd's client), whether they come from flags or the
// environment, and says what to do.
func TestConnNoDowngrade(t *testing.T) {
	newEnv(t)
	var out bytes.Buffer
	cio := &cmdIO{in: strings.NewReader(""), out: &out, errOut: &out}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	want := "etcd endpoint " + etcdServer.Endpoint() + " does not use TLS, but credentials are given (--etcd-username/--etcd-password)"
	err := runConfig(ctx, []string{"get", "--etcd-endpoints", etcdServer.Endpoint(), "--etcd-username", "weft", "--etcd-password", "pw"}, cio)
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "or drop the credentials") {
		t.Errorf("get with a password over http: %v\nwant %s…", err, want)
	}
	t.Setenv("WEFTCTL_ETCD_CAFILE", "/nonexistent/ca.pem")
	if err := runLeases(ctx, []string{"--etcd-endpoints", etcdServer.Endpoint()}, cio); err == nil || !strings.Contains(err.Error(), "(--etcd-cafile)") {
		t.Errorf("leases with WEFTCTL_ETCD_CAFILE and an http endpoint: %v", err)
	}
}

var ttlCell = regexp.MustCompile(`\b1h5\dm\b`)

func TestLeasesList(t *testing.T) {
	e := newEnv(t)
	out, err := e.run(runLeases, 0, nil, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if want := "no leases under " + e.prefix + "/leases/\n"; out != want {
		t.Errorf("empty list printed %q, want %q", out, want)
	}
	cfg, _ := subnet.ParseConfig([]byte(`{"Network": "10.244.0.0/16", "IPv6Network": "fd10:244::/56"}`))
	a := e.claim("node-a", cfg, "198.18.0.2")
	b := e.claim("node-b", cfg, "198.18.0.3")

	out, err = e.run(runLeases, 0, nil, "", false)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("table:\n%s", out)
	}
	if got := strings.Fields(lines[0]); !cmp.Equal(got, []string{"SUBNET", "IPV6", "SUBNET", "NODE", "PUBLIC", "IP", "BACKEND", "TTL", "LEFT", "EPOCH"}) {
		t.Errorf("header %q", lines[0])
	}
	rows := map[string][]string{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		rows[f[2]] = f
	}
	for _, l := range []*subnet.Lease{a, b} {
		f := rows[l.Record.NodeName]
		want := []string{l.Subnet.String(), l.IPv6Subnet.String(), l.Record.NodeName, l.Record.PublicIP.String(), "vxlan"}
		if len(f) != 7 || !cmp.Equal(f[:5], want) || !ttlCell.MatchString(f[5]) || f[6] != fmt.Sprint(l.Epoch) {
			t.Errorf("row %q, want %v, a TTL of 1h5xm and epoch %d", f, want, l.Epoch)
		}
	}

	out, err = e.run(runLeases, 0, []string{"-o", "json"}, "", false)
	if err != nil {
		t.Fatal(err)
	}
	var got []leaseJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("-o json printed %s: %v", out, err)
	}
	if len(got) != 2 {
		t.Fatalf("-o json has %d leases", len(got))
	}
	for _, g := range got {
		want := a
		if g.Record.NodeName == "node-b" {
			want = b
		}
		if g.Subnet != want.Subnet || g.IPv6Subnet != want.IPv6Subnet || g.Record.NodeID != want.Record.NodeID || g.Epoch != want.Epoch ||
			g.TTLSeconds <= 7000 || g.TTLSeconds > 7200 || g.Expiry.IsZero() {
			t.Errorf("-o json lease %+v, want %+v with about 7200 s left", g, want)
		}
	}
	if _, err := e.run(runLeases, 0, []string{"-o", "yaml"}, "", false); errText(err) != `leases: -o "yaml": want table or json` {
		t.Errorf("-o yaml: %v", err)
	}
}

func TestLeasesRm(t *testing.T) {
	e := newEnv(t)
	cfg, _ := subnet.ParseConfig([]byte(`{"Network": "10.244.0.0/16"}`))
	a := e.claim("node-a", cfg, "198.18.0.2")
	b := e.claim("node-b", cfg, "198.18.0.3")
	count := func() int {
		v, err := e.store.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return len(v.Leases)
	}
	rm := func(stdin string, tty bool, args ...string) (string, error) {
		return e.run(runLeases, 1, append([]string{"rm"}, args...), stdin, tty)
	}

	if _, err := rm("", false, "node-a"); errText(err) != "leases rm: refusing to evict without confirmation: stdin is not a terminal; pass --yes" {
		t.Errorf("rm without a terminal: %v", err)
	}
	out, err := rm("n\n", true, "node-a")
	if errText(err) != "leases rm: not confirmed; nothing removed" || !strings.Contains(out, "About to evict 1 lease(s):") ||
		!strings.Contains(out, a.Subnet.String()) || !strings.HasSuffix(out, "Evict? [y/N] ") {
		t.Errorf("rm answered n: %q, %v", out, err)
	}
	if _, err := rm("", true, "node-a"); errText(err) != "leases rm: not confirmed; nothing removed" {
		t.Errorf("rm with no answer: %v", err)
	}
	if n := count(); n != 2 {
		t.Fatalf("%d leases after unconfirmed rm, want 2", n)
	}
	out, err = rm("y\n", true, a.Subnet.String())
	if err != nil {
		t.Fatal(err)
	}
	if want := "evicted " + a.Subnet.String() + " (node node-a); released/ tombstone written\n"; !strings.HasSuffix(out, want) {
		t.Errorf("rm printed %q, want it to end with %q", out, want)
	}
	resp, err := e.cli.Get(context.Background(), e.store.ReleasedKey(a.Subnet))
	if err != nil || len(resp.Kvs) != 1 {
		t.Errorf("no tombstone for %s: %v", a.Subnet, err)
	}
	// --yes after the argument, without a terminal.
	out, err = rm("", false, "node-b", "--yes")
	if err != nil || out != "evicted "+b.Subnet.String()+" (node node-b); released/ tombstone written\n" {
		t.Errorf("rm node-b --yes: %q, %v", out, err)
	}
	if n := count(); n != 0 {
		t.Errorf("%d leases left, want 0", n)
	}
	_, err = rm("", false, "--yes", "ghost")
	if want := `leases rm: no lease for "ghost": give a subnet (10.244.3.0/24) or a node name; weftctl leases lists them`; errText(err) != want {
		t.Errorf("rm ghost: %v", err)
	}
	if _, err := rm("", false, "--yes"); errText(err) != "leases rm: give exactly one subnet (10.244.3.0/24) or node name; weftctl leases lists them" {
		t.Errorf("rm without argument: %v", err)
	}
}
