// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package vagrant

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/e2e/netnstest"
)

// scripts returns the shell scripts of the setup.
func scripts(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, pat := range []string{"*.sh", "provision/*.sh"} {
		m, err := filepath.Glob(pat)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m...)
	}
	if len(out) < 5 {
		t.Fatalf("found only %v", out)
	}
	return out
}

func TestVagrantfileSyntax(t *testing.T) {
	ruby := netnstest.RequireTool(t, "ruby", "ruby")
	if out, err := exec.Command(ruby, "-c", "Vagrantfile").CombinedOutput(); err != nil {
		t.Errorf("ruby -c Vagrantfile: %v\n%s", err, out)
	}
	bad := filepath.Join(t.TempDir(), "Vagrantfile")
	os.WriteFile(bad, []byte("Vagrant.configure(\"2\") do |config|\n"), 0o644)
	if err := exec.Command(ruby, "-c", bad).Run(); err == nil {
		t.Error("ruby -c accepted a Vagrantfile with a missing end")
	}
}

// recorder mirrors testdata/vagrant_stub.rb's JSON.
type recorder struct {
	Attrs    map[string]any       `json:"attrs"`
	Calls    []call               `json:"calls"`
	Children map[string]*recorder `json:"children"`
}

type call struct {
	Name  string         `json:"name"`
	Args  []any          `json:"args"`
	KW    map[string]any `json:"kw"`
	Block *recorder      `json:"block"`
}

func (r *recorder) child(name string) *recorder {
	if r == nil || r.Children[name] == nil {
		return nil
	}
	return r.Children[name]
}

func (r *recorder) calls(name string) []call {
	if r == nil {
		return nil
	}
	var out []call
	for _, c := range r.Calls {
		if c.Name == name {
			out = append(out, c)
		}
	}
	return out
}

// evalVagrantfile runs the Vagrantfile at path through the stand-in and
// decodes what it configured.
func evalVagrantfile(t *testing.T, ruby, path string, env ...string) (*recorder, error) {
	t.Helper()
	// Evaluated as if it were the Vagrantfile here, wherever its text is.
	cmd := exec.Command(ruby, "testdata/vagrant_stub.rb", path, "Vagrantfile")
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, "WEFT_") }), env...)
	out, err := cmd.Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg += ": " + string(ee.Stderr)
		}
		return nil, fmt.Errorf("evaluate %s: %s", path, msg)
	}
	var cfgs []*recorder
	if err := json.Unmarshal(out, &cfgs); err != nil {
		return nil, fmt.Errorf("decode the stand-in's output: %w", err)
	}
	if len(cfgs) != 1 {
		return nil, fmt.Errorf("want one Vagrant.configure block, got %d", len(cfgs))
	}
	return cfgs[0], nil
}

// machine is what the checks need about one VM.
type machine struct {
	name, hostname string
	ip             netip.Addr
	provisions     map[string]call
}

