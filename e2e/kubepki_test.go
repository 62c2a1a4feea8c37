// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2e

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/netip"
	"os"
	"strings"
	"testing"
)

// TestPKI checks what the API server and its clients rely on: the serving
// certificate verifies against the CA for every address and in-cluster
// name, the service-account key is RSA, and the token file gives the
// admin token to a system:masters user.
func TestKubePKI(t *testing.T) {
	dir := t.TempDir()
	addr := netip.MustParseAddr("198.18.0.2")
	svc := netip.MustParseAddr("10.96.0.1")
	p, err := WriteKubePKI(dir, []netip.Addr{addr, svc})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(p.CAPEM) {
		t.Fatal("CA PEM does not parse")
	}
	cert := parsePEM(t, p.ServingCert)
	srv, err := x509.ParseCertificate(cert)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"198.18.0.2", "10.96.0.1", "127.0.0.1", "kubernetes.default.svc", "localhost"} {
		if _, err := srv.Verify(x509.VerifyOptions{Roots: roots, DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("serving certificate for %s: %v", name, err)
		}
	}
	if _, err := srv.Verify(x509.VerifyOptions{Roots: roots, DNSName: "198.18.0.3"}); err == nil {
		t.Error("serving certificate verifies for 198.18.0.3, an address it was not made for")
	}
	key, err := x509.ParsePKCS8PrivateKey(parsePEM(t, p.ServiceAccountKey))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := key.(*rsa.PrivateKey); !ok {
		t.Errorf("service-account key is %T, want RSA (RS256 tokens)", key)
	}
	tokens, err := os.ReadFile(p.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	want := p.AdminToken + "," + KubeAdminUser + "," + KubeAdminUser + "-uid,\"system:masters\"\n"
	if string(tokens) != want || len(p.AdminToken) < 32 {
		t.Errorf("token file = %q, want %q with a token of 32+ characters", tokens, want)
	}
	for _, f := range []string{p.ServingKey, p.ServiceAccountKey, p.TokenFile} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, fi.Mode())
		}
	}
}

func parsePEM(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, rest := pem.Decode(b)
	if blk == nil || strings.TrimSpace(string(rest)) != "" {
		t.Fatalf("%s: want exactly one PEM block", path)
	}
	return blk.Bytes
}
