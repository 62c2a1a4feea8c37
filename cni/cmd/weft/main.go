// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Command weft is the weft CNI plugin. Container runtimes run it with a
// network config naming "type": "weft"; see docs/cni.md.
package main

import (
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	cniversion "github.com/containernetworking/cni/pkg/version"
	"github.com/sirupsen/logrus"

	"github.com/weftnet/weft/cni"
)

// version is stamped by the build (make: -ldflags -X main.version=...).
var version = "dev"

func main() {
	log := logrus.New()
	log.SetOutput(os.Stderr)
	p := &cni.Plugin{Log: log.WithField("plugin", "weft")}
	skel.PluginMainFuncs(p.Funcs(), cniversion.All, "weft CNI plugin "+version)
}
