// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunBridgeNetfilter runs weftd in a node namespace where
// net.bridge.bridge-nf-call-iptables is 0 (the kernel here has br_netfilter
// built in and starts every namespace with 1): weftd reads the namespace's
// value, becomes ready (the CNI plugin sets it at the first ADD) and says
// what is off in /status; when the value turns 1, /status follows. Then
// weftd started with br_netfilter's directory pointed at one that does not
// exist (a kernel without the module) is not ready, and /readyz names the
// fix.
func TestRunBridgeNetfilter(t *testing.T) {
	skipUnlessEtcd(t)
	tn := newTestNode(t, testNetwork)
	setNS := func(v string) {
		t.Helper()
		if err := tn.ns.Do(func() error {
			return os.WriteFile("/proc/sys/net/bridge/bridge-nf-call-iptables", []byte(v+"\n"), 0o644)
		}); err != nil {
			t.Fatalf("set net.bridge.bridge-nf-call-iptables=%s in the node namespace: %v", v, err)
		}
	}
	setNS("0")
	w := startWeftd(t, tn.ns, tn.env)
	w.waitReady(t, 60*time.Second)
	bn := w.status(t).Node.BridgeNetfilter
	if bn == nil || !bn.Loaded || bn.CallIPTables || !strings.Contains(bn.Problem, "net.bridge.bridge-nf-call-iptables is 0") {
		t.Fatalf("/status bridgeNetfilter with bridge-nf-call-iptables=0 in weftd's namespace: %+v", bn)
	}
	t.Logf("off: %s", bn.Problem)
	if !strings.Contains(w.logBuf.String(), "bridge-nf-call-iptables is 0") {
		t.Errorf("weftd's log does not warn about bridge-nf-call-iptables=0")
	}
	setNS("1")
	poll(t, 10*time.Second, "/status after bridge-nf-call-iptables=1", func() string {
		if bn := w.status(t).Node.BridgeNetfilter; bn == nil || !bn.CallIPTables || bn.Problem != "" {
			return fmt.Sprintf("bridgeNetfilter %+v", bn)
		}
		return ""
	})
	w.stop()

	env := map[string]string{bridgeSysctlDirEnv: filepath.Join(t.TempDir(), "no-br-netfilter")}
	for k, v := range tn.env {
		env[k] = v
	}
	w = startWeftd(t, tn.ns, env)
	var body string
	poll(t, 60*time.Second, "/readyz without br_netfilter", func() string {
		code, b, err := w.get("/readyz")
		body = b
		switch {
		case err != nil:
			return err.Error()
		case code == 200:
			return "ready without br_netfilter"
		case !strings.Contains(b, "br_netfilter is not loaded"):
			return "HTTP " + b
		}
		return ""
	})
	t.Logf("/readyz: %s", strings.TrimSpace(body))
	for _, want := range []string{"modprobe br_netfilter", "/etc/modules-load.d/weft.conf"} {
		if !strings.Contains(body, want) {
			t.Errorf("/readyz %q does not name the fix (%q)", body, want)
		}
	}
	// It stays not ready once the rest is done (the subnet file written,
	// the first reconcile passed).
	poll(t, 30*time.Second, "subnet file and first reconcile", func() string {
		st := w.status(t)
		if st.Node.LastReconcile.IsZero() {
			return "no reconcile yet"
		}
		if st.Node.Ready || st.Node.BridgeNetfilter == nil || st.Node.BridgeNetfilter.Loaded {
			return "ready, or br_netfilter reported loaded"
		}
		return ""
	})
	if !strings.Contains(w.logBuf.String(), "NOT READY: br_netfilter is not loaded") {
		t.Errorf("weftd's log does not say br_netfilter is missing")
	}
}
