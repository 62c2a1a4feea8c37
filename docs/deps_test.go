// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package docs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A dep is one package a binary links, as `go list -deps` reports it.
type dep struct {
	pkg, module string
	imports     []string
}

// A depRule names what a binary must not link: "pkg:P" the package P,
// "pkg:P/..." P and every package below it, "mod:M" every package of the
// module M, "mod:M/..." of every module whose path starts with M/.
type depRule string

func (r depRule) match(d dep) bool {
	kind, path, _ := strings.Cut(string(r), ":")
	subject := d.pkg
	if kind == "mod" {
		subject = d.module
	}
	if base, ok := strings.CutSuffix(path, "/..."); ok {
		if kind == "mod" {
			return strings.HasPrefix(subject, base+"/")
		}
		return subject == base || strings.HasPrefix(subject, base+"/")
	}
	return subject == path
}

// binaryDeps lists the packages the main package pkg links for goos
// (cgo off, as the Makefile builds).
func binaryDeps(t *testing.T, pkg, goos string) []dep {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}\t{{with .Module}}{{.Path}}{{end}}\t{{join .Imports \" \"}}", pkg)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "GOOS="+goos, "CGO_ENABLED=0", "GOFLAGS=")
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list -deps %s (GOOS=%s): %v\n%s", pkg, goos, err, stderr)
	}
	var deps []dep
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			t.Fatalf("go list: unexpected line %q", line)
		}
		deps = append(deps, dep{pkg: f[0], module: f[1], imports: strings.Fields(f[2])})
	}
	if len(deps) < 10 {
		t.Fatalf("go list -deps %s listed only %d packages: %v", pkg, len(deps), deps)
	}
	return deps
}

// forbiddenDeps returns, sorted, each package of deps that a rule forbids,
// with the rule and a package that imports it.
func forbiddenDeps(deps []dep, rules []depRule) []string {
	var bad []string
	for _, d := range deps {
		for _, r := range rules {
			if !r.match(d) {
				continue
			}
			var by []string
			for _, o := range deps {
				if slices.Contains(o.imports, d.pkg) {
					by = append(by, o.pkg)
				}
			}
			bad = append(bad, fmt.Sprintf("%s (%s), imported by %s", d.pkg, r, strings.Join(by, ", ")))
			break
		}
	}
	slices.Sort(bad)
	return bad
}

// binaryRules says what each shipped binary must not link. weftctl runs on
// operators' laptops: no test code, no lab, no daemon runtime, no data
// plane. The CNI plugin runs once per pod: no store client or gossip.
var binaryRules = []struct {
	pkg   string
	goos  []string
	rules []depRule
}{
	{"./daemon/cmd/weftctl", []string{"linux", "darwin"}, []depRule{
		"pkg:testing",
		"pkg:github.com/weftnet/weft/e2e/...",
		"pkg:github.com/weftnet/weft/daemon",
		"mod:github.com/hashicorp/memberlist",
		"mod:github.com/google/nftables",
		"mod:golang.zx2c4.com/wireguard", // the userspace device; wgctrl is its own module
		"mod:k8s.io/kubernetes",
	}},
	{"./cni/cmd/weft", []string{"linux"}, []depRule{
		"mod:go.etcd.io/...",
		"mod:github.com/hashicorp/memberlist",
		"mod:k8s.io/client-go",
		"mod:k8s.io/kubernetes",
	}},
}

