// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build !linux

package cni

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/containernetworking/cni/pkg/skel"
)

// errUnsupported is what every verb returns off Linux: the plugin creates
// veths, a bridge and routes through rtnetlink in Linux network namespaces.
var errUnsupported = fmt.Errorf("weft CNI plugin on %s: %w", runtime.GOOS, errors.ErrUnsupported)

// Add fails with an error that wraps [errors.ErrUnsupported].
func (p *Plugin) Add(*skel.CmdArgs) error { return errUnsupported }

// Del fails with an error that wraps [errors.ErrUnsupported].
func (p *Plugin) Del(*skel.CmdArgs) error { return errUnsupported }

// Check fails with an error that wraps [errors.ErrUnsupported].
func (p *Plugin) Check(*skel.CmdArgs) error { return errUnsupported }

// GC fails with an error that wraps [errors.ErrUnsupported].
func (p *Plugin) GC(*skel.CmdArgs) error { return errUnsupported }

// Status fails with an error that wraps [errors.ErrUnsupported].
func (p *Plugin) Status(*skel.CmdArgs) error { return errUnsupported }
