// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kube

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// TestWatchReachability: the outcomes of the informers' requests (through
// observed) reach WatchReachability's callback once per change; a request
// cut short by its own context says nothing.
func TestWatchReachability(t *testing.T) {
	s := &Store{}
	var fail error // what the wrapped list and watch return
	lw := s.observed(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return nil, fail
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			if fail != nil {
				return nil, fail
			}
			return watch.NewEmptyWatch(), nil
		},
	})
	got := make(chan error, 16)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.WatchReachability(ctx, func(err error) { got <- err }) }()

	next := func(want string) {
		t.Helper()
		select {
		case err := <-got:
			if fmt.Sprint(err) != want {
				t.Fatalf("reachability %v, want %s", err, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no reachability report, want %s", want)
		}
	}
	quiet := func() {
		t.Helper()
		select {
		case err := <-got:
			t.Fatalf("reported %v without a change", err)
		case <-time.After(100 * time.Millisecond):
		}
	}

	quiet() // no request yet: nothing to say
	if _, err := lw.ListWithContext(ctx, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	next("<nil>")
	if _, err := lw.WatchWithContext(ctx, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	quiet() // still reachable: no report
	fail = errors.New("dial tcp 198.18.0.1:6443: connect: connection refused")
	for range 3 {
		_, _ = lw.WatchWithContext(ctx, metav1.ListOptions{})
	}
	next(fail.Error()) // once, for three failures
	quiet()
	// The API server answering with a refusal is reachable; one that
	// cannot serve for now is not.
	fail = apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, "", errors.New("RBAC roles not loaded yet"))
	_, _ = lw.WatchWithContext(ctx, metav1.ListOptions{})
	next("<nil>")
	fail = apierrors.NewServiceUnavailable("starting")
	_, _ = lw.WatchWithContext(ctx, metav1.ListOptions{})
	next(fail.Error())
	quiet()
	fail = fmt.Errorf("watch: %w", context.Canceled)
	_, _ = lw.WatchWithContext(ctx, metav1.ListOptions{})
	fail = nil
	quiet() // a cancelled request changes nothing
	if _, err := lw.WatchWithContext(ctx, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	next("<nil>")

	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("WatchReachability after its context ended: %v", err)
	}
}