// TestBinaryDeps keeps weftctl and the CNI plugin free of what they must
// not link (see binaryRules).
func TestBinaryDeps(t *testing.T) {
	for _, b := range binaryRules {
		for _, goos := range b.goos {
			t.Run(filepath.Base(b.pkg)+"/"+goos, func(t *testing.T) {
				for _, bad := range forbiddenDeps(binaryDeps(t, b.pkg, goos), b.rules) {
					t.Errorf("%s links %s", b.pkg, bad)
				}
			})
		}
	}

	t.Run("can fail", func(t *testing.T) {
		// The same listing of binaries that do link what the rules forbid.
		weftctlRules, cniRules := binaryRules[0].rules, binaryRules[1].rules
		for _, tc := range []struct {
			pkg   string
			rules []depRule
			want  []string // packages that must be reported
		}{
			// weftd links the daemon, gossip, nftables and the WireGuard device.
			{"./daemon/cmd/weftd", weftctlRules, []string{
				"github.com/weftnet/weft/daemon ", "github.com/hashicorp/memberlist ",
				"github.com/google/nftables ", "golang.zx2c4.com/wireguard/device ",
			}},
			// The lab links the e2e library; weft-etcd links etcd.
			{"./e2e/cmd/weft-lab", weftctlRules, []string{"github.com/weftnet/weft/e2e "}},
			{"./e2e/cmd/weft-etcd", cniRules, []string{"go.etcd.io/etcd/server/v3/embed "}},
		} {
			bad := forbiddenDeps(binaryDeps(t, tc.pkg, "linux"), tc.rules)
			for _, w := range tc.want {
				if !slices.ContainsFunc(bad, func(b string) bool { return strings.HasPrefix(b, w) }) {
					t.Errorf("%s: %q not reported among:\n%s", tc.pkg, w, strings.Join(bad, "\n"))
				}
			}
		}
		// And a listing made up for the purpose: testing and a k8s
		// package are reported, wgctrl (not the device) and a package
		// merely named like a forbidden one are not.
		deps := []dep{
			{pkg: "github.com/weftnet/weft/daemon/cmd/weftctl", imports: []string{"testing", "k8s.io/kubernetes/pkg/api", "golang.zx2c4.com/wireguard/wgctrl", "github.com/weftnet/weft/daemon/status", "github.com/weftnet/weft/e2etools"}},
			{pkg: "testing"},
			{pkg: "k8s.io/kubernetes/pkg/api", module: "k8s.io/kubernetes"},
			{pkg: "golang.zx2c4.com/wireguard/wgctrl", module: "golang.zx2c4.com/wireguard/wgctrl"},
			{pkg: "github.com/weftnet/weft/daemon/status", module: "github.com/weftnet/weft"},
			{pkg: "github.com/weftnet/weft/e2etools", module: "github.com/weftnet/weft"},
		}
		got := forbiddenDeps(deps, weftctlRules)
		want := []string{
			"k8s.io/kubernetes/pkg/api (mod:k8s.io/kubernetes), imported by github.com/weftnet/weft/daemon/cmd/weftctl",
			"testing (pkg:testing), imported by github.com/weftnet/weft/daemon/cmd/weftctl",
		}
		if !slices.Equal(got, want) {
			t.Errorf("forbiddenDeps = %q, want %q", got, want)
		}
	})
}

// TestKubeAPILinked keeps weftd and weftctl to the two Kubernetes API
// groups they read (core/v1, networking/v1), off client-go's scheme of every
// group, its generated clients and its discovery client: each group linked
// registers its types when the binary starts, and their text stayed
// resident in weftd (docs/scale.md, "weftd's memory").
func TestKubeAPILinked(t *testing.T) {
	want := []string{"k8s.io/api/core/v1", "k8s.io/api/networking/v1"}
	for _, pkg := range []string{"./daemon/cmd/weftd", "./daemon/cmd/weftctl"} {
		t.Run(filepath.Base(pkg), func(t *testing.T) {
			deps := binaryDeps(t, pkg, "linux")
			var groups []string
			for _, d := range deps {
				if strings.HasPrefix(d.pkg, "k8s.io/api/") {
					groups = append(groups, d.pkg)
				}
			}
			slices.Sort(groups)
			if !slices.Equal(groups, want) {
				t.Errorf("%s links the Kubernetes API packages %q, want only %q", pkg, groups, want)
			}
			for _, bad := range forbiddenDeps(deps, []depRule{
				"pkg:k8s.io/client-go/kubernetes/...",
				"pkg:k8s.io/client-go/discovery/...",
				"pkg:k8s.io/client-go/applyconfigurations/...",
			}) {
				t.Errorf("%s links %s", pkg, bad)
			}
		})
	}
}
