// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// A member joining an existing cluster asks the others for the
		// member list over HTTP with a transport etcd never closes: its
		// idle keep-alive connection (both ends, in this process) stays
		// after every server is stopped. No code of this package runs
		// an HTTP server or client of its own.
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("net/http.(*connReader).backgroundRead"),
		goleak.IgnoreAnyFunction("net/http.(*conn).serve"),
	)
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
		{"cluster state", Config{Dir: "d", ClusterState: "joining"}, `cluster state "joining"`},
		{"existing without members", Config{Dir: "d", Name: "m1", ClusterState: "existing"}, "needs the initial cluster"},
		{"cluster member without name", Config{Dir: "d", PeerURL: "http://127.0.0.1:2380", InitialCluster: "m1=http://127.0.0.1:2380"}, "needs a name"},
		{"cluster member on port 0", Config{Dir: "d", Name: "m1", InitialCluster: "m1=http://127.0.0.1:0"}, "fixed TCP peer URL"},
		{"not listed", Config{Dir: "d", Name: "m1", PeerURL: "http://127.0.0.1:2380", InitialCluster: "m2=http://127.0.0.1:2381"}, "does not list this member"},
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

// freePorts returns n TCP ports on 127.0.0.1 that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// TestThreeMemberCluster bootstraps three members together, stops the
// leader (the other two elect a new one and keep serving), then replaces
// that member: its data wiped, removed and added again, started with
// cluster state "existing"; it catches up with the data written while it
// was gone.
func TestThreeMemberCluster(t *testing.T) {
	dir := t.TempDir()
	ports := freePorts(t, 6)
	var initial []string
	cfgs := make([]Config, 3)
	for i := range cfgs {
		name := fmt.Sprintf("m%d", i+1)
		cfgs[i] = Config{
			Dir:       filepath.Join(dir, name),
			Name:      name,
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
		}
		initial = append(initial, name+"="+cfgs[i].PeerURL)
	}
	members := make([]*Server, 3)
	var eps []string
	for i := range cfgs {
		cfgs[i].InitialCluster = strings.Join(initial, ",")
		s, err := New(cfgs[i])
		if err != nil {
			t.Fatal(err)
		}
		members[i] = s
		eps = append(eps, cfgs[i].ClientURL)
	}
	// A new cluster is ready only once a quorum has started: start the
	// members together.
	errs := make(chan error, 3)
	for _, s := range members {
		go func() { errs <- s.Start(t.Context()) }()
	}
	for range members {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, s := range members {
			s.Stop()
		}
	}()
	c, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	leader := func() int {
		t.Helper()
		for i, ep := range eps {
			if members[i].Err() == nil {
				continue // stopped
			}
			st, err := c.Status(ctx, ep)
			if err != nil {
				t.Fatalf("status of %s: %v", ep, err)
			}
			if st.Leader == st.Header.MemberId {
				return i
			}
		}
		return -1
	}
	ml, err := c.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ml.Members) != 3 {
		t.Fatalf("cluster has %d members, want 3: %v", len(ml.Members), ml.Members)
	}
	var l int
	deadline := time.Now().Add(10 * time.Second)
	for l = leader(); l < 0 && time.Now().Before(deadline); l = leader() {
		time.Sleep(50 * time.Millisecond)
	}
	if l < 0 {
		t.Fatal("no leader among the three members")
	}
	members[l].Stop()
	if _, err := c.Put(ctx, "k", "kept"); err != nil {
		t.Fatalf("put with the leader stopped: %v", err)
	}
	// Replace the stopped member.
	var id uint64
	for _, m := range ml.Members {
		if m.Name == cfgs[l].Name {
			id = m.ID
		}
	}
	if _, err := c.MemberRemove(ctx, id); err != nil {
		t.Fatalf("remove member %s: %v", cfgs[l].Name, err)
	}
	if err := os.RemoveAll(cfgs[l].Dir); err != nil {
		t.Fatal(err)
	}
	// etcd refuses a new voting member until every voting member has
	// been connected for 5 s (its strict reconfiguration check).
	for {
		_, err := c.MemberAdd(ctx, []string{cfgs[l].PeerURL})
		if err == nil {
			break
		}
		if !errors.Is(err, rpctypes.ErrUnhealthy) || ctx.Err() != nil {
			t.Fatalf("add member %s again: %v", cfgs[l].Name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	cfg := cfgs[l]
	cfg.ClusterState = "existing"
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	members[l] = s
	if err := s.Start(ctx); err != nil {
		t.Fatalf("start the re-added member: %v", err)
	}
	roundTrip(t, s, "k", "")
}
