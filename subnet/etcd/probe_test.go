// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcd

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// freezer is a TCP proxy to the package's etcd that can stop forwarding
// without closing anything: what a member cut off silently (power or
// network lost, no reset) looks like to a client.
type freezer struct {
	ln net.Listener
	wg sync.WaitGroup

	// mu guards the following.
	mu     sync.Mutex
	frozen bool
	closed bool
	conns  []net.Conn
	thaw   *sync.Cond
}

func newFreezer(t *testing.T) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln}
	f.thaw = sync.NewCond(&f.mu)
	backend := strings.TrimPrefix(server.Endpoint(), "http://")
	f.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", backend)
			if err != nil {
				c.Close()
				continue
			}
			if !f.track(c, b) {
				return
			}
			f.wg.Go(func() { f.pipe(c, b) })
			f.wg.Go(func() { f.pipe(b, c) })
		}
	})
	t.Cleanup(f.close)
	return f
}

func (f *freezer) endpoint() string { return "http://" + f.ln.Addr().String() }

func (f *freezer) track(cs ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	f.conns = append(f.conns, cs...)
	return true
}

// pipe copies from src to dst, holding what it read while frozen.
func (f *freezer) pipe(dst, src net.Conn) {
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		f.mu.Lock()
		for f.frozen && !f.closed {
			f.thaw.Wait()
		}
		closed := f.closed
		f.mu.Unlock()
		if closed {
			return
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (f *freezer) freeze(on bool) {
	f.mu.Lock()
	f.frozen = on
	f.mu.Unlock()
	f.thaw.Broadcast()
}

func (f *freezer) close() {
	f.mu.Lock()
	f.closed = true
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.thaw.Broadcast()
	f.ln.Close()
	f.wg.Wait()
}

// TestProbeMemberCutSilently: with two endpoints whose connections are
// both up, one stops answering without closing; the store still has a
// member with a leader, and every probe must say so (before the fallback,
// the probes that went to the frozen connection timed out: a false
// "unreachable" until keep-alive dropped it). With both frozen, the probe
// fails.
func TestProbeMemberCutSilently(t *testing.T) {
	a, b := newFreezer(t), newFreezer(t)
	c, err := NewClient(ClientConfig{Endpoints: []string{a.endpoint(), b.endpoint()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := New(Config{Client: c, Prefix: testPrefix(t)})
	probe := func() (time.Duration, error) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start := time.Now()
		err := s.Probe(ctx)
		return time.Since(start), err
	}
	// Round robin: enough reads that both connections are up and used.
	for range 10 {
		if _, err := probe(); err != nil {
			t.Fatalf("probe, nothing frozen: %v", err)
		}
	}
	a.freeze(true)
	slow := 0
	for i := range 10 {
		took, err := probe()
		if err != nil {
			t.Errorf("probe %d with one endpoint frozen: %v", i, err)
		}
		if took > 400*time.Millisecond {
			slow++ // the read went to the frozen connection
		}
	}
	if slow == 0 {
		t.Error("no probe's read went to the frozen connection: the test did not test the fallback")
	}
	t.Logf("%d of 10 probes fell back to asking each member", slow)
	b.freeze(true)
	if _, err := probe(); err == nil || !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "deadline") {
		t.Errorf("probe with both endpoints frozen: %v, want a timeout", err)
	}
	a.freeze(false)
	b.freeze(false)
}
