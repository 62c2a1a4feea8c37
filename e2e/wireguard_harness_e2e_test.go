// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e && linux

package e2e_test

import (
	"testing"

	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/e2etest"
)

// TestHarnessWireGuard checks what the harness owes the WireGuard tests:
// per-run device names, so that userspace UAPI sockets (shared by every
// namespace in /var/run/wireguard) never collide, pods that talk, and no
// socket left behind after teardown, even after a SIGKILL. The WireGuard
// scenarios themselves are in [TestWireGuard].
func TestHarnessWireGuard(t *testing.T) {
	e2etest.RequireRoot(t)
	c := e2etest.NewCluster(t, e2e.Options{Nodes: 2, PodsPerNode: 1, Backend: "wireguard"})
	nodes := c.Nodes()
	if nodes[0].WireGuardDevice == nodes[1].WireGuardDevice {
		t.Fatalf("both nodes use WireGuard device %s", nodes[0].WireGuardDevice)
	}
	for _, n := range nodes {
		if len(n.WireGuardDevice) > 15 {
			t.Errorf("device name %q is longer than 15 characters", n.WireGuardDevice)
		}
	}
	allToAll(t, c.Pods(), false)
	if t.Failed() {
		return // keep the logs for the cleanup to print
	}

	// A killed weftd cannot remove its socket; teardown must.
	if err := nodes[0].Kill(); err != nil {
		t.Fatal(err)
	}
	s := c.State()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	checkNothingLeft(t, s)
}
