// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e && linux

package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/e2etest"
	subnetetcd "github.com/weftnet/weft/subnet/etcd"
)

// TestRestartRevokesOldLease: a restarted weftd re-binds its keys to a new
// etcd lease (same subnet, same epoch) and revokes the old one, whether
// etcd answered at its start or only later (an offline start from the
// saved lease, claimed again in the background): no empty etcd lease is
// left to linger until its TTL.
func TestRestartRevokesOldLease(t *testing.T) {
	c := e2etest.NewCluster(t, e2e.Options{Nodes: 1})
	n := c.Nodes()[0]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cli, err := c.Etcd.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	st := subnetetcd.New(subnetetcd.Config{Client: cli, Prefix: e2e.EtcdPrefix})
	lease := func() (id clientv3.LeaseID, epoch int64) {
		t.Helper()
		v, err := st.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(v.Leases) != 1 {
			t.Fatalf("%d leases in etcd, want 1", len(v.Leases))
		}
		return clientv3.LeaseID(v.Leases[0].LeaseID), v.Leases[0].Epoch
	}
	check := func(t *testing.T, old clientv3.LeaseID, oldEpoch int64) {
		t.Helper()
		var cur clientv3.LeaseID
		err := e2e.Eventually(30*time.Second, 100*time.Millisecond, func() error {
			var epoch int64
			if cur, epoch = lease(); cur == old {
				return errors.New("the key is still on the old etcd lease")
			}
			if epoch != oldEpoch {
				t.Fatalf("epoch %d after the restart, want %d", epoch, oldEpoch)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// The claim moves the keys in one transaction and revokes the old
		// etcd lease in the next request: give that request its moment.
		err = e2e.Eventually(5*time.Second, 50*time.Millisecond, func() error {
			ttl, err := cli.TimeToLive(ctx, old, clientv3.WithAttachedKeys())
			if err != nil {
				return err
			}
			if ttl.TTL != -1 {
				return fmt.Errorf("old etcd lease %x: TTL %d s with %d keys, want revoked (TTL -1)", int64(old), ttl.TTL, len(ttl.Keys))
			}
			ls, err := cli.Leases(ctx)
			if err != nil {
				return err
			}
			var ids []string
			for _, l := range ls.Leases {
				ids = append(ids, fmt.Sprintf("%x", int64(l.ID)))
			}
			if len(ls.Leases) != 1 || ls.Leases[0].ID != cur {
				return fmt.Errorf("etcd holds leases %v, want only %x", ids, int64(cur))
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	}

	t.Run("etcd-up", func(t *testing.T) {
		old, epoch := lease()
		if err := n.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		check(t, old, epoch)
	})
	t.Run("etcd-down-at-start", func(t *testing.T) {
		old, epoch := lease()
		if err := c.Etcd.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := n.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		if err := n.WaitReady(ctx, 60*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := c.Etcd.Start(ctx); err != nil {
			t.Fatal(err)
		}
		check(t, old, epoch)
	})
}
