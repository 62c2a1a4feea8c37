// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package netnstest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RequireTool returns the path of the command bin. When it is missing it
// installs Debian's package pkg, but only as root with CI set (as .ci/run
// runs the tests); otherwise it skips the test with a message that says how
// to get the tool. It fails the test if bin is still missing after the
// install.
func RequireTool(t testing.TB, bin, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(bin); err == nil {
		return p
	}
	if os.Geteuid() != 0 || os.Getenv("CI") == "" {
		t.Skipf("%s not found: install Debian's %s package (apt-get install %s); tests install it themselves only as root with CI set", bin, pkg, pkg)
	}
	install := []string{"apt-get", "install", "-y", "-qq", "--no-install-recommends", pkg}
	// Try the package lists at hand first; update them only if that fails.
	for _, args := range [][]string{install, {"apt-get", "update", "-qq"}, install} {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err == nil && args[1] == "install" {
			break
		}
		if err != nil {
			t.Logf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	p, err := exec.LookPath(bin)
	if err != nil {
		t.Fatalf("%s still missing after installing Debian's %s package", bin, pkg)
	}
	return p
}
