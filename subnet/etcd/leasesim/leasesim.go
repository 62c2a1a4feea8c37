// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package leasesim writes simulated nodes' lease records into a real etcd,
// in the layout weft's store keeps them (a lease key per subnet holding
// the node's record, and the node name's index entry, on one etcd lease),
// so that a real weftd sees thousands of peers without thousands of
// daemons. The scale tests, the drift test and the scale benchmarks share
// it.
//
// Simulated node i is named sim-<i>, holds the i-th free subnet of the
// network at its subnet length, has the public IP 198.19.<i/250>.<1+i%250>
// (inside the benchmarking range 198.18.0.0/15, away from the test nodes'
// 198.18.x.y) and the VTEP MAC 02:57:xx:xx:xx:xx made of i. No packet is
// ever sent to these peers: they exist to be programmed. Its
// [subnet.Lease] names the simulation's etcd lease, so that endpoints can
// be published for it ([subnetetcd.Store.PublishEndpoints]).
package leasesim

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/subnet"
	subnetetcd "github.com/weftnet/weft/subnet/etcd"
)

// MaxPeers is the most nodes a simulation holds (the public IPs it hands
// out stay inside 198.19.0.0/16).
const MaxPeers = 250 * 256

// opsPerTxn keeps a transaction under etcd's default limit of 128
// operations.
const opsPerTxn = 120

// Sim is a set of simulated nodes in one store.
type Sim struct {
	cli    *clientv3.Client
	store  *subnetetcd.Store
	leases []subnet.Lease
	lease  clientv3.LeaseID
}

// New returns a simulation that writes through cli under the store prefix
// prefix ("" for the default).
func New(cli *clientv3.Client, prefix string) *Sim {
	return &Sim{cli: cli, store: subnetetcd.New(subnetetcd.Config{Client: cli, Prefix: prefix})}
}

// Leases returns the simulated leases written so far, in the order they
// were written.
func (s *Sim) Leases() []subnet.Lease { return s.leases }

// Node returns simulated node i's record (without a subnet).
func Node(i int) subnet.Record {
	return subnet.Record{
		NodeName:    fmt.Sprintf("sim-%05d", i),
		NodeID:      fmt.Sprintf("00000000-0000-4000-8000-%012x", i),
		PublicIP:    PublicIP(i),
		BackendType: subnet.BackendVXLAN,
		BackendData: subnet.BackendData{VTEPMAC: net.HardwareAddr{0x02, 0x57, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}.String()},
		Version:     1,
	}
}

// PublicIP is simulated node i's public IP.
func PublicIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 19, byte(i / 250), byte(1 + i%250)})
}

// Add writes n more simulated nodes, each on a free IPv4 subnet of cfg's
// network (skipping the subnets any lease key holds now), all on one etcd
// lease of ttl, and returns their leases. The subnet's network must be
// large enough.
func (s *Sim) Add(ctx context.Context, cfg *subnet.Config, n int, ttl time.Duration) ([]subnet.Lease, error) {
	if len(s.leases)+n > MaxPeers {
		return nil, fmt.Errorf("simulate %d nodes: at most %d", len(s.leases)+n, MaxPeers)
	}
	taken, err := s.taken(ctx)
	if err != nil {
		return nil, err
	}
	if s.lease == 0 {
		g, err := s.cli.Grant(ctx, int64(ttl.Seconds()))
		if err != nil {
			return nil, fmt.Errorf("grant etcd lease: %w", err)
		}
		s.lease = g.ID
	}
	first := len(s.leases)
	space := cfg.IPv4Space()
	next := uint64(0) // the next index into space to try
	var batch []clientv3.Op
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := s.cli.Txn(ctx).Then(batch...).Commit()
		batch = batch[:0]
		if err != nil {
			return fmt.Errorf("write simulated leases: %w", err)
		}
		return nil
	}
	for i := first; i < first+n; i++ {
		var p netip.Prefix
		for {
			if next >= space.Size() {
				return nil, fmt.Errorf("network %s has no free /%d left after %d simulated nodes", cfg.Network, cfg.SubnetLen, i)
			}
			p = space.Subnet(next)
			next++
			if !taken[p] {
				break
			}
		}
		l := subnet.Lease{Subnet: p, Record: Node(i), LeaseID: int64(s.lease)}
		ops, err := s.store.RecordOps(l, s.lease)
		if err != nil {
			return nil, err
		}
		if len(batch)+len(ops) > opsPerTxn {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		batch = append(batch, ops...)
		s.leases = append(s.leases, l)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return s.leases[first:], nil
}

// Update rewrites simulated lease i (an index into Leases) with change
// applied to its record, and returns the new lease.
func (s *Sim) Update(ctx context.Context, i int, change func(*subnet.Record)) (subnet.Lease, error) {
	if i < 0 || i >= len(s.leases) {
		return subnet.Lease{}, fmt.Errorf("no simulated lease %d", i)
	}
	l := s.leases[i]
	change(&l.Record)
	l.Record.Version++
	ops, err := s.store.RecordOps(l, s.lease)
	if err != nil {
		return subnet.Lease{}, err
	}
	if _, err := s.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
		return subnet.Lease{}, fmt.Errorf("update simulated lease %s: %w", l.Subnet, err)
	}
	s.leases[i] = l
	return l, nil
}

// Close revokes the etcd lease of every simulated record, deleting them
// all.
func (s *Sim) Close(ctx context.Context) error {
	if s.lease == 0 {
		return nil
	}
	_, err := s.cli.Revoke(ctx, s.lease)
	s.lease, s.leases = 0, nil
	return err
}

// taken reads which subnets lease keys hold now.
func (s *Sim) taken(ctx context.Context) (map[netip.Prefix]bool, error) {
	resp, err := s.cli.Get(ctx, s.store.LeasesPrefix(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("list lease keys: %w", err)
	}
	out := make(map[netip.Prefix]bool, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		p, err := subnet.ParseKeyName(strings.TrimPrefix(string(kv.Key), s.store.LeasesPrefix()))
		if err != nil {
			return nil, fmt.Errorf("list lease keys: %w", err)
		}
		out[p.Masked()] = true
	}
	return out, nil
}
