// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Command weft-lab runs weft's lab: a real cluster (an underlay, etcd,
// nodes running weftd, pods attached by the weft CNI plugin) inside network
// namespaces on one Linux machine, built by the e2e topology library.
// `make lab` and `make lab-down` run it; docs/lab.md describes it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: weft-lab up|down|status [flags]
       weft-lab stop|start|restart <node|etcd|kube-apiserver|kube-controller-manager>

  up       build a local cluster in network namespaces: an underlay bridge,
           etcd, N nodes running weftd, pods attached by the weft CNI plugin
           (--store kube: on a real kube-apiserver and controller-manager)
  down     remove everything 'up' made
  status   show what runs, and measure pod-to-pod reachability
  stop     stop a node's weftd (SIGTERM: its data plane stays), etcd or a
           Kubernetes program
  start    start it again with the same flags
  restart  stop, then start
  version  print the version

The lab needs root. It never touches the host's root network namespace.
Run 'weft-lab <command> -h' for a command's flags.
`

// stdout and stderr are where commands write their usage and messages.
// The docs test points them at io.Discard (it must not swap os.Stdout and
// os.Stderr, which other goroutines of a test binary may read).
var stdout, stderr io.Writer = os.Stdout, os.Stderr

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(stderr, "weft-lab:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "up":
		return labUp(ctx, rest)
	case "down":
		return labDown(ctx, rest)
	case "status":
		return labStatus(ctx, rest)
	case "stop", "start", "restart":
		return labProc(ctx, cmd, rest)
	case "version":
		fmt.Fprintln(stdout, version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

// argsOnlyKey marks a context in which a command stops once its arguments
// are parsed and checked, before it reads a file, starts a process or
// changes anything: a test runs every weft-lab command line of the docs
// this way.
type argsOnlyKey struct{}

// errArgsOK is what a command returns in an arguments-only context once
// its arguments passed every check.
var errArgsOK = errors.New("arguments parsed and checked")

// argsChecked returns errArgsOK in an arguments-only context, else nil.
func argsChecked(ctx context.Context) error {
	if ctx.Value(argsOnlyKey{}) != nil {
		return errArgsOK
	}
	return nil
}
