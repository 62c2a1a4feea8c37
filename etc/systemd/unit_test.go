// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package systemd

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/weftnet/weft/e2e/netnstest"

	"github.com/google/go-cmp/cmp"

	"github.com/weftnet/weft/daemon"
)

const (
	unitFile = "weftd.service"
	envFile  = "weftd.env"
	// execStart is where the unit expects the weftd binary.
	execStart = "/usr/local/bin/weftd"
)

// unitProblems runs systemd-analyze verify on the unit text (saved as
// weftd.service in a temporary directory) and returns every output line
// that mentions the unit, plus the exit status when it is not zero.
//
// verify checks that each command the unit runs exists and is executable.
// The real weftd is installed at /usr/local/bin/weftd, which does not exist
// on a build machine, so the ExecStart path (and only it) is pointed at an
// executable stand-in in the same temporary directory. Every other command
// is checked as written.
func unitProblems(t *testing.T, analyze, unit string) []string {
	t.Helper()
	path := writeUnit(t, unit)
	dir := filepath.Dir(path)
	cmd := exec.Command(analyze, "verify", "--man=no", path)
	// Keep the caller's log settings from changing what verify prints.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, "SYSTEMD_") })
	out, err := cmd.CombinedOutput()
	var problems []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, unitFile) || strings.Contains(line, dir) {
			problems = append(problems, line)
		}
	}
	if err != nil {
		problems = append(problems, "systemd-analyze verify: "+err.Error()+": "+strings.TrimSpace(string(out)))
	}
	return problems
}

