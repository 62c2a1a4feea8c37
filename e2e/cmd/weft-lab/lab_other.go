// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build !linux

package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/weftnet/weft/e2e"
)

// errNoLab is what every action returns off Linux.
var errNoLab = fmt.Errorf("the lab needs Linux (network namespaces, veth, bridges): %w", errors.ErrUnsupported)

func up(ctx context.Context, nodes, pods int, backend string, dualStack bool, kube *e2e.KubeOptions, binDir, dir string) error {
	return errNoLab
}

func down(s e2e.State, sf string) error { return errNoLab }

func status(ctx context.Context, s e2e.State) error { return errNoLab }

func proc(verb, name, sf string, s e2e.State) error { return errNoLab }
