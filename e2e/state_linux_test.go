// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2e

import (
	"os"
	"testing"
)

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
