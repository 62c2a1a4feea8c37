// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build (e2e || bench) && linux

package e2e_test

import (
	"sync"
	"sync/atomic"
	"testing"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/kubetest"
	weftkube "github.com/weftnet/weft/etc/kubernetes"
)

// Helpers of the Kubernetes-mode e2e tests and benchmarks.

// kubeOptions are the options of a Kubernetes-mode cluster: the programs
// of make kube-tools (the test skips without them, fails under CI) and
// weft's manifests.
func kubeOptions(t *testing.T) *e2e.KubeOptions {
	t.Helper()
	ko := &e2e.KubeOptions{Tools: kubetest.RequireTools(t)}
	for _, name := range weftkube.ModeManifests {
		data, err := weftkube.Manifest(name)
		if err != nil {
			t.Fatal(err)
		}
		ko.Manifests = append(ko.Manifests, e2e.Manifest{Name: name, Data: data})
	}
	return ko
}

// kubeAdminClient returns an admin clientset and config for c's API
// server, dialling from its underlay namespace.
func kubeAdminClient(t *testing.T, c *e2e.Cluster) (kubernetes.Interface, *rest.Config) {
	t.Helper()
	url, ca, token, ok := c.KubeAdmin()
	if !ok {
		t.Fatal("not a Kubernetes-mode cluster")
	}
	rc := &rest.Config{Host: url, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: ca},
		Dial: c.Underlay.DialContext, QPS: 500, Burst: 1000}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return cs, rc
}

// parallel runs fn(0..n-1), 16 at a time, and fails the test on the first
// error.
func parallel(t *testing.T, n int, fn func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	var next atomic.Int64
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}
