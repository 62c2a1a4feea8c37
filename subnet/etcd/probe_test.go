// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcd

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// freezer is a TCP proxy to the package's etcd that can stop forwarding
// without closing anything: what a member cut off silently (power or
// network lost, no reset) looks like to a client.
type freezer struct {
	ln net.Listener
	wg sync.WaitGroup
	// up and down count the bytes forwarded to etcd and back.
	up, down atomic.Int64

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
			f.wg.Go(func() { f.pipe(c, b, &f.down) })
			f.wg.Go(func() { f.pipe(b, c, &f.up) })
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

// pipe copies from src to dst, holding what it read while frozen, and
// counts the bytes in n.
func (f *freezer) pipe(dst, src net.Conn, n *atomic.Int64) {
	buf := make([]byte, 32*1024)
	for {
		r, err := src.Read(buf)
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
		w, err := dst.Write(buf[:r])
		n.Add(int64(w))
		if err != nil {
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
	// Round robin: read until both connections are up (bytes both ways
	// through both proxies), so that reads go to each in turn.
	connected := func(f *freezer) bool { return f.up.Load() > 0 && f.down.Load() > 0 }
	for deadline := time.Now().Add(10 * time.Second); !connected(a) || !connected(b); {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s the client is not connected to both endpoints (a %t, b %t)", connected(a), connected(b))
		}
		if _, err := probe(); err != nil {
			t.Fatalf("probe, nothing frozen: %v", err)
		}
	}
	a.freeze(true)
	// At least 10 probes, and more (up to 40) until one's read went to
	// the frozen connection: each does with a chance of one in two.
	slow, n := 0, 0
	for ; n < 10 || slow == 0 && n < 40; n++ {
		took, err := probe()
		if err != nil {
			t.Errorf("probe %d with one endpoint frozen: %v", n, err)
		}
		if took > 400*time.Millisecond {
			slow++ // the read went to the frozen connection
		}
	}
	if slow == 0 {
		t.Errorf("no read of %d probes went to the frozen connection: the test did not test the fallback", n)
	}
	t.Logf("%d of %d probes fell back to asking each member", slow, n)
	b.freeze(true)
	if _, err := probe(); err == nil || !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "deadline") {
		t.Errorf("probe with both endpoints frozen: %v, want a timeout", err)
	}
	a.freeze(false)
	b.freeze(false)
}