// shapeProblems checks the configuration: three Debian machines on one
// private /24, the repository synced to /weft, etcd provisioned on the
// first, weft on all (told the first's address), and every script a
// provisioner names present.
func shapeProblems(cfg *recorder, repo string) []string {
	var bad []string
	add := func(format string, a ...any) { bad = append(bad, fmt.Sprintf(format, a...)) }
	vm := cfg.child("vm")
	if box, _ := vm.Attrs["box"].(string); !strings.HasPrefix(box, "debian/") {
		add("box %q is not a Debian box", box)
	}
	synced := false
	for _, c := range vm.calls("synced_folder") {
		if len(c.Args) == 2 && c.Args[1] == "/weft" {
			synced = c.Args[0] == repo && c.KW["type"] == "rsync"
			excl, _ := c.KW["rsync__exclude"].([]any)
			if !slices.Contains(excl, any("e2e/vagrant/.vagrant/")) {
				add("the rsync share must exclude e2e/vagrant/.vagrant/ (it holds the VMs' SSH keys)")
			}
		}
	}
	if !synced {
		add("the repository (%s) must be synced to /weft with rsync", repo)
	}
	var ms []machine
	for _, d := range vm.calls("define") {
		m := machine{provisions: map[string]call{}}
		m.name, _ = d.Args[0].(string)
		nvm := d.Block.child("vm")
		m.hostname, _ = nvm.Attrs["hostname"].(string)
		for _, n := range nvm.calls("network") {
			if len(n.Args) == 1 && n.Args[0] == "private_network" {
				s, _ := n.KW["ip"].(string)
				m.ip, _ = netip.ParseAddr(s)
			}
		}
		for _, p := range nvm.calls("provision") {
			name, _ := p.Args[0].(string)
			m.provisions[name] = p
			if p.KW["type"] != "shell" {
				add("%s: provisioner %s is not a shell provisioner", m.name, name)
			}
			path, _ := p.KW["path"].(string)
			if st, err := os.Stat(path); err != nil || st.Mode()&0o111 == 0 {
				add("%s: provisioner %s: script %q missing or not executable", m.name, name, path)
			}
		}
		ms = append(ms, m)
	}
	if len(ms) != 3 {
		add("want 3 machines, got %d", len(ms))
		return bad
	}
	first := ms[0]
	for i, m := range ms {
		if m.name != fmt.Sprintf("weft%d", i+1) || m.hostname != m.name {
			add("machine %d: name %q hostname %q, want weft%d", i, m.name, m.hostname, i+1)
		}
		if !m.ip.Is4() || netip.PrefixFrom(m.ip, 24).Masked() != netip.PrefixFrom(first.ip, 24).Masked() {
			add("%s: private address %v is not in the first machine's /24 (%v)", m.name, m.ip, first.ip)
		}
		for _, o := range ms[:i] {
			if o.ip == m.ip {
				add("%s and %s share the address %v", o.name, m.name, m.ip)
			}
		}
		w, ok := m.provisions["weft"]
		if !ok {
			add("%s: no weft provisioner", m.name)
		} else if args := fmt.Sprint(w.KW["args"]); args != fmt.Sprintf("[%s %s]", m.ip, first.ip) {
			add("%s: weft.sh args %s, want [its address, etcd's address %s]", m.name, args, first.ip)
		}
		if _, ok := m.provisions["etcd"]; ok != (i == 0) {
			add("%s: etcd must be provisioned on the first machine only", m.name)
		}
	}
	if e, ok := first.provisions["etcd"]; ok {
		if args, _ := e.KW["args"].([]any); len(args) != 2 || args[0] != first.ip.String() {
			add("etcd.sh args %v, want [%s BACKEND]", e.KW["args"], first.ip)
		}
	}
	return bad
}

func TestVagrantfileShape(t *testing.T) {
	ruby := netnstest.RequireTool(t, "ruby", "ruby")
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := evalVagrantfile(t, ruby, "Vagrantfile")
	if err != nil {
		t.Fatal(err)
	}
	if p := shapeProblems(cfg, repo); len(p) > 0 {
		t.Errorf("Vagrantfile:\n%s", strings.Join(p, "\n"))
	}
	t.Run("backend and network from the environment", func(t *testing.T) {
		cfg, err := evalVagrantfile(t, ruby, "Vagrantfile", "WEFT_BACKEND=wireguard", "WEFT_VAGRANT_NET=198.18.7")
		if err != nil {
			t.Fatal(err)
		}
		if p := shapeProblems(cfg, repo); len(p) > 0 {
			t.Errorf("Vagrantfile:\n%s", strings.Join(p, "\n"))
		}
		e := cfg.child("vm").calls("define")[0].Block.child("vm").calls("provision")[0]
		if got := fmt.Sprint(e.KW["args"]); got != "[198.18.7.11 wireguard]" {
			t.Errorf("etcd.sh args %s, want [198.18.7.11 wireguard]", got)
		}
		if _, err := evalVagrantfile(t, ruby, "Vagrantfile", "WEFT_BACKEND=vxlna"); err == nil || !strings.Contains(err.Error(), "use vxlan, wireguard or host-gw") {
			t.Errorf("a misspelt backend was not refused: %v", err)
		}
	})

	orig, err := os.ReadFile("Vagrantfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, old, new, want string }{
		{"two nodes", "NODES = 3", "NODES = 2", "want 3 machines"},
		{"missing script", `path: "provision/weft.sh"`, `path: "provision/weftd.sh"`, `script "provision/weftd.sh" missing`},
		{"etcd everywhere", "if i == 1\n", "if i >= 1\n", "weft2: etcd must be provisioned on the first machine only"},
		{"keys synced", `"e2e/vagrant/.vagrant/", `, "", "must exclude e2e/vagrant/.vagrant/"},
	} {
		t.Run("can fail/"+tc.name, func(t *testing.T) {
			edited := strings.Replace(string(orig), tc.old, tc.new, 1)
			if edited == string(orig) {
				t.Fatalf("edit %q did not apply", tc.old)
			}
			path := filepath.Join(t.TempDir(), "Vagrantfile")
			if err := os.WriteFile(path, []byte(edited), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := evalVagrantfile(t, ruby, path)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(shapeProblems(cfg, repo), "\n"); !strings.Contains(got, tc.want) {
				t.Errorf("want a problem containing %q, got:\n%s", tc.want, got)
			}
		})
	}
}

func TestShellcheck(t *testing.T) {
	sc := netnstest.RequireTool(t, "shellcheck", "shellcheck")
	for _, s := range scripts(t) {
		t.Run(s, func(t *testing.T) {
			if out, err := exec.Command(sc, "--severity=style", "--external-sources", s).CombinedOutput(); err != nil {
				t.Errorf("shellcheck %s: %v\n%s", s, err, out)
			}
			st, err := os.Stat(s)
			if err != nil || st.Mode()&0o111 == 0 {
				t.Errorf("%s is not executable", s)
			}
		})
	}
	t.Run("can fail", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.sh")
		os.WriteFile(bad, []byte("#!/usr/bin/env bash\nrm -rf $1/*\n"), 0o755)
		if err := exec.Command(sc, bad).Run(); err == nil {
			t.Error("shellcheck accepted an unquoted rm -rf $1/*")
		}
	})
}

