// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/weftnet/weft/daemon/status"
)

// fakeBridgeSysctls returns a directory laid out as /proc/sys/net/bridge
// with bridge-nf-call-iptables and -ip6tables set to v4 and v6 ("" leaves
// a file out).
func fakeBridgeSysctls(t *testing.T, v4, v6 string) string {
	t.Helper()
	dir := t.TempDir()
	for k, v := range map[string]string{"bridge-nf-call-iptables": v4, "bridge-nf-call-ip6tables": v6} {
		if v == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestReadBridgeNetfilter(t *testing.T) {
	for _, tc := range []struct {
		name         string
		dir          func(t *testing.T) string
		v4, v6       bool
		want         status.BridgeNetfilter
		wantProblems []string
	}{
		{
			name: "both on, dual-stack", dir: func(t *testing.T) string { return fakeBridgeSysctls(t, "1", "1") }, v4: true, v6: true,
			want: status.BridgeNetfilter{Loaded: true, CallIPTables: true, CallIP6Tables: true},
		},
		{
			name: "ip6tables off, IPv4 only: no problem", dir: func(t *testing.T) string { return fakeBridgeSysctls(t, "1", "0") }, v4: true,
			want: status.BridgeNetfilter{Loaded: true, CallIPTables: true},
		},
		{
			name: "iptables off", dir: func(t *testing.T) string { return fakeBridgeSysctls(t, "0", "1") }, v4: true, v6: true,
			want:         status.BridgeNetfilter{Loaded: true, CallIP6Tables: true},
			wantProblems: []string{"net.bridge.bridge-nf-call-iptables is 0, want 1", "next pod's ADD", "sysctl -w net.bridge.bridge-nf-call-iptables=1"},
		},
		{
			name: "ip6tables off, dual-stack", dir: func(t *testing.T) string { return fakeBridgeSysctls(t, "1", "0") }, v4: true, v6: true,
			want:         status.BridgeNetfilter{Loaded: true, CallIPTables: true},
			wantProblems: []string{"net.bridge.bridge-nf-call-ip6tables is 0, want 1"},
		},
		{
			name: "a sysctl missing", dir: func(t *testing.T) string { return fakeBridgeSysctls(t, "", "1") }, v4: true,
			want:         status.BridgeNetfilter{Loaded: true, CallIP6Tables: true},
			wantProblems: []string{"read net.bridge.bridge-nf-call-iptables"},
		},
		{
			name: "br_netfilter absent", dir: func(t *testing.T) string { return filepath.Join(t.TempDir(), "bridge") }, v4: true,
			want:         status.BridgeNetfilter{},
			wantProblems: []string{"br_netfilter is not loaded", "modprobe br_netfilter", "/etc/modules-load.d/"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := readBridgeNetfilter(tc.dir(t), tc.v4, tc.v6)
			problem := got.Problem
			got.Problem = ""
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if len(tc.wantProblems) == 0 && problem != "" {
				t.Errorf("problem %q, want none", problem)
			}
			for _, w := range tc.wantProblems {
				if !strings.Contains(problem, w) {
					t.Errorf("problem %q lacks %q", problem, w)
				}
			}
		})
	}
}

// TestNotReadyWithoutBrNetfilter: a node that is otherwise ready is not
// ready without br_netfilter, /readyz's reason names the fix, and /status
// reports the state; with br_netfilter present but its sysctls off it
// stays ready and /status says what is wrong.
func TestNotReadyWithoutBrNetfilter(t *testing.T) {
	d, _, _ := newReconcileDaemon(t)
	d.progress.subnetFileWritten = true
	d.recon.reconciled = true
	if r := d.notReady(); r != "" {
		t.Fatalf("not ready with br_netfilter on: %s", r)
	}

	d.cfg.bridgeSysctlDir = filepath.Join(t.TempDir(), "bridge")
	r := d.notReady()
	for _, w := range []string{"br_netfilter is not loaded", "modprobe br_netfilter", "/etc/modules-load.d/weft.conf"} {
		if !strings.Contains(r, w) {
			t.Errorf("without br_netfilter: notReady %q lacks %q", r, w)
		}
	}
	st := d.status()
	if st.Node.Ready || st.Node.NotReady != r {
		t.Errorf("/status: ready %t, notReady %q; want not ready, %q", st.Node.Ready, st.Node.NotReady, r)
	}
	if bn := st.Node.BridgeNetfilter; bn == nil || bn.Loaded || bn.Problem != r {
		t.Errorf("/status bridgeNetfilter %+v, want not loaded with the problem", bn)
	}
	// The reconcile loop logs it once, as an error naming the fix.
	hook := logtest.NewLocal(d.log.(*logrus.Logger))
	d.checkBridgeNetfilter()
	d.checkBridgeNetfilter()
	if es := hook.AllEntries(); len(es) != 1 || es[0].Level != logrus.ErrorLevel || !strings.Contains(es[0].Message, "modprobe br_netfilter") {
		t.Errorf("log entries %+v, want one error naming the fix", es)
	}

	d.cfg.bridgeSysctlDir = fakeBridgeSysctls(t, "0", "0")
	if r := d.notReady(); r != "" {
		t.Errorf("with br_netfilter loaded but its sysctls 0: notReady %q, want ready (the CNI plugin sets them)", r)
	}
	st = d.status()
	if bn := st.Node.BridgeNetfilter; bn == nil || !bn.Loaded || bn.CallIPTables || !strings.Contains(bn.Problem, "bridge-nf-call-iptables is 0") {
		t.Errorf("/status bridgeNetfilter %+v, want loaded, call-iptables off, and the problem", bn)
	}
}
