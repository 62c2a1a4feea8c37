// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Command weftd is weft's node agent: it leases this node's pod subnet,
// keeps every other node's pods reachable and writes the subnet file for
// the weft CNI plugin. Every flag is also read from WEFTD_<FLAG>; run
// 'weftd -h' for the list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/weftnet/weft/daemon"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() { os.Exit(run()) }

func run() int {
	fs, cfg := daemon.NewFlagSet("weftd")
	if err := daemon.ParseFlags(fs, os.Args[1:], nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "weftd:", err)
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "weftd: invalid configuration:", err)
		return 2
	}
	log, err := daemon.NewLogger(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "weftd:", err)
		return 2
	}
	cfg.Log = log.WithField("version", version)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg.Reload = hup

	if err := daemon.Run(ctx, cfg); err != nil {
		log.WithError(err).Error("weftd failed")
		return 1
	}
	return 0
}
