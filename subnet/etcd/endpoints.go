// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/subnet"
)

// Pod endpoints. Each node publishes its own pods at
//
//	<prefix>/endpoints/<node>/<key>   (key: the pod's bridge port)
//
// as the JSON of [endpointValue], every key attached to the etcd lease of
// the node's subnet lease: when the node's lease expires, its endpoints
// vanish with it. A node writes only below its own name, and each write is
// guarded by its lease key still being attached to that etcd lease (so a
// node whose lease was lost or replaced cannot write). Readers trust none
// of it: each endpoint is checked against the leases read at the same
// revision ([subnet.CheckEndpoint]): addresses outside the publishing
// node's subnets are rejected and reported, as rejected leases are.

var _ subnet.EndpointSource = (*Store)(nil)
var _ subnet.EndpointPublisher = (*Store)(nil)

// ErrEndpointLimit: a node asked to publish more than
// [subnet.MaxNodeEndpoints] endpoints; the first ones (by key) were
// published, the rest not.
var ErrEndpointLimit = errors.New("too many endpoints for one node")

// maxEndpointValue bounds an endpoint value read from etcd.
const maxEndpointValue = 16 << 10

// maxTxnOps is the most operations put in one transaction (etcd's
// default --max-txn-ops is 128; one is the guard).
const maxTxnOps = 100

// EndpointsPrefix returns the prefix of all endpoint keys (ending in a
// slash).
func (s *Store) EndpointsPrefix() string { return s.prefix + "/endpoints/" }

// NodeEndpointsPrefix returns the prefix of node's endpoint keys.
func (s *Store) NodeEndpointsPrefix(node string) string { return s.EndpointsPrefix() + node + "/" }

// endpointValue is what an endpoint key holds: the endpoint without its
// node and key, which the key names.
type endpointValue struct {
	subnet.PodIdentity
	IPv4 netip.Addr `json:"ipv4,omitzero"`
	IPv6 netip.Addr `json:"ipv6,omitzero"`
}

func encodeEndpoint(e subnet.Endpoint) ([]byte, error) {
	return json.Marshal(endpointValue{PodIdentity: e.PodIdentity, IPv4: e.IPv4, IPv6: e.IPv6})
}

// parseEndpoint reads the endpoint at key name (node/key below the
// endpoints prefix) from data, checking its own fields (not yet against
// the leases).
func parseEndpoint(name string, data []byte) (subnet.Endpoint, error) {
	node, key, ok := strings.Cut(name, "/")
	if !ok || node == "" || key == "" || strings.Contains(key, "/") {
		return subnet.Endpoint{}, errors.New("key is not <node>/<key>")
	}
	if len(data) > maxEndpointValue {
		return subnet.Endpoint{}, fmt.Errorf("value is %d bytes, more than %d", len(data), maxEndpointValue)
	}
	var v endpointValue
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return subnet.Endpoint{}, fmt.Errorf("value does not parse: %s", firstLine(err.Error()))
	}
	if dec.More() {
		return subnet.Endpoint{}, errors.New("value has trailing data")
	}
	e := subnet.Endpoint{Node: node, Key: key, PodIdentity: v.PodIdentity, IPv4: v.IPv4, IPv6: v.IPv6}
	if err := e.Validate(); err != nil {
		return subnet.Endpoint{}, err
	}
	return e, nil
}

