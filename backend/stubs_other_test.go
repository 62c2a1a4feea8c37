// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build !linux

package backend_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/hostgw"
	"github.com/weftnet/weft/backend/vxlan"
	"github.com/weftnet/weft/backend/wireguard"
)

// TestUnsupported checks the backends' stubs: New still validates the
// config, and Setup and Reconcile fail with an error that wraps
// errors.ErrUnsupported.
func TestUnsupported(t *testing.T) {
	pub := netip.MustParseAddr("198.18.0.1")
	tests := []struct {
		name string
		// valid and invalid build a backend from a valid and an invalid
		// config.
		valid, invalid func() (backend.Backend, error)
	}{
		{"vxlan",
			func() (backend.Backend, error) { return vxlan.New(vxlan.Config{PublicIP: pub}) },
			func() (backend.Backend, error) { return vxlan.New(vxlan.Config{}) }},
		{"host-gw",
			func() (backend.Backend, error) { return hostgw.New(hostgw.Config{PublicIP: pub}) },
			func() (backend.Backend, error) { return hostgw.New(hostgw.Config{}) }},
		{"wireguard",
			func() (backend.Backend, error) { return wireguard.New(wireguard.Config{PublicIP: pub}) },
			func() (backend.Backend, error) { return wireguard.New(wireguard.Config{ListenPort: -1}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.invalid(); err == nil {
				t.Error("New accepted an invalid config")
			}
			b, err := tt.valid()
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if _, err := b.Setup(context.Background()); !errors.Is(err, errors.ErrUnsupported) {
				t.Errorf("Setup: %v, want an error wrapping errors.ErrUnsupported", err)
			}
			if _, err := b.Reconcile(context.Background(), backend.Desired{}); !errors.Is(err, errors.ErrUnsupported) {
				t.Errorf("Reconcile: %v, want an error wrapping errors.ErrUnsupported", err)
			}
		})
	}
}
