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
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"
	"go.uber.org/goleak"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/cni/antispoof"
	"github.com/weftnet/weft/cni/gate"
	"github.com/weftnet/weft/e2e/netnstest"
	"github.com/weftnet/weft/subnet"
)

// The privileged tests run the plugin the way a runtime does: libcni
// executes the binary, from a thread that sits in a node namespace the test
// created, so the plugin builds its bridge there and never in the root
// namespace. The binaries are built once per package run.
//
//	      node namespace (weftd's view)              pod namespaces
//	  wbXXXXXX bridge 10.244.3.1/24 fd10:244:0:3::1/64
//	     ├── weftNNNNNNNN ───────────────────────── eth0 10.244.3.N
//	     └── weftMMMMMMMM ───────────────────────── eth0 10.244.3.M

var (
	// pluginDir holds the production build of the plugin ("weft").
	pluginDir string
	// hookDir holds a build with the cnitesthook tag (sleep points).
	hookDir  string
	buildErr error
)

const debianCNIDir = "/usr/lib/cni"

func TestMain(m *testing.M) {
	code := func() int {
		if netnstest.Privileged() { // the unit tier and fuzzing need no plugin binary
			tmp, err := os.MkdirTemp("", "weft-cni-bin-")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(tmp)
			pluginDir = filepath.Join(tmp, "prod")
			hookDir = filepath.Join(tmp, "hook")
			buildErr = buildPlugin(pluginDir)
			if buildErr == nil {
				buildErr = buildPlugin(hookDir, "-tags", "cnitesthook")
			}
		}
		return m.Run()
	}()
	// ADD runs a goroutine of its own (see Plugin.Add); the tests run
	// the verbs in process too.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// buildPlugin builds the plugin into dir as `make build` does (static, no
// cgo: that alone saves about a millisecond of process start per call).
func buildPlugin(dir string, flags ...string) error {
	args := append([]string{"build", "-trimpath", "-ldflags", "-s -w"}, flags...)
	args = append(args, "-o", filepath.Join(dir, "weft"), "github.com/weftnet/weft/cni/cmd/weft")
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build the plugin: %v\n%s", err, out)
	}
	return nil
}

// testEnv is one node namespace with its subnet file, data directory,
// libcni result cache and bridge name.
type testEnv struct {
	t          testing.TB
	node       *netnstest.NS
	nl         *netlink.Handle
	dir        string
	subnetFile string
	dataDir    string
	bridge     string
	cni        *libcni.CNIConfig
	binDir     string
}

var defaultSubnet = subnet.SubnetFile{
	Network:     netip.MustParsePrefix("10.244.0.0/16"),
	Subnet:      netip.MustParsePrefix("10.244.3.1/24"),
	IPv6Network: netip.MustParsePrefix("fd10:244::/56"),
	IPv6Subnet:  netip.MustParsePrefix("fd10:244:0:3::1/64"),
	MTU:         1450,
	IPMasq:      true,
}

func newEnv(t testing.TB) *testEnv {
	t.Helper()
	netnstest.SkipUnlessRoot(t)
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	dir := t.TempDir()
	e := &testEnv{
		t:          t,
		node:       netnstest.NewNS(t, "weftcni-node"),
		dir:        dir,
		subnetFile: filepath.Join(dir, "subnet.env"),
		dataDir:    filepath.Join(dir, "data"),
		bridge:     "wb" + netnstest.Suffix(6),
		binDir:     pluginDir,
	}
	e.nl = e.node.Netlink(t)
	e.cni = e.newCNI()
	e.writeSubnet(defaultSubnet)
	return e
}

// newCNI returns a libcni client with its own, empty result cache. The exec
// is given explicitly: libcni fills in a nil one lazily, which races when
// workers share the client.
func (e *testEnv) newCNI() *libcni.CNIConfig {
	cache, err := os.MkdirTemp(e.dir, "cache-")
	if err != nil {
		e.t.Fatal(err)
	}
	exec := &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}, PluginDecoder: version.PluginDecoder{}}
	return libcni.NewCNIConfigWithCacheDir([]string{e.binDir, debianCNIDir}, cache, exec)
}

func (e *testEnv) writeSubnet(f subnet.SubnetFile) {
	e.t.Helper()
	if err := subnet.WriteSubnetFile(e.subnetFile, &f); err != nil {
		e.t.Fatal(err)
	}
}

