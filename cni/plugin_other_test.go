// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build !linux

package cni

import (
	"errors"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
)

// TestUnsupported checks that every verb of the stub fails with an error
// that wraps errors.ErrUnsupported.
func TestUnsupported(t *testing.T) {
	f := (&Plugin{}).Funcs()
	verbs := map[string]func(*skel.CmdArgs) error{"ADD": f.Add, "DEL": f.Del, "CHECK": f.Check, "GC": f.GC, "STATUS": f.Status}
	for name, verb := range verbs {
		if err := verb(&skel.CmdArgs{}); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("%s: %v, want an error wrapping errors.ErrUnsupported", name, err)
		}
	}
}
