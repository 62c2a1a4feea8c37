// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kube

import (
	"context"
	"errors"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// Reachability without a probe: the store's informers (the lease view's,
// the keep-alive's, the config's) make the only requests weftd needs at
// steady state, their lists and watches. Every one of those requests goes
// through [Store.observed], which records its outcome; WatchReachability
// hands on the changes. Nothing is polled, so a quiet cluster costs no
// request at all besides the open watches.
//
// What this sees and how fast:
//   - an API server that stops or crashes closes its connections: the
//     informer opens a new watch at once, the request fails (connection
//     refused) and the store reports unreachable at that moment (patient,
//     in retry.go, then retries it every 0.5 s growing to 5 s);
//   - a connection that goes silent (a host lost, a network cut, a stopped
//     process): client-go's HTTP/2 health check pings a connection that
//     has read nothing for 30 s and closes it when no answer comes within
//     15 s (HTTP2_READ_IDLE_TIMEOUT_SECONDS, HTTP2_PING_TIMEOUT_SECONDS),
//     which ends the watches; the next request then fails after the dial
//     or TLS handshake timeout (30 s and 10 s): about 85 s at the worst;
//   - the API server's own etcd down: its watch cache keeps serving
//     watches, so this is not seen (nothing changes in the cluster either,
//     and writes fail with their own errors).
//
// It comes back as reachable with the first list or watch that succeeds,
// or that the API server answers itself with a refusal (forbidden, not
// found, expired, invalid; not 429, 503 or 504): a server that answers is
// reachable. Such a refusal is the informer's to report (client-go logs
// it); it must not flap reachability: a restarted API server refuses every
// request as forbidden for the moment its authorizer has not loaded the
// RBAC roles yet, and each informer that asks then would otherwise say
// unreachable once more.

// health is the outcome of the store's last list or watch request.
type health struct {
	mu   sync.Mutex
	ok   bool          // the last request succeeded
	err  error         // its error when it failed
	seen bool          // a request finished
	wake chan struct{} // closed and replaced when ok or seen changes
}

// report records the outcome of a request. A request cut short by its
// context (the informer stopping) says nothing about the API server.
func (h *health) report(err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	if answered(err) {
		err = nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.wake == nil {
		h.wake = make(chan struct{})
	}
	changed := !h.seen || h.ok != (err == nil)
	h.seen, h.ok = true, err == nil
	if err != nil {
		h.err = err
	}
	if changed {
		close(h.wake)
		h.wake = make(chan struct{})
	}
}

// state returns the last outcome (seen false: none yet) and a channel
// closed at the next change.
func (h *health) state() (seen bool, err error, changed <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.wake == nil {
		h.wake = make(chan struct{})
	}
	if h.seen && !h.ok {
		err = h.err
	}
	return h.seen, err, h.wake
}

// answered reports whether err is the API server's own refusal of a
// request, which says that it is reachable (see [unreachable]).
func answered(err error) bool {
	var st apierrors.APIStatus
	return errors.As(err, &st) && !unreachable(err)
}

// observed returns lw with each list and watch request's outcome recorded
// in s.health.
func (s *Store) observed(lw *cache.ListWatch) *cache.ListWatch {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			obj, err := lw.ListWithContext(ctx, o)
			s.health.report(err)
			return obj, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			w, err := lw.WatchWithContext(ctx, o)
			s.health.report(err)
			return w, err
		},
		DisableChunking: lw.DisableChunking,
	}
}

// WatchReachability calls fn with nil when the store's lists and watches
// succeed and with the error of the failing request when they fail: once
// for the first outcome, then at each change, until ctx is done. It makes
// no request itself (see the comment at the top of this file); without a
// running watch (WatchLeases, KeepAlive, WatchConfig) it reports nothing.
func (s *Store) WatchReachability(ctx context.Context, fn func(error)) error {
	for {
		seen, err, changed := s.health.state()
		if seen {
			fn(err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}