// weftConf returns the weft plugin's config object with extra keys merged.
func (e *testEnv) weftConf(extra map[string]any) map[string]any {
	m := map[string]any{
		"type":       "weft",
		"subnetFile": e.subnetFile,
		"dataDir":    e.dataDir,
		"bridge":     e.bridge,
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// confList builds a conflist named "weftnet" at cniVersion with plugins.
func (e *testEnv) confList(cniVersion string, plugins ...map[string]any) *libcni.NetworkConfigList {
	e.t.Helper()
	b, err := json.Marshal(map[string]any{"cniVersion": cniVersion, "name": "weftnet", "plugins": plugins})
	if err != nil {
		e.t.Fatal(err)
	}
	l, err := libcni.ConfListFromBytes(b)
	if err != nil {
		e.t.Fatalf("conflist: %v", err)
	}
	return l
}

// exampleConfList loads etc/cni/10-weft.conflist with the weft entry
// pointed at this environment's subnet file, data directory and bridge.
func (e *testEnv) exampleConfList(t testing.TB) *libcni.NetworkConfigList {
	t.Helper()
	b, err := os.ReadFile("../etc/cni/10-weft.conflist")
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	plugins := raw["plugins"].([]any)
	weft := plugins[0].(map[string]any)
	for k, v := range e.weftConf(nil) {
		weft[k] = v
	}
	raw["name"] = "weftnet" // the store directory the helpers inspect
	if b, err = json.Marshal(raw); err != nil {
		t.Fatal(err)
	}
	l, err := libcni.ConfListFromBytes(b)
	if err != nil {
		t.Fatalf("example conflist: %v", err)
	}
	return l
}

// inNode runs fn on a thread inside the node namespace; processes fn
// starts (libcni execs the plugin from the calling thread) start there.
func (e *testEnv) inNode(fn func() error) error {
	return e.node.Do(fn)
}

// add runs ADD through libcni; the result is converted to the current
// type (see addRaw for the version the plugin chain returned).
func (e *testEnv) add(l *libcni.NetworkConfigList, rt *libcni.RuntimeConf) (*current.Result, error) {
	res, err := e.addRaw(l, rt)
	if err != nil {
		return nil, err
	}
	return current.NewResultFromResult(res)
}

func (e *testEnv) addRaw(l *libcni.NetworkConfigList, rt *libcni.RuntimeConf) (res types.Result, err error) {
	err = e.inNode(func() (err error) {
		res, err = e.cni.AddNetworkList(context.Background(), l, rt)
		return err
	})
	return res, err
}

func (e *testEnv) del(l *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	return e.inNode(func() error { return e.cni.DelNetworkList(context.Background(), l, rt) })
}

func (e *testEnv) check(l *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	return e.inNode(func() error { return e.cni.CheckNetworkList(context.Background(), l, rt) })
}

// runtimeConf returns the runtime config of a pod in namespace pod.
func runtimeConf(id string, pod *netnstest.NS) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: "/run/netns/" + pod.Name, IfName: "eth0"}
}

// records returns the names of the record files in the network's store
// (everything but the lock and the round-robin pointers).
func (e *testEnv) records() []string {
	e.t.Helper()
	ents, err := os.ReadDir(filepath.Join(e.dataDir, "weftnet"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, d := range ents {
		switch d.Name() {
		case "lock", "last4", "last6":
		default:
			out = append(out, d.Name())
		}
	}
	return out
}

// links returns the names of the links in the node namespace other than
// lo and the bridge.
func (e *testEnv) links() []string {
	e.t.Helper()
	ls, err := backend.LinkList(e.nl)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		if n := l.Attrs().Name; n != "lo" && n != e.bridge {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// assertClean fails unless the store holds no record and the node no veth.
func (e *testEnv) assertClean() {
	e.t.Helper()
	if r := e.records(); len(r) > 0 {
		e.t.Errorf("leaked records: %v", r)
	}
	if l := e.links(); len(l) > 0 {
		e.t.Errorf("leaked links in the node namespace: %v", l)
	}
	if r, err := antispoof.ReadRecords(antispoof.RecordDir(e.dataDir)); err == nil && len(r.Good)+len(r.Bad) > 0 {
		e.t.Errorf("leaked pod records: %v %v", r.Good, r.Bad)
	}
	var elems []antispoof.Element
	if err := e.inNode(func() (err error) { elems, err = antispoof.Elements(); return err }); err != nil {
		e.t.Errorf("list anti-spoofing entries: %v", err)
	}
	if len(elems) > 0 {
		e.t.Errorf("leaked anti-spoofing entries: %v", elems)
	}
	var held []gate.Pending
	if err := e.inNode(func() (err error) { held, err = listGate(); return err }); err != nil {
		e.t.Errorf("list the pod gate: %v", err)
	}
	if len(held) > 0 {
		e.t.Errorf("leaked held addresses: %v", held)
	}
}

// execPlugin runs the weft binary in binDir directly (no libcni) from the
// node namespace with the given CNI_* environment and stdin. It returns
// stdout and the exit error.
func (e *testEnv) execPlugin(binDir string, env []string, stdin []byte) ([]byte, error) {
	var out []byte
	err := e.inNode(func() error {
		cmd := exec.Command(filepath.Join(binDir, "weft"))
		cmd.Env = env
		cmd.Stdin = bytes.NewReader(stdin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		var err error
		out, err = cmd.Output()
		if err != nil && len(out) == 0 {
			return fmt.Errorf("%w: %s", err, stderr.String())
		}
		return err
	})
	return out, err
}

// weftJSON is the stdin of a direct weft call.
func (e *testEnv) weftJSON(cniVersion string, extra map[string]any) []byte {
	m := e.weftConf(extra)
	m["cniVersion"] = cniVersion
	m["name"] = "weftnet"
	b, err := json.Marshal(m)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func cniEnv(cmd, id, netns, ifname, path string) []string {
	env := []string{"CNI_COMMAND=" + cmd}
	if id != "" {
		env = append(env, "CNI_CONTAINERID="+id)
	}
	if netns != "" {
		env = append(env, "CNI_NETNS="+netns)
	}
	if ifname != "" {
		env = append(env, "CNI_IFNAME="+ifname)
	}
	if path != "" {
		env = append(env, "CNI_PATH="+path)
	}
	return env
}

// cniError decodes the error object a plugin printed.
func cniError(t testing.TB, out []byte) *types.Error {
	t.Helper()
	var e types.Error
	if err := json.Unmarshal(out, &e); err != nil {
		t.Fatalf("plugin output is not a CNI error: %v: %q", err, out)
	}
	return &e
}

func addrsOf(res *current.Result) []string {
	var out []string
	for _, ip := range res.IPs {
		out = append(out, ip.Address.String())
	}
	return out
}

func hasPrefix(ss []string, p string) bool {
	for _, s := range ss {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
