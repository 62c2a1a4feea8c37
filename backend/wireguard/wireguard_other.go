// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build !linux

package wireguard

import (
	"context"
	"errors"
	"fmt"

	"github.com/weftnet/weft/backend"
)

var errNotLinux = errors.New("the wireguard backend needs linux")

// Backend is the WireGuard backend; it works on Linux only.
type Backend struct{}

var _ backend.Backend = (*Backend)(nil)

// New validates cfg; on this platform the backend cannot be set up.
func New(cfg Config) (*Backend, error) {
	if _, err := cfg.withDefaults(); err != nil {
		return nil, fmt.Errorf("wireguard config: %w", err)
	}
	return &Backend{}, nil
}

// KernelSupported reports false: only Linux has kernel WireGuard here.
func KernelSupported() (bool, error) { return false, nil }

// Setup fails: the backend needs Linux.
func (b *Backend) Setup(context.Context) (backend.Attrs, error) { return backend.Attrs{}, errNotLinux }

// Reconcile fails: the backend needs Linux.
func (b *Backend) Reconcile(context.Context, backend.Desired) (backend.Result, error) {
	return backend.Result{}, errNotLinux
}

// Close does nothing.
func (b *Backend) Close() error { return nil }
