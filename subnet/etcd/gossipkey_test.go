// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcd

import (
	"bytes"
	"encoding/base64"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// TestGossipKeyCreatedOnce: 20 nodes asking at once for the cluster's
// gossip key (each with its own client, as nodes have) all get the same
// 32-byte key; it is stored once, in base64, at <prefix>/gossip-key, and
// later callers get it too. The key never reaches the log.
func TestGossipKeyCreatedOnce(t *testing.T) {
	base := newStore(t)
	var logged bytes.Buffer
	var logMu sync.Mutex
	const n = 20
	stores := make([]*Store, n)
	for i := range stores {
		l := logrus.New()
		l.SetLevel(logrus.DebugLevel)
		l.SetOutput(lockedWriter{&logMu, &logged})
		stores[i] = New(Config{Client: newClient(t), Prefix: base.Prefix(), Log: l})
	}
	keys := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			keys[i], errs[i] = s.GossipKey(ctxT(t, 20*time.Second))
		}()
	}
	close(start)
	wg.Wait()
	for i := range keys {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if len(keys[i]) != 32 || !bytes.Equal(keys[i], keys[0]) {
			t.Fatalf("caller %d got a key of %d bytes, different from caller 0's", i, len(keys[i]))
		}
	}
	if bytes.Equal(keys[0], make([]byte, 32)) {
		t.Fatal("the key is all zeroes")
	}
	resp, err := base.c.Get(ctxT(t, 10*time.Second), base.Prefix()+"/gossip-key")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("read the stored key: %v", err)
	}
	if kv := resp.Kvs[0]; string(kv.Value) != base64.StdEncoding.EncodeToString(keys[0]) || kv.Version != 1 || kv.Lease != 0 {
		t.Errorf("stored key: version %d, lease %x, matches %t; want written once, on no lease, the key in base64",
			kv.Version, kv.Lease, string(kv.Value) == base64.StdEncoding.EncodeToString(keys[0]))
	}
	later, err := base.GossipKey(ctxT(t, 10*time.Second))
	if err != nil || !bytes.Equal(later, keys[0]) {
		t.Errorf("a later caller: %v, same key %t", err, bytes.Equal(later, keys[0]))
	}
	logMu.Lock()
	out := logged.String()
	logMu.Unlock()
	if c := strings.Count(out, "created the cluster's gossip key"); c != 1 {
		t.Errorf("creation logged %d times, want once:\n%s", c, out)
	}
	for _, form := range []string{base64.StdEncoding.EncodeToString(keys[0]), string(keys[0]), base64.RawStdEncoding.EncodeToString(keys[0])} {
		if strings.Contains(out, form) {
			t.Errorf("the log holds the key:\n%s", out)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// TestGossipKeyStored: a key an operator put there (any AES size) is
// used as it is; a value that is no key is an error that does not quote
// it, and is left alone.
func TestGossipKeyStored(t *testing.T) {
	s := newStore(t)
	k16 := []byte("0123456789abcdef")
	put(t, s, map[string]string{s.GossipKeyKey(): base64.StdEncoding.EncodeToString(k16)})
	if got, err := s.GossipKey(ctxT(t, 10*time.Second)); err != nil || !bytes.Equal(got, k16) {
		t.Errorf("operator's 16-byte key: %v, same %t", err, bytes.Equal(got, k16))
	}
	for _, bad := range []string{"not base64!", base64.StdEncoding.EncodeToString([]byte("short")), ""} {
		put(t, s, map[string]string{s.GossipKeyKey(): bad})
		_, err := s.GossipKey(ctxT(t, 10*time.Second))
		if err == nil || !strings.Contains(err.Error(), "not a key of 16, 24 or 32 bytes in base64") || (bad != "" && strings.Contains(err.Error(), bad)) {
			t.Errorf("stored %q: %v", bad, err)
		}
		resp, err := s.c.Get(ctxT(t, 10*time.Second), s.GossipKeyKey())
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != bad {
			t.Errorf("stored %q was replaced: %v", bad, err)
		}
	}
}
