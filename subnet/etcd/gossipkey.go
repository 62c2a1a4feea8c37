// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcd

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/subnet"
)

var _ subnet.GossipKeys = (*Store)(nil)

// gossipKeySize is the size of a key GossipKey creates (AES-256).
const gossipKeySize = 32

// GossipKeyKey returns the key that holds the cluster's gossip key.
func (s *Store) GossipKeyKey() string { return s.prefix + "/gossip-key" }

// GossipKey returns the cluster's gossip key from <prefix>/gossip-key,
// creating it first when absent (see [subnet.GossipKeys]). It is one
// transaction: if the key does not exist, put a new random one; else read
// it. The value is the key in standard base64, as weftctl gossip-key
// prints it and a gossip key file holds it; it is not attached to an etcd
// lease, so it outlives every node.
func (s *Store) GossipKey(ctx context.Context) ([]byte, error) {
	key := make([]byte, gossipKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("gossip key: read random bytes: %w", err)
	}
	k := s.GossipKeyKey()
	cctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.c.Txn(cctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, base64.StdEncoding.EncodeToString(key))).
		Else(clientv3.OpGet(k)).
		Commit()
	if err != nil {
		return nil, fmt.Errorf("gossip key: read or create %s: %w", k, err)
	}
	if resp.Succeeded {
		s.log.WithField("key", k).Info("created the cluster's gossip key in etcd")
		return key, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		// Deleted between the compare and the read: the transaction is
		// atomic, so this cannot happen; say so rather than guess.
		return nil, fmt.Errorf("gossip key: %s vanished within one transaction", k)
	}
	got, err := base64.StdEncoding.DecodeString(string(kvs[0].Value))
	if err != nil || (len(got) != 16 && len(got) != 24 && len(got) != 32) {
		// Never quote the value: it may be a mangled secret.
		return nil, fmt.Errorf("gossip key: %s holds %d bytes that are not a key of 16, 24 or 32 bytes in base64; "+
			"put a key there (weftctl gossip-key prints one) or delete it so that the next node creates one", k, len(kvs[0].Value))
	}
	return got, nil
}
