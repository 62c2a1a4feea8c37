// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build !linux

package wireguard

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"github.com/weftnet/weft/backend"
)

// errUnsupported is what Setup and Reconcile return off Linux: the backend
// needs kernel WireGuard or a Linux TUN device, and rtnetlink.
var errUnsupported = fmt.Errorf("wireguard backend on %s: %w", runtime.GOOS, errors.ErrUnsupported)

// Backend is the WireGuard backend; it works on Linux only.
type Backend struct{}

var _ backend.Backend = (*Backend)(nil)

// New validates cfg, as on Linux.
func New(cfg Config) (*Backend, error) {
	if _, err := cfg.withDefaults(); err != nil {
		return nil, fmt.Errorf("wireguard config: %w", err)
	}
	return &Backend{}, nil
}

// KernelSupported fails with an error that wraps [errors.ErrUnsupported]:
// the probe needs rtnetlink.
func KernelSupported() (bool, error) { return false, errUnsupported }

// Setup fails with an error that wraps [errors.ErrUnsupported].
func (b *Backend) Setup(context.Context) (backend.Attrs, error) {
	return backend.Attrs{}, errUnsupported
}

// Reconcile fails with an error that wraps [errors.ErrUnsupported].
func (b *Backend) Reconcile(context.Context, backend.Desired) (backend.Result, error) {
	return backend.Result{}, errUnsupported
}

// Close does nothing.
func (b *Backend) Close() error { return nil }
