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

	"github.com/weftnet/weft/subnet/safefile"
)

// DefaultDialTimeout bounds connecting to etcd when ClientConfig leaves
// DialTimeout zero.
const DefaultDialTimeout = 5 * time.Second

// ClientConfig says how to reach etcd.
type ClientConfig struct {
	// Endpoints are etcd client URLs (http://, https://, unix:// or
	// unixs://). An entry may hold several URLs separated by commas, as a
	// flag value does. With any credential below, every endpoint must use
	// TLS (see [ClientConfig.Validate]).
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

// endpoints returns cfg's endpoints, comma-separated entries split.
func (cfg *ClientConfig) endpoints() []string {
	var eps []string
	for _, e := range cfg.Endpoints {
		for _, u := range strings.Split(e, ",") {
			if u = strings.TrimSpace(u); u != "" {
				eps = append(eps, u)
			}
		}
	}
	return eps
}

// Validate checks cfg without touching the network or the files: at least
// one endpoint, cert and key given together, username and password given
// together, and that no credential would be downgraded
// ([ClientConfig.CheckTransport]).
//
// Credentials are never downgraded: when TLS files (CA, cert, key) or a
// password are given, every endpoint must be https:// or unixs://. The etcd
// client speaks plain HTTP/2 to an http:// endpoint whatever TLS files it
// was given, sending the password in the clear without a word; on unix://
// and on an address without a scheme, TLS is the client's choice, not the
// operator's. Endpoints that mix TLS and plain schemes are refused too:
// the client picks the transport of all of them from the first one.
func (cfg *ClientConfig) Validate() error {
	eps := cfg.endpoints()
	if len(eps) == 0 {
		return errors.New("no etcd endpoints given (e.g. --etcd-endpoints http://127.0.0.1:2379)")
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return errors.New("an etcd client certificate needs both a cert file and a key file (--etcd-certfile and --etcd-keyfile)")
	}
	if (cfg.Username == "") != (cfg.Password == "") {
		return errors.New("etcd authentication needs both a username and a password (--etcd-username and --etcd-password)")
	}
	return cfg.CheckTransport()
}

// CheckTransport is the part of [ClientConfig.Validate] that keeps
// credentials from being downgraded: with TLS files or a password, every
// endpoint must be https:// or unixs://, and no endpoints may mix TLS and
// plain schemes. The error names the endpoint and what to do.
func (cfg *ClientConfig) CheckTransport() error {
	eps := cfg.endpoints()
	var creds []string
	for _, c := range []struct {
		set  bool
		flag string
	}{
		{cfg.CAFile != "", "--etcd-cafile"},
		{cfg.CertFile != "", "--etcd-certfile/--etcd-keyfile"},
		{cfg.Password != "", "--etcd-username/--etcd-password"},
	} {
		if c.set {
			creds = append(creds, c.flag)
		}
	}
	var secure, plain []string
	for _, e := range eps {
		if endpointTLS(e) {
			secure = append(secure, e)
		} else {
			plain = append(plain, e)
		}
	}
	if len(creds) > 0 && len(plain) > 0 {
		return fmt.Errorf("etcd endpoint %s does not use TLS, but credentials are given (%s): they would be ignored or sent in the clear; "+
			"use %s, or drop the credentials", plain[0], strings.Join(creds, ", "), secureForm(plain[0]))
	}
	if len(secure) > 0 && len(plain) > 0 {
		return fmt.Errorf("etcd endpoints mix TLS (%s) and plain (%s) schemes: the client would use one for all; "+
			"give every endpoint as https:// (or unixs://), or every one as http://", secure[0], plain[0])
	}
	return nil
}

// endpointTLS reports whether endpoint e says TLS: https:// or unixs://.
func endpointTLS(e string) bool {
	return strings.HasPrefix(e, "https://") || strings.HasPrefix(e, "unixs:")
}

// secureForm returns the TLS form of a plain endpoint, for error messages.
func secureForm(e string) string {
	switch {
	case strings.HasPrefix(e, "http://"):
		return "https://" + strings.TrimPrefix(e, "http://")
	case strings.HasPrefix(e, "unix://"):
		return "unixs://" + strings.TrimPrefix(e, "unix://")
	case strings.HasPrefix(e, "unix:"):
		return "unixs:" + strings.TrimPrefix(e, "unix:")
	case !strings.Contains(e, "://"):
		return "https://" + e
	}
	return "an https:// endpoint"
}

// maxTLSFile bounds an etcd TLS file: a CA bundle of the system's roots is
// about 200 KiB.
const maxTLSFile = 4 << 20

// checkTLSFiles checks the TLS files before the etcd client library reads
// them (see [safefile.Check]): a symbolic link on the path only if root
// or this process's user owns it (a Kubernetes Secret volume), a regular
// file (never a FIFO) of bounded size with one link, owned by root or this
// process's user, not writable by others, in directories no one else can
// write; the key file also accessible by no one else (0600 or 0400).
func (cfg *ClientConfig) checkTLSFiles() error {
	for _, f := range []struct {
		path, what string
		secret     bool
	}{
		{cfg.CAFile, "etcd CA file", false},
		{cfg.CertFile, "etcd certificate file", false},
		{cfg.KeyFile, "etcd key file", true},
	} {
		if f.path == "" {
			continue
		}
		if err := safefile.Check(f.path, safefile.Rules{What: f.what, Max: maxTLSFile, Owners: safefile.Self, Secret: f.secret, FollowLinks: true}); err != nil {
			return err
		}
	}
	return nil
}

// NewClient creates an etcd client from cfg, after [ClientConfig.Validate].
// It does not wait for etcd to be reachable (unless Username is set:
// authentication needs a round trip). The caller closes the client.
func NewClient(cfg ClientConfig) (*clientv3.Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	eps := cfg.endpoints()
	var tlsConfig *tls.Config
	if cfg.CAFile != "" || cfg.CertFile != "" {
		if err := cfg.checkTLSFiles(); err != nil {
			return nil, fmt.Errorf("load etcd TLS files: %w", err)
		}
		info := transport.TLSInfo{CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, TrustedCAFile: cfg.CAFile}
		c, err := info.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("load etcd TLS files: %w", err)
		}
		tlsConfig = c
	} else {
		if endpointTLS(eps[0]) { // Validate made them all alike
			// No CA given: verify with the system's roots.
			tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
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
		// The endpoints given are used as given: auto-sync would replace
		// them with the URLs the members advertise, which a node may not
		// reach or verify (127.0.0.1, names it cannot resolve, addresses
		// the members' certificates do not name). See
		// docs/operations.md, "etcd as a cluster".
		AutoSyncInterval: 0,
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
