// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build !linux

package daemon

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/sirupsen/logrus"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/subnet"
)

// newBackend: every backend programs the Linux kernel (backends_linux.go).
func newBackend(_ *Config, nc *subnet.Config, _ underlay, _ logrus.FieldLogger) (backend.Backend, error) {
	return nil, fmt.Errorf("backend %q: weftd runs on Linux only, not %s: %w", nc.Backend.Type, runtime.GOOS, errors.ErrUnsupported)
}
