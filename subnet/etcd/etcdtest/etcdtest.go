// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package etcdtest builds and runs weft's test etcd on etcd's embedded
// server (go.etcd.io/etcd/server/v3/embed), so that tests and the lab talk
// to etcd itself rather than to a fake. It is the one place that
// configures such a server (data dir, member name, listeners, quiet
// logger, readiness); three kinds of callers use it:
//
//   - tests of the lease store and of weftctl run a server in their own
//     process on 127.0.0.1 with ports chosen by the kernel ([Start]); start
//     one per test package in TestMain and give every test its own key
//     prefix;
//   - the daemon's privileged tests serve clients on a unix socket, which
//     daemons inside test network namespaces reach without a link into
//     the root namespace ([Config.ClientURL] "unix:///...");
//   - e2e/cmd/weft-etcd runs a server as its own process for the e2e tests
//     and the lab, so that every socket stays in the namespace it was
//     started in.
//
// The last one is a program, so this package must not import testing (a
// test of the package checks that). A server can be stopped and restarted
// on the same data directory and addresses, to test behaviour across an
// etcd outage.
//
// A server is a single-member cluster by default, or one member of a
// multi-member cluster ([Config.InitialCluster], [Config.ClusterState]),
// which the e2e tests run as three processes to take members away under
// load.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// readyTimeout bounds how long a start waits for the server to serve.
const readyTimeout = 60 * time.Second

// Config says how to run a [Server].
type Config struct {
	// Dir is the server's data directory. Required.
	Dir string
	// Name is the member name; empty: etcd's default ("default").
	Name string
	// ClientURL is the URL the server serves clients on and advertises:
	// http://HOST:PORT, https://HOST:PORT (needs TLS) or unix:///PATH.
	// Empty: http://127.0.0.1:0 (https:// with TLS). Port 0 lets the
	// kernel choose; the chosen port is kept across restarts.
	ClientURL string
	// PeerURL is the same for the peer (raft) listener; empty:
	// http://127.0.0.1:0.
	PeerURL string
	// InitialCluster lists the members of a multi-member cluster as
	// name=peerURL pairs separated by commas (etcd's --initial-cluster);
	// it must include this member with PeerURL (no port 0). Empty: a
	// single-member cluster of this member alone.
	InitialCluster string
	// ClusterState is "new" (default: the members in InitialCluster
	// bootstrap a cluster together) or "existing" (this member joins a
	// running cluster that already lists it, after a MemberAdd). It is
	// read only when Dir holds no data yet: a member with data restarts
	// from it.
	ClusterState string
	// TLS, when set, makes the server serve clients over TLS.
	TLS *TLSConfig
	// Verbose keeps etcd's own logger (JSON lines on stderr); by default
	// the server logs nothing.
	Verbose bool
}

// TLSConfig makes a server serve clients over TLS.
type TLSConfig struct {
	// CertFile and KeyFile are the server's certificate and key.
	CertFile, KeyFile string
	// ClientCAFile, when set, makes the server require client
	// certificates signed by this CA.
	ClientCAFile string
}

// Server is an embedded etcd server.
type Server struct {
	// Dir is the server's data directory.
	Dir string

	cfg Config

	// mu guards the following. Start fills in the ports the kernel chose,
	// so that a restart binds the same addresses.
	mu     sync.Mutex
	e      *embed.Etcd
	client url.URL
	peer   url.URL
}

// New validates cfg and returns a server that is not started yet.
func New(cfg Config) (*Server, error) {
	if cfg.Dir == "" {
		return nil, errors.New("etcd data directory is required")
	}
	scheme := "http"
	if cfg.TLS != nil {
		scheme = "https"
	}
	client, err := parseURL("client", cfg.ClientURL, scheme)
	if err != nil {
		return nil, err
	}
	peer, err := parseURL("peer", cfg.PeerURL, "http")
	if err != nil {
		return nil, err
	}
	switch cfg.ClusterState {
	case "", embed.ClusterStateFlagNew, embed.ClusterStateFlagExisting:
	default:
		return nil, fmt.Errorf("cluster state %q is neither %q nor %q", cfg.ClusterState, embed.ClusterStateFlagNew, embed.ClusterStateFlagExisting)
	}
	if cfg.InitialCluster != "" {
		if cfg.Name == "" {
			return nil, errors.New("a member of an initial cluster needs a name")
		}
		if peer.Port() == "0" || peer.Scheme == "unix" {
			return nil, fmt.Errorf("a member of an initial cluster needs a fixed TCP peer URL, not %s", peer.String())
		}
		if !strings.Contains(","+cfg.InitialCluster+",", ","+cfg.Name+"="+peer.String()+",") {
			return nil, fmt.Errorf("initial cluster %q does not list this member as %s=%s", cfg.InitialCluster, cfg.Name, peer.String())
		}
	} else if cfg.ClusterState == embed.ClusterStateFlagExisting {
		return nil, errors.New("joining an existing cluster needs the initial cluster (its members and this one)")
	}
	return &Server{Dir: cfg.Dir, cfg: cfg, client: client, peer: peer}, nil
}

