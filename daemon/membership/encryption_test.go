// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package membership

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestEncryptionSwitchWithoutPartition moves a running 3-member cluster
// from unencrypted to encrypted gossip one member at a time, by the three
// steps of [Encryption] (accept, send, on), each member restarted in place
// (same address, no leave message) for each step. Throughout, no member
// ever sees another dead or left, and metadata keeps flowing; at the end a
// member without the key is refused.
func TestEncryptionSwitchWithoutPartition(t *testing.T) {
	key := newKey(t)
	nodes := cluster(t, "enc", 3, func(c *Config) { c.Encryption = EncryptionOff })
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.m.LocalAddr()
	}

	// mu guards nodes (replaced on restart) and bad.
	var mu sync.Mutex
	var bad []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			mu.Lock()
			for _, o := range nodes {
				for _, mb := range o.m.Members() {
					if mb.State == StateDead || mb.State == StateLeft {
						bad = append(bad, fmt.Sprintf("%s saw %s %s", o.name, mb.Name, mb.State))
					}
				}
			}
			mu.Unlock()
		}
	})
	defer func() {
		close(stop)
		wg.Wait()
	}()

	version := uint64(0)
	for _, mode := range []Encryption{EncryptionAccept, EncryptionSend, EncryptionOn} {
		for i := range nodes {
			mu.Lock()
			old := nodes[i]
			mu.Unlock()
			old.kill(t)
			cfg := testConfig(old.name)
			cfg.BindAddr = addrs[i]
			cfg.Keys = [][]byte{key}
			cfg.Encryption = mode
			for j, a := range addrs {
				if j != i {
					cfg.Join = append(cfg.Join, a)
				}
			}
			restarted := time.Now()
			n := start(t, cfg)
			mu.Lock()
			nodes[i] = n
			cur := append([]*node(nil), nodes...)
			mu.Unlock()
			took := allSee(t, 5*time.Second, cur, nodeNames(cur), StateAlive)
			t.Logf("%s restarted in mode %s: all alive again %s after its start", n.name, mode, max(took, time.Since(restarted)))

			// Gossip flows both ways: a metadata change from the
			// restarted member and one from another reach everyone.
			version++
			for _, from := range []*node{n, cur[(i+1)%len(cur)]} {
				if err := from.m.SetMeta(Meta{Epoch: 1, Version: version}); err != nil {
					t.Fatal(err)
				}
				waitFor(t, 5*time.Second, fmt.Sprintf("mode %s: %s's metadata at all", mode, from.name), func() bool {
					for _, o := range cur {
						if mb, _ := o.member(from.name); o != from && mb.Meta.Version != version {
							return false
						}
					}
					return true
				})
			}
		}
	}
	mu.Lock()
	if len(bad) > 0 {
		t.Errorf("a member was seen dead or left during the switch (%d times), first: %s", len(bad), bad[0])
	}
	cur := append([]*node(nil), nodes...)
	mu.Unlock()

	// Encryption is now enforced: a member without the key is refused.
	plain := testConfig("plain")
	plain.Encryption = EncryptionOff
	plain.Join = []string{addrs[0]}
	p := start(t, plain)
	waitFor(t, 5*time.Second, "the plain member's join rejected", func() bool {
		return len(p.log.grep("gossip join rejected")) > 0
	})
	for _, o := range cur {
		if st := o.state("plain"); st != "" {
			t.Errorf("%s admitted a member without the key (%s)", o.name, st)
		}
	}
}

// TestKeysGivenDirectly: a member configured with key bytes (not a file)
// encrypts with them, and SetKeys rotates them in the running member.
func TestKeysGivenDirectly(t *testing.T) {
	k1, k2 := newKey(t), newKey(t)
	nodes := cluster(t, "direct", 2, func(c *Config) { c.Keys = [][]byte{k1} })
	for _, n := range nodes {
		if n.m.cfg.Encryption != EncryptionOn {
			t.Fatalf("%s: encryption %q with keys given, want on", n.name, n.m.cfg.Encryption)
		}
	}
	for _, step := range [][][]byte{{k1, k2}, {k2, k1}, {k2}} {
		for _, n := range nodes {
			if err := n.m.SetKeys(step); err != nil {
				t.Fatal(err)
			}
		}
		allSee(t, 3*time.Second, nodes, nodeNames(nodes), StateAlive)
	}
	if err := nodes[0].m.SetKeys([][]byte{make([]byte, 7)}); err == nil {
		t.Error("SetKeys accepted a 7-byte key")
	}
	old := testConfig("oldkey")
	old.Keys = [][]byte{k1}
	old.Join = []string{nodes[0].m.LocalAddr()}
	o := start(t, old)
	waitFor(t, 5*time.Second, "the old key rejected", func() bool { return len(o.log.grep("gossip join rejected")) > 0 })
	if st := nodes[0].state("oldkey"); st != "" {
		t.Errorf("member with the dropped key is %s", st)
	}
	nofile, err := New(testConfig("nofile"))
	if err != nil {
		t.Fatal(err)
	}
	if err := nofile.SetKeys([][]byte{k1}); err == nil {
		t.Error("SetKeys on a member without Keys: no error")
	}
}