// nodeCommands returns the commands node.sh's case statement handles.
func nodeCommands(text string) []string {
	var cmds []string
	for _, m := range regexp.MustCompile(`(?m)^([a-z-]+)\)$`).FindAllStringSubmatch(text, -1) {
		cmds = append(cmds, m[1])
	}
	return cmds
}

// calledCommands returns the node.sh commands check.sh calls through on().
func calledCommands(text string) []string {
	var cmds []string
	re := regexp.MustCompile(`\bon (?:"[^"]*"|\S+) ([a-z-]+)`)
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, m := range re.FindAllStringSubmatch(line, -1) {
			if !slices.Contains(cmds, m[1]) {
				cmds = append(cmds, m[1])
			}
		}
	}
	return cmds
}

// TestCheckUsesNodeCommands keeps check.sh and node.sh in step.
func TestCheckUsesNodeCommands(t *testing.T) {
	node, err := os.ReadFile("node.sh")
	if err != nil {
		t.Fatal(err)
	}
	check, err := os.ReadFile("check.sh")
	if err != nil {
		t.Fatal(err)
	}
	have := nodeCommands(string(node))
	unknown := func(check string) []string {
		var out []string
		for _, c := range calledCommands(check) {
			if !slices.Contains(have, c) {
				out = append(out, c)
			}
		}
		return out
	}
	if called := calledCommands(string(check)); len(called) < 6 {
		t.Fatalf("found only %v in check.sh", called)
	}
	if u := unknown(string(check)); len(u) > 0 {
		t.Errorf("check.sh calls node.sh commands %v, which node.sh does not handle (it has %v)", u, have)
	}
	if u := unknown(string(check) + "\ncheck \"x\" on \"$node\" pod-flap p\n# on weft1 ignored\n"); !slices.Equal(u, []string{"pod-flap"}) {
		t.Errorf("the check missed an unknown command: %v", u)
	}
	if got := nodeCommands("case $x in\nping)\n\t;;\nmtu)\n"); !slices.Equal(got, []string{"ping", "mtu"}) {
		t.Errorf("nodeCommands = %v", got)
	}
}

// unitPathProblems checks that the provisioning script installs weft where
// the systemd unit expects it: the binary at ExecStart's path, the
// environment file at EnvironmentFile's path.
func unitPathProblems(unit, script string) []string {
	var bad []string
	for _, l := range strings.Split(unit, "\n") {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			continue
		}
		switch k {
		case "ExecStart":
			if dir := filepath.Dir(v) + "/"; !strings.Contains(script, `"$src/bin/weftd" "$src/bin/weftctl" `+dir) {
				bad = append(bad, fmt.Sprintf("the unit runs %s, but weft.sh does not install weftd into %s", v, dir))
			}
		case "EnvironmentFile":
			if p := strings.TrimPrefix(v, "-"); !strings.Contains(script, "} >"+p) {
				bad = append(bad, fmt.Sprintf("the unit reads %s, but weft.sh does not write it", p))
			}
		}
	}
	return bad
}

func TestProvisionMatchesUnit(t *testing.T) {
	unit, err := os.ReadFile("../../etc/systemd/weftd.service")
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile("provision/weft.sh")
	if err != nil {
		t.Fatal(err)
	}
	if bad := unitPathProblems(string(unit), string(script)); len(bad) > 0 {
		t.Error(strings.Join(bad, "\n"))
	}
	moved := strings.Replace(string(unit), "ExecStart=/usr/local/bin/weftd", "ExecStart=/usr/bin/weftd", 1)
	moved = strings.Replace(moved, "EnvironmentFile=-/etc/weft/weftd.env", "EnvironmentFile=-/etc/default/weftd", 1)
	if bad := unitPathProblems(moved, string(script)); len(bad) != 2 {
		t.Errorf("moved paths not reported: %q", bad)
	}
}