// writeUnit saves the unit text as weftd.service in a temporary directory,
// with ExecStart pointed at an executable stand-in there (see
// unitProblems), and returns its path.
func writeUnit(t *testing.T, unit string) string {
	t.Helper()
	dir := t.TempDir()
	stub := filepath.Join(dir, "weftd")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	unit = strings.ReplaceAll(unit, "ExecStart="+execStart+"\n", "ExecStart="+stub+"\n")
	path := filepath.Join(dir, unitFile)
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// maxExposure is the highest overall exposure systemd-analyze security may
// give the unit (0 is fully locked down, 10 fully exposed; below 4.0 reads
// "OK"). weftd's unit scores 2.7: what is left open is what an overlay
// network daemon needs (host network, NET_ADMIN, /proc/sys/net).
const maxExposure = 3.0

var exposureLine = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

// exposure returns systemd-analyze security's offline score of the unit.
func exposure(t *testing.T, analyze, unit string) float64 {
	t.Helper()
	out, _ := exec.Command(analyze, "security", "--offline=true", "--no-pager", writeUnit(t, unit)).CombinedOutput()
	m := exposureLine.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in systemd-analyze security's output:\n%s", out)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSecurityExposure keeps the unit's sandboxing from eroding: systemd's
// own offline review must score it at most maxExposure.
func TestSecurityExposure(t *testing.T) {
	analyze := netnstest.RequireTool(t, "systemd-analyze", "systemd")
	unit := readFile(t, unitFile)
	if got := exposure(t, analyze, unit); got > maxExposure {
		t.Errorf("systemd-analyze security: exposure %.1f, want at most %.1f", got, maxExposure)
	}
	t.Run("can fail", func(t *testing.T) {
		var loose []string
		for _, l := range strings.Split(unit, "\n") {
			if k, _, _ := strings.Cut(l, "="); slices.Contains([]string{"CapabilityBoundingSet", "ProtectSystem", "SystemCallFilter", "User", "Group", "PrivateTmp", "ProtectHome"}, k) {
				continue
			}
			loose = append(loose, l)
		}
		got := exposure(t, analyze, strings.Join(loose, "\n"))
		t.Logf("exposure without the main protections: %.1f", got)
		if got <= maxExposure {
			t.Errorf("a unit without its capability bound, file system protection, system call filter and user scored %.1f", got)
		}
	})
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestVerify runs systemd-analyze verify on weftd.service and fails on any
// warning about the unit.
func TestVerify(t *testing.T) {
	analyze := netnstest.RequireTool(t, "systemd-analyze", "systemd")
	unit := readFile(t, unitFile)
	if !strings.Contains(unit, "ExecStart="+execStart+"\n") {
		t.Fatalf("%s: ExecStart must be %s", unitFile, execStart)
	}
	if p := unitProblems(t, analyze, unit); len(p) > 0 {
		t.Errorf("systemd-analyze verify %s:\n%s", unitFile, strings.Join(p, "\n"))
	}

	// The check must be able to fail: a misspelt key, a missing command and
	// a bad value are each reported.
	for _, tc := range []struct{ name, unit, want string }{
		{"unknown key", strings.Replace(unit, "[Service]\n", "[Service]\nRestartSecs=2\n", 1), "RestartSecs"},
		{"missing command", strings.Replace(unit, "ExecReload=/bin/sh", "ExecReload=/nonexistent/sh", 1), "/nonexistent/sh"},
		{"bad value", strings.Replace(unit, "Type=notify\n", "Type=notifyy\n", 1), "notifyy"},
	} {
		t.Run("can fail/"+tc.name, func(t *testing.T) {
			if tc.unit == unit {
				t.Fatal("the test's edit did not apply to the unit")
			}
			p := unitProblems(t, analyze, tc.unit)
			if !strings.Contains(strings.Join(p, "\n"), tc.want) {
				t.Errorf("verify did not report %q; problems: %q", tc.want, p)
			}
		})
	}
}

// parseUnit reads a unit file into section → key → values (a key may be
// given several times). Continuation lines are not used in our unit.
func parseUnit(t *testing.T, text string) map[string]map[string][]string {
	t.Helper()
	u := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, "\\") {
				t.Fatalf("unexpected unit line %q", line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// TestUnitEssentials pins what the unit must keep: readiness, restarts,
// the environment file, ordering, privileges and the directories weftd
// writes by default.
func TestUnitEssentials(t *testing.T) {
	u := parseUnit(t, readFile(t, unitFile))
	for _, tc := range []struct {
		section, key string
		want         []string
	}{
		{"Unit", "Wants", []string{"network-online.target"}},
		{"Unit", "After", []string{"network-online.target"}},
		{"Unit", "StartLimitIntervalSec", []string{"300"}},
		{"Unit", "StartLimitBurst", []string{"10"}},
		{"Service", "Type", []string{"notify"}},
		{"Service", "ExecStart", []string{execStart}},
		{"Service", "EnvironmentFile", []string{"-/etc/weft/weftd.env"}},
		{"Service", "Restart", []string{"always"}},
		{"Service", "RestartSec", []string{"5s"}},
		{"Service", "User", []string{"weft"}},
		{"Service", "Group", []string{"weft"}},
		{"Service", "CapabilityBoundingSet", []string{"CAP_NET_ADMIN CAP_NET_RAW"}},
		{"Service", "AmbientCapabilities", []string{"CAP_NET_ADMIN CAP_NET_RAW"}},
		{"Service", "NoNewPrivileges", []string{"yes"}},
		{"Service", "ProtectSystem", []string{"strict"}},
		{"Service", "ProtectHome", []string{"yes"}},
		{"Service", "PrivateTmp", []string{"yes"}},
		{"Service", "ProtectKernelTunables", []string{"no"}},
		{"Service", "DevicePolicy", []string{"closed"}},
		// "yes" would refuse the netlink library's setns(2) into weftd's
		// own network namespace.
		{"Service", "RestrictNamespaces", []string{"net"}},
		{"Service", "DeviceAllow", []string{"/dev/net/tun rw"}},
		{"Service", "RuntimeDirectory", []string{"weft wireguard"}},
		{"Service", "RuntimeDirectoryPreserve", []string{"yes"}},
		{"Service", "StateDirectory", []string{"weft"}},
		{"Install", "WantedBy", []string{"multi-user.target"}},
	} {
		if diff := cmp.Diff(tc.want, u[tc.section][tc.key]); diff != "" {
			t.Errorf("[%s] %s (-want +got):\n%s", tc.section, tc.key, diff)
		}
	}
	if _, ok := u["Service"]["PrivateDevices"]; ok {
		t.Error("PrivateDevices hides /dev/net/tun, which userspace WireGuard needs")
	}

	// weftd's default paths must be writable under ProtectSystem=strict:
	// inside the unit's RuntimeDirectory/StateDirectory.
	fs, _ := daemon.NewFlagSet("weftd")
	writable := []string{"/run/weft", "/run/wireguard", "/var/lib/weft"}
	for _, name := range []string{"subnet-file", "state-dir"} {
		def := fs.Lookup(name).DefValue
		ok := slices.ContainsFunc(writable, func(dir string) bool {
			return def == dir || strings.HasPrefix(def, dir+"/")
		})
		if !ok {
			t.Errorf("--%s default %q is outside the unit's writable directories %v", name, def, writable)
		}
	}
}

// envEntries returns the WEFTD_* variables of the example environment file
// (commented out or not) with their values.
func envEntries(text string) map[string]string {
	env := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimPrefix(strings.TrimSpace(sc.Text()), "#")
		if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, daemon.EnvPrefix) && !strings.ContainsAny(k, " \t") {
			env[k] = v
		}
	}
	return env
}

// envMismatches compares the example file's variables with the flag set:
// every flag must be there as its WEFTD_ variable, nothing else may be,
// and a variable shown with a value must show the flag's default. Values
// that are paths of examples (TLS files) are allowed where the default is
// empty.
func envMismatches(fs *flag.FlagSet, env map[string]string) []string {
	var bad []string
	seen := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		name := daemon.EnvName(f.Name)
		seen[name] = true
		v, ok := env[name]
		switch {
		case !ok:
			bad = append(bad, name+" (--"+f.Name+") is missing")
		case f.DefValue != "" && v != f.DefValue:
			bad = append(bad, name+"="+v+" but the default of --"+f.Name+" is "+f.DefValue)
		case f.DefValue == "" && v != "" && !strings.HasPrefix(v, "/etc/weft/"):
			bad = append(bad, name+"="+v+" but --"+f.Name+" has no default")
		}
	})
	for name := range env {
		if !seen[name] {
			bad = append(bad, name+" is not a weftd flag")
		}
	}
	slices.Sort(bad)
	return bad
}

// TestEnvFile checks the example environment file against weftd's flags.
func TestEnvFile(t *testing.T) {
	fs, _ := daemon.NewFlagSet("weftd")
	text := readFile(t, envFile)
	if bad := envMismatches(fs, envEntries(text)); len(bad) > 0 {
		t.Errorf("%s does not match weftd's flags:\n%s", envFile, strings.Join(bad, "\n"))
	}

	t.Run("can fail", func(t *testing.T) {
		env := envEntries(text)
		delete(env, "WEFTD_LEASE_TTL")
		env["WEFTD_NO_SUCH_FLAG"] = "1"
		env["WEFTD_ETCD_PREFIX"] = "/flannel"
		got := envMismatches(fs, env)
		want := []string{
			"WEFTD_ETCD_PREFIX=/flannel but the default of --etcd-prefix is /weft",
			"WEFTD_LEASE_TTL (--lease-ttl) is missing",
			"WEFTD_NO_SUCH_FLAG is not a weftd flag",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("mismatches (-want +got):\n%s", diff)
		}
	})

	// systemd's EnvironmentFile takes KEY=value lines only: no export, no
	// quotes needed, no shell expansion.
	for i, line := range bytes.Split([]byte(text), []byte("\n")) {
		s := strings.TrimSpace(string(line))
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if strings.HasPrefix(s, "export ") || strings.Contains(s, "$") {
			t.Errorf("%s:%d: %q is not a plain KEY=value line", envFile, i+1, s)
		}
	}
}

// TestSysusers creates the weft user from weft.sysusers in a temporary root
// with systemd-sysusers, as a package install would, and checks the result.
func TestSysusers(t *testing.T) {
	tool := netnstest.RequireTool(t, "systemd-sysusers", "systemd")
	create := func(t *testing.T, conf string) (string, error) {
		root := t.TempDir()
		if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(root, "weft.conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(tool, "--root="+root, path).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("%v: %s", err, out)
		}
		passwd, err := os.ReadFile(filepath.Join(root, "etc", "passwd"))
		return string(passwd), err
	}
	passwd, err := create(t, readFile(t, "weft.sysusers"))
	if err != nil {
		t.Fatalf("systemd-sysusers weft.sysusers: %v", err)
	}
	user := parseUnit(t, readFile(t, unitFile))["Service"]["User"]
	if len(user) != 1 || !strings.HasPrefix(passwd, user[0]+":") {
		t.Errorf("weft.sysusers creates %q, but the unit runs as %v", passwd, user)
	}
	if !strings.Contains(passwd, ":/var/lib/weft:/usr/sbin/nologin") {
		t.Errorf("the weft user should have home /var/lib/weft and no login shell: %q", passwd)
	}
	t.Run("can fail", func(t *testing.T) {
		if _, err := create(t, "u weft - \"weft\" /var/lib/weft /usr/sbin/nologin trailing\n"); err == nil {
			t.Error("systemd-sysusers accepted a line with trailing garbage")
		}
	})
}
