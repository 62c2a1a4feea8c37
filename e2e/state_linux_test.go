// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2e

import (
	"os"
	"syscall"
	"testing"
	"time"
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

// TestProcCPUTime spins this process until getrusage says it used 200 ms
// more CPU; CPUTime's rise over the same span must agree (read before
// and after the getrusage calls, so within the 10 ms ticks of /proc).
func TestProcCPUTime(t *testing.T) {
	rusage := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	p := &Proc{PID: os.Getpid()}
	before, err := p.CPUTime()
	if err != nil {
		t.Fatal(err)
	}
	r0 := rusage()
	deadline := time.Now().Add(20 * time.Second)
	for rusage()-r0 < 200*time.Millisecond && time.Now().Before(deadline) {
	}
	r1 := rusage()
	after, err := p.CPUTime()
	if err != nil {
		t.Fatal(err)
	}
	got, want := after-before, r1-r0
	if got < want-20*time.Millisecond || got > want+200*time.Millisecond {
		t.Errorf("CPUTime rose by %s while getrusage counted %s", got, want)
	}
	if _, err := (&Proc{PID: 1 << 30}).CPUTime(); err == nil {
		t.Error("no error for a PID that does not exist")
	}
}
