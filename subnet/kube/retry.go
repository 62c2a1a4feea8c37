// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kube

import (
	"context"
	"errors"
	"net/url"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// retryBackoff paces the retries of a list or watch the API server
// cannot take: 0.5 s, doubling up to unreachableRetryCap, each lengthened
// by up to half again at random, so that a cluster's weftd do not return
// in step.
var retryBackoff = wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.5, Steps: 1 << 30, Cap: unreachableRetryCap}

// unreachableRetryCap (1.5 times, with the jitter) bounds how long after
// the API server returns an informer lists or watches again.
const unreachableRetryCap = 5 * time.Second

// patient returns lw with its list and watch calls retried here while the
// API server cannot be reached (see [unreachable]), until they succeed,
// fail otherwise, or ctx ends.
//
// client-go's reflector backs off on such failures itself, exponentially
// up to 30 s with as much again of jitter, and resets only after two
// minutes without one: after an outage of a minute, an informer would
// stay blind for up to a minute after the API server is back, and the
// Nodes deleted or created meanwhile would reach weftd that late. Retried
// here, the reflector never sees the failures, and the informer is back
// within 7.5 s of the API server.
func patient(lw *cache.ListWatch) *cache.ListWatch {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return retryUnreachable(ctx, retryBackoff, func() (runtime.Object, error) { return lw.ListWithContext(ctx, o) })
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return retryUnreachable(ctx, retryBackoff, func() (watch.Interface, error) { return lw.WatchWithContext(ctx, o) })
		},
	}
}

// retryUnreachable calls fn until it returns an error that is not
// [unreachable], pacing the calls by b, or until ctx ends (then it returns
// fn's last error).
func retryUnreachable[T any](ctx context.Context, b wait.Backoff, fn func() (T, error)) (T, error) {
	for {
		v, err := fn()
		if err == nil || ctx.Err() != nil || !unreachable(err) {
			return v, err
		}
		t := time.NewTimer(b.Step())
		select {
		case <-ctx.Done():
			t.Stop()
			return v, err
		case <-t.C:
		}
	}
}

// unreachable reports whether err says that the API server could not be
// reached or could not serve the request for now (a transport error:
// connection refused or reset, timeout, TLS; or HTTP 429, 503, 504), as
// opposed to an answer (forbidden, not found, expired, invalid).
func unreachable(err error) bool {
	var ue *url.Error
	return errors.As(err, &ue) || utilnet.IsConnectionRefused(err) || utilnet.IsConnectionReset(err) || utilnet.IsProbableEOF(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err)
}
