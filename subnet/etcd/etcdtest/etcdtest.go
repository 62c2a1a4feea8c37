// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package etcdtest runs a real etcd server inside a test process
// (go.etcd.io/etcd/server/v3/embed) on 127.0.0.1, so that tests of the
// lease store and of weftctl talk to etcd itself rather than to a fake.
//
// Start one server per test package in TestMain and give every test its
// own key prefix. The server can be stopped and restarted on the same data
// directory and ports, to test behaviour across an etcd outage.
package etcdtest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Server is an embedded etcd server.
type Server struct {
	// Dir is the server's data directory.
	Dir string

	// TLS, when set before the first start, makes the server serve
	// clients over TLS (see [StartConfig]).
	tls *TLSConfig

	// mu guards the following.
	mu         sync.Mutex
	e          *embed.Etcd
	clientPort int
	peerPort   int
}

// TLSConfig makes a server serve clients over TLS.
type TLSConfig struct {
	// CertFile and KeyFile are the server's certificate and key.
	CertFile, KeyFile string
	// ClientCAFile, when set, makes the server require client
	// certificates signed by this CA.
	ClientCAFile string
}

// Start starts a server on 127.0.0.1 (ports chosen by the kernel) with its
// data in dir, and waits until it is ready.
func Start(dir string) (*Server, error) {
	return StartConfig(dir, nil)
}

// StartConfig is [Start] with optional client TLS.
func StartConfig(dir string, t *TLSConfig) (*Server, error) {
	s := &Server{Dir: dir, tls: t}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) scheme() string {
	if s.tls != nil {
		return "https"
	}
	return "http"
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.e != nil {
		return errors.New("etcd is already running")
	}
	cfg := embed.NewConfig()
	cfg.Dir = s.Dir
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cu := url.URL{Scheme: s.scheme(), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.clientPort))}
	pu := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.peerPort))}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// No extra listeners for metrics or the gRPC gateway's HTTP side.
	cfg.ListenMetricsUrls = nil
	if s.tls != nil {
		cfg.ClientTLSInfo.CertFile = s.tls.CertFile
		cfg.ClientTLSInfo.KeyFile = s.tls.KeyFile
		if s.tls.ClientCAFile != "" {
			cfg.ClientTLSInfo.TrustedCAFile = s.tls.ClientCAFile
			cfg.ClientTLSInfo.ClientCertAuth = true
		}
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start embedded etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("embedded etcd failed: %w", err)
	case <-time.After(60 * time.Second):
		e.Close()
		return errors.New("embedded etcd not ready after 60 s")
	}
	s.e = e
	s.clientPort = e.Clients[0].Addr().(*net.TCPAddr).Port
	s.peerPort = e.Peers[0].Listener.Addr().(*net.TCPAddr).Port
	return nil
}

// Endpoint returns the client URL (http://127.0.0.1:<port>, or https://
// with TLS). It stays the same across restarts.
func (s *Server) Endpoint() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("%s://127.0.0.1:%d", s.scheme(), s.clientPort)
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
// data directory and ports.
func (s *Server) Restart() error {
	s.Stop()
	return s.start()
}

// Client returns a new client of the server (plain HTTP servers only;
// for TLS build one with the project's client code). The caller closes
// it.
func (s *Server) Client() (*clientv3.Client, error) {
	if s.tls != nil {
		return nil, errors.New("etcdtest: Client does not support TLS servers")
	}
	return clientv3.New(clientv3.Config{
		Endpoints:   []string{s.Endpoint()},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
}
