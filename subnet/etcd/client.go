// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
)

// DefaultDialTimeout bounds connecting to etcd when ClientConfig leaves
// DialTimeout zero.
const DefaultDialTimeout = 5 * time.Second

// ClientConfig says how to reach etcd.
type ClientConfig struct {
	// Endpoints are etcd client URLs (http:// or https://). An entry may
	// hold several URLs separated by commas, as a flag value does.
	Endpoints []string
	// CAFile verifies the server certificates; CertFile and KeyFile are
	// this client's certificate and key for mutual TLS. Setting any of
	// them turns TLS on.
	CAFile, CertFile, KeyFile string
	// Username and Password authenticate with etcd's auth (optional).
	Username, Password string
	// DialTimeout bounds the initial connection (default 5 s). The client
	// does not wait for etcd to be up: calls fail until it is reachable.
	DialTimeout time.Duration
}

// NewClient creates an etcd client from cfg. It does not wait for etcd to
// be reachable (unless Username is set: authentication needs a round
// trip). The caller closes the client.
func NewClient(cfg ClientConfig) (*clientv3.Client, error) {
	var eps []string
	for _, e := range cfg.Endpoints {
		for _, u := range strings.Split(e, ",") {
			if u = strings.TrimSpace(u); u != "" {
				eps = append(eps, u)
			}
		}
	}
	if len(eps) == 0 {
		return nil, errors.New("no etcd endpoints given (e.g. --etcd-endpoints http://127.0.0.1:2379)")
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("an etcd client certificate needs both a cert file and a key file (--etcd-certfile and --etcd-keyfile)")
	}
	if (cfg.Username == "") != (cfg.Password == "") {
		return nil, errors.New("etcd authentication needs both a username and a password (--etcd-username and --etcd-password)")
	}
	var tlsConfig *tls.Config
	if cfg.CAFile != "" || cfg.CertFile != "" {
		info := transport.TLSInfo{CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, TrustedCAFile: cfg.CAFile}
		c, err := info.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("load etcd TLS files: %w", err)
		}
		tlsConfig = c
	} else {
		for _, e := range eps {
			if strings.HasPrefix(e, "https://") {
				// No CA given: verify with the system's roots.
				tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
				break
			}
		}
	}
	timeout := cfg.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   eps,
		DialTimeout: timeout,
		TLS:         tlsConfig,
		Username:    cfg.Username,
		Password:    cfg.Password,
		// The client's own log lines would bypass weft's logger; weft
		// reports the errors the calls return instead.
		Logger: zap.NewNop(),
		// Keep the connection checked so that a dead endpoint is noticed
		// while idle (leases are renewed only every TTL/3).
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		PermitWithoutStream:  true,
		// gRPC's default reconnect back-off grows to 120 s: after an
		// etcd outage a node would take that long to notice etcd is
		// back. Cap it so leases and watches recover within seconds.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: grpcbackoff.Config{
				BaseDelay:  250 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   2 * time.Second,
			},
			MinConnectTimeout: 2 * time.Second,
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd at %s: %w", strings.Join(eps, ","), err)
	}
	return c, nil
}
