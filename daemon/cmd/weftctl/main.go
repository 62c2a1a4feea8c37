// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Command weftctl is weft's operator tool: network config, leases, network
// policies and namespace labels, node status, gossip members and gossip
// keys.
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

const usage = `usage: weftctl <command> [flags]

commands:
  config set|get     write (validated) or show the network config in etcd
  leases [rm]        list leases, or evict a node's lease
  policy             apply, get, list, delete or explain network policies kept in etcd
  namespace          label namespaces (for policies' namespaceSelectors) or list them
  status             show a node's status (from weftd's HTTP API), or every node's (--kubeconfig)
  members            show gossip members as a node (or, with --kubeconfig, each node) sees them
  gossip-key         generate a gossip encryption key
  version            print the version

Run 'weftctl <command> -h' for a command's flags.
`

// stdout and stderr are where commands write. The docs test points them at
// io.Discard: it must not swap os.Stdout and os.Stderr, which other
// goroutines of the test binary (the embedded etcd) read.
var stdout, stderr io.Writer = os.Stdout, os.Stderr

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(stderr, "weftctl:", err)
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
	case "config":
		return cmdConfig(ctx, rest)
	case "leases":
		return cmdLeases(ctx, rest)
	case "policy":
		return cmdPolicy(ctx, rest)
	case "namespace":
		return cmdNamespace(ctx, rest)
	case "status":
		return cmdStatus(ctx, rest)
	case "members":
		return cmdMembers(ctx, rest)
	case "gossip-key":
		return cmdGossipKey(ctx, rest)
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

// argsOnlyKey marks a context in which a command stops once its arguments
// are parsed and checked, before it reads a file, connects or changes
// anything: a test runs every command line of the docs this way.
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
