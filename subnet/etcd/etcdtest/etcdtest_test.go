// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcdtest

import (
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestNoTestingImport keeps the package usable by e2e/cmd/weft-etcd, a
// program: it must not link the testing package.
func TestNoTestingImport(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to list dependencies with: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	if slices.Contains(strings.Fields(string(out)), "testing") {
		t.Fatal("etcdtest links the testing package; e2e/cmd/weft-etcd would too")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no dir", Config{}, "data directory is required"},
		{"scheme", Config{Dir: "d", ClientURL: "tcp://127.0.0.1:1"}, `scheme "tcp"`},
		{"no port", Config{Dir: "d", PeerURL: "http://127.0.0.1"}, "want host:port"},
		{"no socket path", Config{Dir: "d", ClientURL: "unix://"}, "no socket path"},
		{"unparsable", Config{Dir: "d", ClientURL: "http://[::1"}, "parse client URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New(%+v) = %v, want an error containing %q", tt.cfg, err, tt.want)
			}
		})
	}
}

// roundTrip writes key=val through a client of s and reads it back.
func roundTrip(t *testing.T, s *Server, key, val string) {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if val != "" {
		if _, err := c.Put(ctx, key, val); err != nil {
			t.Fatalf("put via %s: %v", s.Endpoint(), err)
		}
		return
	}
	resp, err := c.Get(ctx, key)
	if err != nil {
		t.Fatalf("get via %s: %v", s.Endpoint(), err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "kept" {
		t.Fatalf("get %s after restart = %v, want the value written before", key, resp.Kvs)
	}
}

// TestRestartKeepsAddressAndData starts a server on TCP with kernel-chosen
// ports and one on unix sockets, restarts each and checks that the
// endpoint and the data survive.
func TestRestartKeepsAddressAndData(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name   string
		cfg    Config
		prefix string
	}{
		{"tcp", Config{Dir: filepath.Join(dir, "tcp")}, "http://127.0.0.1:"},
		{"unix", Config{
			Dir:       filepath.Join(dir, "unix", "data"),
			ClientURL: "unix://" + filepath.Join(dir, "unix", "client.sock"),
			PeerURL:   "unix://" + filepath.Join(dir, "unix", "peer.sock"),
		}, "unix://" + filepath.Join(dir, "unix", "client.sock")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if s.Err() != nil {
				t.Error("Err() of a server that was never started is not nil")
			}
			if err := s.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			defer s.Stop()
			ep := s.Endpoint()
			if !strings.HasPrefix(ep, tt.prefix) || strings.HasSuffix(ep, ":0") {
				t.Fatalf("endpoint %s, want %s… with a real port", ep, tt.prefix)
			}
			if err := s.Start(t.Context()); err == nil {
				t.Error("a second Start of a running server succeeded")
			}
			roundTrip(t, s, "k", "kept")
			// Restart removes the unix socket files the last run left.
			if err := s.Restart(); err != nil {
				t.Fatal(err)
			}
			if got := s.Endpoint(); got != ep {
				t.Errorf("endpoint after restart %s, want %s", got, ep)
			}
			roundTrip(t, s, "k", "")
		})
	}
}

func TestStartGivesUpWhenContextEnds(t *testing.T) {
	s, err := New(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err = s.Start(ctx)
	if err == nil {
		s.Stop()
		t.Fatal("Start with a cancelled context succeeded")
	}
	if s.Err() != nil {
		t.Error("a server whose start failed reports itself running")
	}
}
