// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Command weft-install-cni installs the weft CNI plugin and its network
// config list onto a host, atomically (see package install). The
// DaemonSet's init container runs it from weft's image, which has no shell.
// Every flag is also read from the environment variable shown in -h.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/weftnet/weft/cni/install"
)

// version is stamped by the build (make: -ldflags -X main.version=...).
var version = "dev"

func main() { os.Exit(run()) }

func run() int {
	fs := flag.NewFlagSet("weft-install-cni", flag.ContinueOnError)
	var cfg install.Config
	str := func(p *string, name, env, def, usage string) {
		if v, ok := os.LookupEnv(env); ok {
			def = v
		}
		fs.StringVar(p, name, def, usage+" ($"+env+")")
	}
	str(&cfg.Plugin, "plugin", "WEFT_CNI_BIN", "/opt/weft/bin/weft", "the plugin binary to install")
	str(&cfg.Conflist, "conflist", "WEFT_CNI_CONFLIST", "/etc/weft/cni/10-weft.conflist", "the network config list to install")
	str(&cfg.BinDir, "bin-dir", "WEFT_CNI_BIN_DIR", "/host/opt/cni/bin", "the host's CNI binary directory, as mounted")
	str(&cfg.ConfDir, "conf-dir", "WEFT_CNI_CONF_DIR", "/host/etc/cni/net.d", "the host's CNI config directory, as mounted")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if *showVersion {
		fmt.Println(version)
		return 0
	}
	done, err := install.Run(cfg)
	for _, p := range done {
		fmt.Println("weft-install-cni: installed", p)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "weft-install-cni:", err)
		return 1
	}
	return 0
}
