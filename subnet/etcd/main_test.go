// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcd

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/subnet/etcd/etcdtest"
)

// server is the package's embedded etcd, started in TestMain.
var server *etcdtest.Server

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "weft-etcd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	start := time.Now()
	server, err = etcdtest.Start(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	if testing.Verbose() {
		fmt.Printf("embedded etcd at %s ready in %.2f s\n", server.Endpoint(), time.Since(start).Seconds())
	}
	code := m.Run()
	server.Stop()
	os.RemoveAll(dir)
	// With the server stopped and every client closed, nothing of etcd's
	// client or server, nor of the store, may still run.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// testLogger returns a logger that writes through t.Logf.
func testLogger(t testing.TB) logrus.FieldLogger {
	l := logrus.New()
	l.SetLevel(logrus.DebugLevel)
	l.Out = tbWriter{t}
	return l
}

type tbWriter struct{ t testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newClient returns a client of the package's server, closed at the end
// of the test.
func newClient(t testing.TB) *clientv3.Client {
	t.Helper()
	c, err := NewClient(ClientConfig{Endpoints: []string{server.Endpoint()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testPrefix returns a key prefix unique to this test.
func testPrefix(t testing.TB) string {
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	return fmt.Sprintf("/weft-test/%s-%08x", name, rand.Uint32())
}

// newStore returns a store with its own client and a unique prefix.
func newStore(t testing.TB) *Store {
	t.Helper()
	return New(Config{Client: newClient(t), Prefix: testPrefix(t), Log: testLogger(t), LeaseTTL: time.Hour})
}

// sibling returns another store (own client, as another node has) on the
// same prefix as s.
func sibling(t testing.TB, s *Store) *Store {
	t.Helper()
	return New(Config{Client: newClient(t), Prefix: s.Prefix(), Log: testLogger(t), LeaseTTL: s.leaseTTL})
}

func mustParse(t testing.TB, js string) *subnet.Config {
	t.Helper()
	c, err := subnet.ParseConfig([]byte(js))
	if err != nil {
		t.Fatalf("ParseConfig(%s): %v", js, err)
	}
	return c
}

func record(name string) subnet.Record {
	return subnet.Record{NodeName: name, NodeID: "id-" + name, BackendType: subnet.BackendVXLAN, Version: 1}
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond every 20 ms until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runKeepAlive runs s.KeepAlive in a goroutine; the returned func stops it
// and returns its error. The goroutine is always waited for.
type keepAliveRun struct {
	cancel  context.CancelFunc
	done    chan struct{}
	err     error
	mu      sync.Mutex
	changes []subnet.Lease
}

func runKeepAlive(t testing.TB, s *Store, l *subnet.Lease) *keepAliveRun {
	ctx, cancel := context.WithCancel(context.Background())
	k := &keepAliveRun{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(k.done)
		k.err = s.KeepAlive(ctx, l, func(nl *subnet.Lease) {
			k.mu.Lock()
			k.changes = append(k.changes, *nl)
			k.mu.Unlock()
		})
	}()
	t.Cleanup(func() { k.stop() })
	return k
}

func (k *keepAliveRun) stop() error {
	k.cancel()
	<-k.done
	return k.err
}

func (k *keepAliveRun) finished() bool {
	select {
	case <-k.done:
		return true
	default:
		return false
	}
}

func (k *keepAliveRun) lastChange() (subnet.Lease, int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.changes) == 0 {
		return subnet.Lease{}, 0
	}
	return k.changes[len(k.changes)-1], len(k.changes)
}

func subnetClaim(cfg *subnet.Config, name string) subnet.ClaimRequest {
	return subnet.ClaimRequest{Config: cfg, Record: record(name)}
}

// checkNoStoreGoroutines fails the test if a goroutine is still running a
// Store method once everything was stopped (a leaked KeepAlive or watch).
func checkNoStoreGoroutines(t *testing.T) {
	t.Helper()
	var stacks []byte
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 4<<20)
		stacks = buf[:runtime.Stack(buf, true)]
		if !bytes.Contains(stacks, []byte("weft/subnet/etcd.(*Store)")) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines still run Store code after stop:\n%s", stacks)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
