// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build !linux

package vxlan

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"github.com/weftnet/weft/backend"
)

// errUnsupported is what Setup and Reconcile return off Linux: the backend
// programs a kernel VXLAN device through rtnetlink.
var errUnsupported = fmt.Errorf("vxlan backend on %s: %w", runtime.GOOS, errors.ErrUnsupported)

// Backend is the VXLAN backend; it works on Linux only.
type Backend struct {
	cfg Config
}

var (
	_ backend.Backend = (*Backend)(nil)
	_ backend.Updater = (*Backend)(nil)
)

// New validates cfg and applies defaults, as on Linux.
func New(cfg Config) (*Backend, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("vxlan config: %w", err)
	}
	return &Backend{cfg: c}, nil
}

// Device returns the name of the VXLAN device.
func (b *Backend) Device() string { return b.cfg.Name }

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

// Update fails with an error that wraps [errors.ErrUnsupported].
func (b *Backend) Update(context.Context, []backend.Change) (backend.Result, error) {
	return backend.Result{}, errUnsupported
}
