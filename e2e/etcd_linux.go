// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// Etcd is the cluster's etcd: a weft-etcd process in the underlay
// namespace. Its data survives Stop and Start.
type Etcd struct {
	// NS is the namespace etcd runs in (the underlay).
	NS NS
	// Binary is the weft-etcd program.
	Binary string
	// DataDir holds etcd's data; LogFile receives its output.
	DataDir string
	LogFile string
	// Endpoint is the client URL.
	Endpoint string
	peerURL  string
	onStart  func(*Proc)
	// Name, InitialCluster and ClusterState make the process a member
	// of a multi-member cluster (empty for the single etcd); see
	// [EtcdCluster].
	Name           string
	InitialCluster string
	ClusterState   string

	// mu guards proc.
	mu   sync.Mutex
	proc *Proc
}

// Start starts etcd and waits until it serves clients.
func (e *Etcd) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.proc.Alive() {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(e.DataDir), 0o755); err != nil {
		return fmt.Errorf("create etcd dir: %w", err)
	}
	off := fileSize(e.LogFile)
	p, err := startProc(e.NS, e.Binary, append([]string{
		"--data-dir", e.DataDir,
		"--listen-client-url", e.Endpoint,
		"--listen-peer-url", e.peerURL,
		"--pidfile", e.DataDir + ".pid",
	}, e.memberArgs()...), cleanEnv(), e.LogFile)
	if err != nil {
		return err
	}
	e.proc = p
	if e.onStart != nil {
		e.onStart(p)
	}
	if err := waitLogLine(p, off, "ready", 60*time.Second); err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	return nil
}

// Stop stops etcd (SIGTERM) and waits for it to exit.
func (e *Etcd) Stop() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.proc.Stop(10 * time.Second)
}

// Proc returns the running etcd process (nil before Start).
func (e *Etcd) Proc() *Proc {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.proc
}

// Client returns an etcd client whose connections are made inside the
// underlay namespace. Close it when done.
func (e *Etcd) Client() (*clientv3.Client, error) {
	return nsClient(e.NS, e.Endpoint)
}

// Put writes key=value.
func (e *Etcd) Put(ctx context.Context, key, value string) error {
	return put(ctx, e.Client, key, value)
}

// nsClient returns an etcd client of endpoints whose connections are made
// from ns. Close it when done.
func nsClient(ns NS, endpoints ...string) (*clientv3.Client, error) {
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		if i := strings.Index(addr, "://"); i >= 0 {
			addr = addr[i+3:]
		}
		return ns.DialContext(ctx, "tcp", addr)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(dial)},
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return cli, nil
}

// put writes key=value with a client from newClient, closed afterwards.
func put(ctx context.Context, newClient func() (*clientv3.Client, error), key, value string) error {
	cli, err := newClient()
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, key, value); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// PutConfig writes the network config (unvalidated: tests write bad ones
// on purpose) at <prefix>/config.
func (e *Etcd) PutConfig(ctx context.Context, cfg string) error {
	return e.Put(ctx, EtcdPrefix+"/config", cfg)
}
