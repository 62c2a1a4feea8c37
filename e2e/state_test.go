// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestStateRoundTrip(t *testing.T) {
	s := State{
		ID: "abcde", Dir: "/run/weft-lab", OwnDir: true, Backend: "vxlan",
		Namespaces:       []string{"weftlab-underlay", "weftlab-node1"},
		Etcd:             &Proc{PID: 42, Binary: "/bin/weft-etcd", Args: []string{"--data-dir", "x"}, Namespace: "weftlab-underlay", Log: "/run/weft-lab/etcd.log"},
		Nodes:            []NodeState{{Name: "node1", Namespace: "weftlab-node1", IP: "198.18.0.11", HTTPAddr: "198.18.0.11:9950", SubnetFile: "s", LogFile: "l"}},
		Pods:             []PodState{{Name: "node1-pod1", Node: "node1", Namespace: "weftlab-node1-pod1", IP: "10.244.1.2"}},
		WireGuardDevices: []string{"weftlab-wg1"},
		Underlay:         "weftlab-underlay",
		EtcdEndpoint:     "http://198.18.0.2:2379",
	}
	path := filepath.Join(t.TempDir(), "state.json")
	c := &Cluster{opts: Options{StateFile: path}, state: s}
	c.saveState()
	got, err := LoadState(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(s, got, cmpopts.IgnoreUnexported(Proc{})); d != "" {
		t.Errorf("state after a round trip (-want +got):\n%s", d)
	}
}

func TestProcAlive(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		p    *Proc
		want bool
	}{
		{"nil", nil, false},
		{"this process", &Proc{PID: os.Getpid(), Binary: self}, true},
		// A live PID running another program must never count as ours:
		// that is what keeps lab down from signalling a recycled PID.
		{"this PID, other program", &Proc{PID: os.Getpid(), Binary: "/usr/bin/weftd"}, false},
		{"no such process", &Proc{PID: 1 << 30, Binary: self}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.Alive(); got != tc.want {
				t.Errorf("Alive() = %t, want %t", got, tc.want)
			}
		})
	}
}

func TestTeardownNothing(t *testing.T) {
	// A state whose namespaces and processes are gone tears down cleanly
	// (lab down after a reboot).
	s := State{
		Namespaces: []string{"wt-never-existed-underlay"},
		Etcd:       &Proc{PID: 1 << 30, Binary: "/nonexistent/weft-etcd"},
		Nodes:      []NodeState{{Name: "node1", Weftd: &Proc{PID: 1<<30 + 1, Binary: "/nonexistent/weftd"}}},
	}
	if live := s.Live(); len(live) != 0 {
		t.Errorf("Live() = %v, want nothing", live)
	}
	if err := Teardown(s); err != nil {
		t.Errorf("Teardown: %v", err)
	}
}
