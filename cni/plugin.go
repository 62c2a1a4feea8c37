// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package cni

import (
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/sirupsen/logrus"
)

// Plugin implements the CNI verbs. Its methods are the funcs handed to
// skel.PluginMainFuncs; each runs once per process, in the namespace the
// plugin was started in (the node's).
type Plugin struct {
	// Log receives state changes worth a line (bridge created, bridge
	// address replaced, stale records removed). The plugin's stderr
	// reaches the runtime's log.
	Log logrus.FieldLogger
}

// Funcs returns the verbs for skel.PluginMainFuncs.
func (p *Plugin) Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: p.Add, Del: p.Del, Check: p.Check, GC: p.GC, Status: p.Status}
}

func (p *Plugin) log() logrus.FieldLogger {
	if p.Log == nil {
		l := logrus.New()
		l.SetOutput(os.Stderr)
		return l
	}
	return p.Log
}
