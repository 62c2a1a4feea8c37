// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Command weft-etcd is a minimal etcd server for weft's e2e tests and lab:
// a single member by default, or one member of a cluster (--name,
// --initial-cluster, --initial-cluster-state, --listen-peer-url). It runs etcd's embedded server as its own process, so that
// it can be started inside a network namespace with `ip netns exec` and keep
// every socket there (an etcd embedded in the test process would not), and
// so that the lab's etcd outlives the command that started it.
//
// It writes its PID to --pidfile, prints "ready" on stdout once it serves
// clients, and stops on SIGTERM or SIGINT (within about a second, without
// waiting for clients to go). Environment variables named
// ETCD_* are ignored (etcd would read them as flags).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weftnet/weft/subnet/etcd/etcdtest"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "weft-etcd:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("weft-etcd", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "", "etcd data directory (required)")
	clientURL := fs.String("listen-client-url", "http://127.0.0.1:2379", "client URL to listen on and advertise")
	peerURL := fs.String("listen-peer-url", "http://127.0.0.1:2380", "peer URL to listen on and advertise")
	pidfile := fs.String("pidfile", "", "write the process ID to this file")
	name := fs.String("name", "weft-etcd", "member name")
	verbose := fs.Bool("verbose", false, "log etcd's own messages to stderr")
	initialCluster := fs.String("initial-cluster", "", "members of a multi-member cluster as name=peer-URL,... (this member included); empty: a single-member cluster")
	clusterState := fs.String("initial-cluster-state", "new", `"new" to bootstrap the initial cluster, "existing" to join a running cluster after a member add (read only when the data directory is empty)`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dataDir == "" {
		return errors.New("--data-dir is required")
	}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "ETCD_") {
			os.Unsetenv(k)
		}
	}
	srv, err := etcdtest.New(etcdtest.Config{
		Dir:       *dataDir,
		Name:      *name,
		ClientURL: *clientURL,
		PeerURL:   *peerURL,
		Verbose:   *verbose,

		InitialCluster: *initialCluster,
		ClusterState:   *clusterState,
	})
	if err != nil {
		return err
	}

	if *pidfile != "" {
		if err := os.WriteFile(*pidfile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return fmt.Errorf("write pidfile: %w", err)
		}
		defer os.Remove(*pidfile)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// A graceful stop waits for clients' streams (KeepAlive, Watch) to
	// end, which takes seconds; the WAL is synced on every commit, so
	// stopping after a short grace is as safe as a crash.
	defer func() {
		done := make(chan struct{})
		go func() {
			srv.Stop()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(time.Second):
		}
	}()
	if err := srv.Start(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped by a signal before it was ready
		}
		return err
	}
	fmt.Println("ready")
	select {
	case <-ctx.Done():
		return nil
	case err := <-srv.Err():
		return fmt.Errorf("etcd: %w", err)
	}
}