// PublishEndpoints makes the endpoints stored below l's node exactly eps,
// all attached to l's etcd lease: it writes the missing and changed ones
// (and those attached to another etcd lease) and deletes the others. Each
// transaction is guarded by l's primary lease key being still attached to
// l's etcd lease; when it is not, nothing more is written and the error
// wraps [subnet.ErrLeaseLost]. More than [subnet.MaxNodeEndpoints]
// endpoints: the first ones by key are published and the error wraps
// [ErrEndpointLimit]. An invalid endpoint is an error and nothing is
// written.
func (s *Store) PublishEndpoints(ctx context.Context, l *subnet.Lease, eps []subnet.Endpoint) (put, deleted int, err error) {
	node := l.Record.NodeName
	if l.LeaseID == 0 || node == "" {
		return 0, 0, fmt.Errorf("publish endpoints: lease of %s has no etcd lease or node name", l.Primary())
	}
	want := map[string][]byte{}
	keys := make([]string, 0, len(eps))
	for _, e := range eps {
		e.Node = node
		if err := e.Validate(); err != nil {
			return 0, 0, fmt.Errorf("publish endpoint %s/%s: %w", e.Namespace, e.Name, err)
		}
		if _, dup := want[e.Key]; dup {
			return 0, 0, fmt.Errorf("publish endpoints: key %q given twice", e.Key)
		}
		b, err := encodeEndpoint(e)
		if err != nil {
			return 0, 0, fmt.Errorf("encode endpoint %s: %w", e.Key, err)
		}
		want[e.Key] = b
		keys = append(keys, e.Key)
	}
	var limitErr error
	if len(keys) > subnet.MaxNodeEndpoints {
		slices.Sort(keys)
		for _, k := range keys[subnet.MaxNodeEndpoints:] {
			delete(want, k)
		}
		limitErr = fmt.Errorf("node %s has %d endpoints, %d published: %w", node, len(keys), subnet.MaxNodeEndpoints, ErrEndpointLimit)
	}

	prefix := s.NodeEndpointsPrefix(node)
	cctx, cancel := s.call(ctx)
	resp, err := s.c.Get(cctx, prefix, clientv3.WithPrefix())
	cancel()
	if err != nil {
		return 0, 0, fmt.Errorf("list endpoints of %s: %w", node, err)
	}
	var ops []clientv3.Op
	have := map[string]bool{}
	for _, kv := range resp.Kvs {
		k := strings.TrimPrefix(string(kv.Key), prefix)
		have[k] = true
		if b, ok := want[k]; !ok {
			ops = append(ops, clientv3.OpDelete(string(kv.Key)))
			deleted++
		} else if !bytes.Equal(b, kv.Value) || kv.Lease != l.LeaseID {
			ops = append(ops, clientv3.OpPut(string(kv.Key), string(b), clientv3.WithLease(clientv3.LeaseID(l.LeaseID))))
			put++
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if b, ok := want[k]; ok && !have[k] {
			ops = append(ops, clientv3.OpPut(prefix+k, string(b), clientv3.WithLease(clientv3.LeaseID(l.LeaseID))))
			put++
		}
	}
	guard := clientv3.Compare(clientv3.LeaseValue(s.LeaseKey(l.Primary())), "=", l.LeaseID)
	for len(ops) > 0 {
		n := min(len(ops), maxTxnOps)
		cctx, cancel := s.call(ctx)
		tr, err := s.c.Txn(cctx).If(guard).Then(ops[:n]...).Commit()
		cancel()
		if err != nil {
			return 0, 0, fmt.Errorf("publish endpoints of %s: %w", node, err)
		}
		if !tr.Succeeded {
			return 0, 0, fmt.Errorf("publish endpoints of %s: lease key %s is no longer on etcd lease %x: %w", node, s.LeaseKey(l.Primary()), l.LeaseID, subnet.ErrLeaseLost)
		}
		ops = ops[n:]
	}
	return put, deleted, limitErr
}

// endpointSet is the reader's state: the endpoints and lease keys at one
// revision.
type endpointSet struct {
	rev    int64
	leases map[netip.Prefix]*entry
	stray  map[string]string
	// eps holds the endpoints that parsed, bad the names (node/key) of
	// those that did not, with the reason.
	eps map[string]subnet.Endpoint
	bad map[string]string
}

func (es *endpointSet) put(name string, value []byte) {
	delete(es.eps, name)
	delete(es.bad, name)
	e, err := parseEndpoint(name, value)
	if err != nil {
		es.bad[name] = err.Error()
		return
	}
	es.eps[name] = e
}

func (es *endpointSet) view() subnet.EndpointView {
	leases := subnet.IndexLeases(leasesOf(es.leases))
	v := subnet.EndpointView{Revision: es.rev}
	for name, why := range es.bad {
		v.Rejected = append(v.Rejected, subnet.RejectedLease{Key: name, Reason: why})
	}
	// At 150 000 endpoints an endpoint is large to move: the passing ones
	// are sorted by index, then copied once into their places.
	valid := make([]subnet.Endpoint, 0, len(es.eps))
	for name, e := range es.eps {
		// es.eps holds endpoints that passed Validate (parseEndpoint).
		if err := leases.CheckHeld(e); err != nil {
			v.Rejected = append(v.Rejected, subnet.RejectedLease{Key: name, Reason: err.Error()})
			continue
		}
		valid = append(valid, e)
	}
	order := make([]int32, len(valid))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(i, j int32) int {
		a, b := &valid[i], &valid[j]
		if c := strings.Compare(a.Node, b.Node); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	if len(valid) > 0 {
		v.Endpoints = make([]subnet.Endpoint, len(valid))
		for i, j := range order {
			v.Endpoints[i] = valid[j]
		}
	}
	subnet.SortRejected(v.Rejected)
	return v
}

// slim drops from e what the endpoints' view does not read (see
// sameHolder): at thousands of nodes the records' addresses, tunnel data
// and the rest were megabytes kept twice, here and in the lease watch.
func (e *entry) slim() {
	e.val = value{
		Record:     subnet.Record{NodeName: e.val.NodeName, NodeID: e.val.NodeID},
		Subnet:     e.val.Subnet,
		IPv6Subnet: e.val.IPv6Subnet,
	}
}

// sameHolder reports whether lease key entries a and b (nil: no key) say
// the same of who holds what, which is all the endpoints' view reads of
// them (through leasesOf and CheckEndpoint): both left out of the leases
// (absent, or a record that does not parse), or both naming the same node
// and the same subnets.
func sameHolder(a, b *entry) bool {
	aIn, bIn := a != nil && a.ok, b != nil && b.ok
	if !aIn || !bIn {
		return aIn == bIn
	}
	return a.val.NodeName == b.val.NodeName && a.val.NodeID == b.val.NodeID &&
		a.val.Subnet == b.val.Subnet && a.val.IPv6Subnet == b.val.IPv6Subnet
}

// readEndpoints reads the lease keys and the endpoint keys at one
// revision.
func (s *Store) readEndpoints(ctx context.Context) (*endpointSet, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	limit := clientv3.WithLimit(int64(s.maxListKeys) + 1)
	resp, err := s.c.Txn(cctx).Then(
		clientv3.OpGet(s.LeasesPrefix(), clientv3.WithPrefix(), limit),
		clientv3.OpGet(s.EndpointsPrefix(), clientv3.WithPrefix(), limit),
	).Commit()
	if err != nil {
		return nil, fmt.Errorf("list endpoints: %w", err)
	}
	lr, er := resp.Responses[0].GetResponseRange(), resp.Responses[1].GetResponseRange()
	if err := s.checkListed(s.LeasesPrefix(), lr.Kvs, lr.More); err != nil {
		return nil, err
	}
	if err := s.checkListed(s.EndpointsPrefix(), er.Kvs, er.More); err != nil {
		return nil, err
	}
	sn := s.snapshotOf(resp.Header.Revision, lr.Kvs, nil)
	for _, e := range sn.leases {
		e.slim()
	}
	es := &endpointSet{rev: resp.Header.Revision, leases: sn.leases, stray: sn.stray, eps: map[string]subnet.Endpoint{}, bad: map[string]string{}}
	for _, kv := range er.Kvs {
		es.put(strings.TrimPrefix(string(kv.Key), s.EndpointsPrefix()), kv.Value)
	}
	return es, nil
}

// ListEndpoints returns every published endpoint that passes
// [subnet.CheckEndpoint] against the leases of the same revision; the
// others are in the view's Rejected.
func (s *Store) ListEndpoints(ctx context.Context) (subnet.EndpointView, error) {
	es, err := s.readEndpoints(ctx)
	if err != nil {
		return subnet.EndpointView{}, err
	}
	return es.view(), nil
}

// WatchEndpoints calls fn with a complete, checked view of the endpoints
// after the initial list and after every change of an endpoint or a
// lease, until ctx is done; then it returns nil. It lists the leases and
// endpoints at one revision, then watches both from the next; when the
// watch breaks it lists again. fn is never called concurrently.
func (s *Store) WatchEndpoints(ctx context.Context, fn func(subnet.EndpointView)) error {
	bo := newBackoff(250*time.Millisecond, 10*time.Second)
	for {
		err := s.watchEndpointsOnce(ctx, fn, bo)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, rpctypes.ErrCompacted) {
			s.log.WithError(err).Info("endpoint watch hit a compaction, relisting")
			continue
		}
		d := bo.next()
		s.log.WithError(err).WithField("retryIn", d.Seconds()).Debug("endpoint watch interrupted, relisting")
		if !sleep(ctx, d) {
			return nil
		}
	}
}

func (s *Store) watchEndpointsOnce(ctx context.Context, fn func(subnet.EndpointView), bo *backoff) error {
	es, err := s.readEndpoints(ctx)
	if err != nil {
		return err
	}
	fn(es.view())
	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer wcancel()
	// One watch on the common prefix: lease and endpoint events arrive in
	// revision order in one stream; other keys are skipped.
	wch := s.c.Watch(wctx, s.prefix+"/", clientv3.WithPrefix(), clientv3.WithRev(es.rev+1), clientv3.WithProgressNotify())
	for wr := range wch {
		if err := wr.Err(); err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) {
				return fmt.Errorf("watch from revision %d: %w (compacted at %d)", es.rev+1, err, wr.CompactRevision)
			}
			return fmt.Errorf("watch endpoints: %w", err)
		}
		bo.reset()
		if wr.Header.Revision > es.rev {
			es.rev = wr.Header.Revision
		}
		changed := false
		for _, ev := range wr.Events {
			key := string(ev.Kv.Key)
			switch {
			case strings.HasPrefix(key, s.EndpointsPrefix()):
				name := strings.TrimPrefix(key, s.EndpointsPrefix())
				if ev.Type == mvccpb.PUT {
					es.put(name, ev.Kv.Value)
				} else {
					delete(es.eps, name)
					delete(es.bad, name)
				}
				changed = true
			case strings.HasPrefix(key, s.LeasesPrefix()):
				// The view reads of the leases only which node holds
				// which subnets: a lease record that changes anything
				// else (a node's address, its tunnel data) leaves it as
				// it is, and is not worth a new view of every endpoint.
				p, isLease := s.leaseKeySubnet(key)
				var was *entry
				if isLease {
					was = es.leases[p]
				}
				switch {
				case ev.Type == mvccpb.PUT:
					s.addEntry(es.leases, es.stray, ev.Kv)
					if isLease {
						es.leases[p].slim()
					}
				case isLease:
					delete(es.leases, p)
				default:
					delete(es.stray, strings.TrimPrefix(key, s.LeasesPrefix()))
				}
				if isLease && !sameHolder(was, es.leases[p]) {
					changed = true
				}
			}
		}
		if len(es.eps)+len(es.bad) > s.maxListKeys || len(es.leases)+len(es.stray) > s.maxListKeys {
			return fmt.Errorf("watch endpoints: more than %d keys", s.maxListKeys)
		}
		if changed {
			fn(es.view())
		}
	}
	return errors.New("watch closed")
}
