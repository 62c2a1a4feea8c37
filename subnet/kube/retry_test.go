// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kube

import (
	"context"
	"errors"
	"net"
	"net/url"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
)

// refused is the error a list or watch returns while the API server is
// down, as client-go's REST client wraps it.
var refused = &url.Error{Op: "Get", URL: "https://198.18.0.2:6443/api/v1/nodes", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}

func TestUnreachable(t *testing.T) {
	gr := schema.GroupResource{Resource: "nodes"}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", refused, true},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, true},
		{"503", apierrors.NewServiceUnavailable("shutting down"), true},
		{"429", apierrors.NewTooManyRequests("slow down", 1), true},
		{"504", apierrors.NewServerTimeout(gr, "list", 1), true},
		{"forbidden", apierrors.NewForbidden(gr, "", errors.New("RBAC")), false},
		{"not found (no CRD)", apierrors.NewNotFound(gr, ""), false},
		{"expired (410)", apierrors.NewResourceExpired("too old resource version"), false},
		{"other", errors.New("decode: bad object"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := unreachable(tc.err); got != tc.want {
				t.Errorf("unreachable(%v) = %t, want %t", tc.err, got, tc.want)
			}
		})
	}
}

func TestRetryUnreachable(t *testing.T) {
	fast := wait.Backoff{Duration: time.Millisecond, Factor: 2, Steps: 1 << 30, Cap: 2 * time.Millisecond}
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "", errors.New("RBAC"))
	for _, tc := range []struct {
		name      string
		errs      []error // returned by the calls in turn; then success
		wantCalls int
		wantErr   error
	}{
		{"succeeds at once", nil, 1, nil},
		{"retried while refused, then succeeds", []error{refused, refused, refused}, 4, nil},
		{"an answer is returned at once", []error{forbidden}, 1, forbidden},
		{"refused, then an answer", []error{refused, forbidden}, 2, forbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			v, err := retryUnreachable(context.Background(), fast, func() (int, error) {
				calls++
				if calls <= len(tc.errs) {
					return 0, tc.errs[calls-1]
				}
				return 42, nil
			})
			if calls != tc.wantCalls || !errors.Is(err, tc.wantErr) || (err == nil && v != 42) {
				t.Errorf("%d calls, %d, %v; want %d calls, %v", calls, v, err, tc.wantCalls, tc.wantErr)
			}
		})
	}

	t.Run("ends with its context", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := retryUnreachable(ctx, fast, func() (int, error) { return 0, refused })
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("got %v, want the last error (connection refused)", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("returned %s after its context ended", d)
		}
	})

	t.Run("paced and capped", func(t *testing.T) {
		b := retryBackoff
		b.Jitter = 0
		var steps []time.Duration
		for range 6 {
			steps = append(steps, b.Step())
		}
		want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
		for i := range want {
			if steps[i] != want[i] {
				t.Fatalf("retry intervals %v, want %v", steps, want)
			}
		}
	})
}
