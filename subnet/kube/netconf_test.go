// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kube

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/weftnet/weft/subnet"
)

const testNetConf = `{"Network": "10.244.0.0/16", "IPv6Network": "fd10:244::/56", "Backend": {"Type": "vxlan"}}`

// TestConfigFile: --net-conf needs no API server: the file is read,
// followed, an invalid one reported naming the file, a missing one as
// ErrNoConfig.
func TestConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "net-conf.json")
	// New contacts nothing; this address is never dialled.
	s, err := New(&rest.Config{Host: "https://198.18.0.250:6443"}, Config{NetConfFile: path, FilePollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.GetConfig(ctx); !errors.Is(err, subnet.ErrNoConfig) || !strings.Contains(err.Error(), path) {
		t.Fatalf("GetConfig without the file = %v, want ErrNoConfig naming it", err)
	}
	if err := os.WriteFile(path, []byte(testNetConf), 0o644); err != nil {
		t.Fatal(err)
	}
	type result struct {
		c   *subnet.Config
		err error
	}
	results := make(chan result, 16)
	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.WatchConfig(wctx, func(c *subnet.Config, err error) { results <- result{c, err} }) }()
	defer func() { wcancel(); <-done }()
	next := func() result {
		t.Helper()
		select {
		case r := <-results:
			return r
		case <-ctx.Done():
			t.Fatal("WatchConfig: no call")
		}
		return result{}
	}
	if r := next(); r.err != nil || r.c.Backend.VNI != 1 || r.c.IPv6SubnetLen != 64 {
		t.Fatalf("first: %+v, %v", r.c, r.err)
	}
	if err := os.WriteFile(path, []byte(`{"Network": "nope"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	var ce *subnet.ConfigError
	if r := next(); !errors.As(r.err, &ce) || ce.Key != "file "+path {
		t.Fatalf("after an invalid file: %v, want a ConfigError naming the file", r.err)
	}
	// A ConfigMap mounted as a volume changes by a symlink swap.
	fresh := filepath.Join(filepath.Dir(path), "fresh.json")
	if err := os.WriteFile(fresh, []byte(strings.Replace(testNetConf, `"vxlan"`, `"vxlan", "VNI": 9`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	link := path + ".link"
	if err := os.Symlink(fresh, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(link, path); err != nil {
		t.Fatal(err)
	}
	if r := next(); r.err != nil || r.c.Backend.VNI != 9 {
		t.Fatalf("after a valid file: %+v, %v", r.c, r.err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if r := next(); !errors.Is(r.err, subnet.ErrNoConfig) {
		t.Fatalf("after removal: %v, want ErrNoConfig", r.err)
	}
	// Unchanged content gives no call.
	select {
	case r := <-results:
		t.Errorf("a call without a change: %+v, %v", r.c, r.err)
	case <-time.After(200 * time.Millisecond):
	}
}
