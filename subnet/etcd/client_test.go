// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcd

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/subnet/etcd/etcdtest"
)

// testPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate into dir and returns their file names.
type testPKI struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

func newTestPKI(t *testing.T, dir string) testPKI {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	writeKey := func(name string, k *ecdsa.PrivateKey) string {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name, "EC PRIVATE KEY", der)
	}
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "weft test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) ([]byte, *ecdsa.PrivateKey) {
		k := key()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	sDER, sKey := leaf(2, "etcd", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	cDER, cKey := leaf(3, "weftd", x509.ExtKeyUsageClientAuth, nil)
	return testPKI{
		ca:         write("ca.pem", "CERTIFICATE", caDER),
		serverCert: write("server.pem", "CERTIFICATE", sDER),
		serverKey:  writeKey("server-key.pem", sKey),
		clientCert: write("client.pem", "CERTIFICATE", cDER),
		clientKey:  writeKey("client-key.pem", cKey),
	}
}

// TestClientMutualTLS talks to an etcd that requires client certificates.
func TestClientMutualTLS(t *testing.T) {
	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	srv, err := etcdtest.New(etcdtest.Config{Dir: filepath.Join(dir, "data"), TLS: &etcdtest.TLSConfig{
		CertFile: pki.serverCert, KeyFile: pki.serverKey, ClientCAFile: pki.ca,
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	if !strings.HasPrefix(srv.Endpoint(), "https://") {
		t.Fatalf("endpoint %s", srv.Endpoint())
	}

	c, err := NewClient(ClientConfig{Endpoints: []string{srv.Endpoint()}, CAFile: pki.ca, CertFile: pki.clientCert, KeyFile: pki.clientKey})
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{Client: c, Prefix: "/weft"})
	if err := s.PutConfig(ctxT(t, 10*time.Second), []byte(`{"Network": "10.244.0.0/16"}`)); err != nil {
		t.Errorf("PutConfig over mutual TLS: %v", err)
	}
	if _, err := s.GetConfig(ctxT(t, 10*time.Second)); err != nil {
		t.Errorf("GetConfig over mutual TLS: %v", err)
	}
	c.Close()

	// Without a client certificate the server refuses.
	c, err = NewClient(ClientConfig{Endpoints: []string{srv.Endpoint()}, CAFile: pki.ca})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := New(Config{Client: c, CallTimeout: 3 * time.Second}).GetConfig(ctxT(t, 10*time.Second)); err == nil {
		t.Error("GetConfig without a client certificate succeeded")
	}
}

// TestClientAuth talks to an etcd with authentication turned on, over TLS
// (a password is never sent over plain HTTP: see TestClientNoDowngrade).
func TestClientAuth(t *testing.T) {
	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	srv, err := etcdtest.New(etcdtest.Config{Dir: filepath.Join(dir, "data"), TLS: &etcdtest.TLSConfig{
		CertFile: pki.serverCert, KeyFile: pki.serverKey,
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	admin, err := NewClient(ClientConfig{Endpoints: []string{srv.Endpoint()}, CAFile: pki.ca})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 20*time.Second)
	for _, step := range []func() error{
		func() error { _, err := admin.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.UserAdd(ctx, "weft", "s3cret"); return err },
		func() error { _, err := admin.RoleAdd(ctx, "weft"); return err },
		func() error {
			_, err := admin.RoleGrantPermission(ctx, "weft", "/weft/", "/weft0", 2 /* readwrite */)
			return err
		},
		func() error { _, err := admin.UserGrantRole(ctx, "weft", "weft"); return err },
		func() error { _, err := admin.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("set up etcd auth: %v", err)
		}
	}
	admin.Close()

	c, err := NewClient(ClientConfig{Endpoints: []string{srv.Endpoint()}, CAFile: pki.ca, Username: "weft", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := New(Config{Client: c})
	cfg := mustParse(t, `{"Network": "10.244.0.0/16"}`)
	if _, err := s.Claim(ctx, subnetClaim(cfg, "a")); err != nil {
		t.Errorf("Claim as an authenticated user: %v", err)
	}
	// Outside its prefix the user may not write.
	if _, err := New(Config{Client: c, Prefix: "/other"}).Claim(ctx, subnetClaim(cfg, "b")); err == nil {
		t.Error("Claim outside the user's permission succeeded")
	}
	if c, err := NewClient(ClientConfig{Endpoints: []string{srv.Endpoint()}, CAFile: pki.ca, Username: "weft", Password: "wrong"}); err == nil {
		c.Close()
		t.Error("NewClient with a wrong password succeeded")
	} else if !strings.Contains(err.Error(), "authentication failed") {
		t.Errorf("wrong password: %v", err)
	}
}

// TestOpenProbeClose: a Store from Open owns its client (Close closes it),
// and Probe tells a live etcd from a dead endpoint.
func TestOpenProbeClose(t *testing.T) {
	if _, err := Open(ClientConfig{Endpoints: []string{server.Endpoint()}}, Config{Client: newClient(t)}); err == nil {
		t.Error("Open with a client of the caller's succeeded")
	}
	if _, err := Open(ClientConfig{}, Config{}); err == nil || !strings.Contains(err.Error(), "no etcd endpoints") {
		t.Errorf("Open without endpoints: %v", err)
	}
	s, err := Open(ClientConfig{Endpoints: []string{server.Endpoint()}}, Config{Prefix: testPrefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	// No config is needed: the probe only asks etcd to answer.
	if err := s.Probe(ctxT(t, 10*time.Second)); err != nil {
		t.Errorf("Probe of a live etcd: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Probe(ctxT(t, 10*time.Second)); err == nil {
		t.Error("Probe after Close succeeded: Close did not close the client")
	}

	// A store on a client of the caller's leaves it open.
	c := newClient(t)
	if err := New(Config{Client: c}).Close(); err != nil {
		t.Fatal(err)
	}
	if err := New(Config{Client: c, Prefix: testPrefix(t)}).Probe(ctxT(t, 10*time.Second)); err != nil {
		t.Errorf("Probe on a client after closing a Store made by New: %v", err)
	}

	// Nothing listens on port 1: the probe fails within its deadline.
	dead, err := Open(ClientConfig{Endpoints: []string{"http://127.0.0.1:1"}}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	start := time.Now()
	if err := dead.Probe(ctxT(t, 2*time.Second)); err == nil {
		t.Error("Probe of a dead endpoint succeeded")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Probe of a dead endpoint took %s, beyond its 2 s deadline", took)
	}
}

// TestClientNoDowngrade: TLS files or a password with an endpoint that is
// not https:// or unixs:// are refused before any connection, naming the
// endpoint and what to do; so are endpoints mixing TLS and plain.
func TestClientNoDowngrade(t *testing.T) {
	const fix = ": they would be ignored or sent in the clear; "
	tests := []struct {
		name string
		cfg  ClientConfig
		want string // "": accepted
	}{
		{"password over http", ClientConfig{Endpoints: []string{"http://198.18.0.1:2379"}, Username: "weft", Password: "pw"},
			"etcd endpoint http://198.18.0.1:2379 does not use TLS, but credentials are given (--etcd-username/--etcd-password)" + fix +
				"use https://198.18.0.1:2379, or drop the credentials"},
		{"CA over http", ClientConfig{Endpoints: []string{"http://198.18.0.1:2379"}, CAFile: "ca.pem"},
			"etcd endpoint http://198.18.0.1:2379 does not use TLS, but credentials are given (--etcd-cafile)" + fix +
				"use https://198.18.0.1:2379, or drop the credentials"},
		{"client cert over http, second endpoint", ClientConfig{Endpoints: []string{"https://198.18.0.1:2379,http://198.18.0.2:2379"},
			CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem"},
			"etcd endpoint http://198.18.0.2:2379 does not use TLS, but credentials are given (--etcd-cafile, --etcd-certfile/--etcd-keyfile)" + fix +
				"use https://198.18.0.2:2379, or drop the credentials"},
		{"password over unix", ClientConfig{Endpoints: []string{"unix:///run/etcd.sock"}, Username: "weft", Password: "pw"},
			"etcd endpoint unix:///run/etcd.sock does not use TLS, but credentials are given (--etcd-username/--etcd-password)" + fix +
				"use unixs:///run/etcd.sock, or drop the credentials"},
		{"cert over an address without scheme", ClientConfig{Endpoints: []string{"198.18.0.1:2379"}, CertFile: "c.pem", KeyFile: "k.pem"},
			"etcd endpoint 198.18.0.1:2379 does not use TLS, but credentials are given (--etcd-certfile/--etcd-keyfile)" + fix +
				"use https://198.18.0.1:2379, or drop the credentials"},
		{"mixed schemes without credentials", ClientConfig{Endpoints: []string{"https://198.18.0.1:2379", "http://198.18.0.2:2379"}},
			"etcd endpoints mix TLS (https://198.18.0.1:2379) and plain (http://198.18.0.2:2379) schemes: the client would use one for all; " +
				"give every endpoint as https:// (or unixs://), or every one as http://"},
		{"password over https", ClientConfig{Endpoints: []string{"https://198.18.0.1:2379"}, Username: "weft", Password: "pw"}, ""},
		{"mutual TLS over unixs", ClientConfig{Endpoints: []string{"unixs:///run/etcd.sock"}, CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem"}, ""},
		{"plain without credentials", ClientConfig{Endpoints: []string{"http://198.18.0.1:2379", "unix:///run/etcd.sock"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Validate: %v\nwant %s", err, tt.want)
			}
			// NewClient refuses the same before it dials or reads a file.
			c, err := NewClient(tt.cfg)
			if err == nil {
				c.Close()
				t.Fatal("NewClient succeeded")
			}
			if err.Error() != tt.want {
				t.Errorf("NewClient: %v\nwant %s", err, tt.want)
			}
		})
	}
}