func parseURL(what, s, defaultScheme string) (url.URL, error) {
	if s == "" {
		return url.URL{Scheme: defaultScheme, Host: "127.0.0.1:0"}, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return url.URL{}, fmt.Errorf("parse %s URL: %w", what, err)
	}
	switch u.Scheme {
	case "http", "https":
		if _, _, err := net.SplitHostPort(u.Host); err != nil {
			return url.URL{}, fmt.Errorf("%s URL %s: want host:port: %w", what, s, err)
		}
	case "unix":
		if u.Host+u.Path == "" {
			return url.URL{}, fmt.Errorf("%s URL %s has no socket path", what, s)
		}
	default:
		return url.URL{}, fmt.Errorf("%s URL %s: scheme %q is not http, https or unix", what, s, u.Scheme)
	}
	return *u, nil
}

// Start starts a server on 127.0.0.1 (ports chosen by the kernel) with its
// data in dir, and waits until it is ready.
func Start(dir string) (*Server, error) {
	s, err := New(Config{Dir: dir})
	if err != nil {
		return nil, err
	}
	if err := s.Start(context.Background()); err != nil {
		return nil, err
	}
	return s, nil
}

// Start starts the server and waits until it serves clients, ctx is done
// or a minute has passed. Starting a running server is an error.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.e != nil {
		return errors.New("etcd is already running")
	}
	cfg := embed.NewConfig()
	if s.cfg.Name != "" {
		cfg.Name = s.cfg.Name
	}
	cfg.Dir = s.cfg.Dir
	if !s.cfg.Verbose {
		cfg.Logger = "zap"
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{s.client}, []url.URL{s.client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{s.peer}, []url.URL{s.peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	if s.cfg.InitialCluster != "" {
		cfg.InitialCluster = s.cfg.InitialCluster
	}
	if s.cfg.ClusterState != "" {
		cfg.ClusterState = s.cfg.ClusterState
	}
	// No extra listeners for metrics or the gRPC gateway's HTTP side.
	cfg.ListenMetricsUrls = nil
	if t := s.cfg.TLS; t != nil {
		cfg.ClientTLSInfo.CertFile = t.CertFile
		cfg.ClientTLSInfo.KeyFile = t.KeyFile
		if t.ClientCAFile != "" {
			cfg.ClientTLSInfo.TrustedCAFile = t.ClientCAFile
			cfg.ClientTLSInfo.ClientCertAuth = true
		}
	}
	// A socket file left by an earlier run (or a crash) makes listen fail.
	for _, u := range []url.URL{s.client, s.peer} {
		if u.Scheme != "unix" {
			continue
		}
		path := u.Host + u.Path
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return fmt.Errorf("create socket directory: %w", err)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove stale socket: %w", err)
		}
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start embedded etcd: %w", err)
	}
	timeout := time.NewTimer(readyTimeout)
	defer timeout.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("embedded etcd failed: %w", err)
	case <-ctx.Done():
		e.Close()
		return fmt.Errorf("embedded etcd not ready: %w", ctx.Err())
	case <-timeout.C:
		e.Close()
		return fmt.Errorf("embedded etcd not ready after %s", readyTimeout)
	}
	s.e = e
	keepPort(&s.client, e.Clients[0].Addr())
	keepPort(&s.peer, e.Peers[0].Listener.Addr())
	return nil
}

// keepPort writes the port the kernel chose into u (TCP URLs only).
func keepPort(u *url.URL, a net.Addr) {
	if ta, ok := a.(*net.TCPAddr); ok && u.Scheme != "unix" {
		u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(ta.Port))
	}
}

// Endpoint returns the client URL (http://127.0.0.1:<port> by default,
// https:// with TLS, unix:///<path> for a unix socket). It stays the same
// across restarts.
func (s *Server) Endpoint() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.client.String()
}

// Err returns the channel on which the running server reports an error
// that stopped it; nil when the server is not running.
func (s *Server) Err() <-chan error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.e == nil {
		return nil
	}
	return s.e.Err()
}

// Stop stops the server; its data stays in Dir. Stopping a stopped server
// does nothing. Close clients holding lease keep-alive streams first, or
// this may take several seconds.
func (s *Server) Stop() {
	s.mu.Lock()
	e := s.e
	s.e = nil
	s.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

// Restart stops the server (if running) and starts it again on the same
// data directory and addresses.
func (s *Server) Restart() error {
	s.Stop()
	return s.Start(context.Background())
}

// Client returns a new client of the server (plain HTTP servers only;
// for TLS build one with the project's client code). The caller closes
// it.
func (s *Server) Client() (*clientv3.Client, error) {
	if s.cfg.TLS != nil {
		return nil, errors.New("etcdtest: Client does not support TLS servers")
	}
	return clientv3.New(clientv3.Config{
		Endpoints:   []string{s.Endpoint()},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
}
