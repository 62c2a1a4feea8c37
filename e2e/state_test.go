// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2e

import (
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
	if err := SaveState(path, s); err != nil {
		t.Fatal(err)
	}
	got, err := LoadState(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(s, got, cmpopts.IgnoreUnexported(Proc{})); d != "" {
		t.Errorf("state after a round trip (-want +got):\n%s", d)
	}
}
