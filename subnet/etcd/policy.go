// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/daemon/policy"
	"github.com/weftnet/weft/subnet"
)

// Network policies and namespace labels (etcd mode) live under the
// network's prefix:
//
//	<prefix>/policies/<namespace>/<name>   a NetworkPolicy, JSON
//	<prefix>/namespaces/<name>             {"labels":{...}}
//
// Bounds of what the store writes and reads of them.
const (
	// MaxPolicySize is the largest policy or namespace entry written or
	// read: 1.5 MiB, etcd's default request limit, which bounds every
	// object of a Kubernetes API server too.
	MaxPolicySize = 3 << 19
	// MaxPolicyKeys is the most keys one listing of policies/ (or of
	// namespaces/) reads; a listing with more fails, saying so.
	MaxPolicyKeys = 1 << 14
	// MaxPolicyListBytes bounds the bytes of one listing of policies/
	// and namespaces/ together; it is read in pages, so no reply is
	// larger than a page.
	MaxPolicyListBytes = 64 << 20
	// policyPage is the most keys of one page of a listing.
	policyPage = 256
)

// ErrNotFound is returned for a policy that is not in the store.
var ErrNotFound = errors.New("not found")

// PoliciesPrefix is where the network policies are kept.
func (s *Store) PoliciesPrefix() string { return s.prefix + "/policies/" }

// PolicyKey is the key of policy name in namespace ns.
func (s *Store) PolicyKey(ns, name string) string { return s.PoliciesPrefix() + ns + "/" + name }

// NamespacesPrefix is where namespace labels are kept.
func (s *Store) NamespacesPrefix() string { return s.prefix + "/namespaces/" }

// NamespaceKey is the key of namespace name's labels.
func (s *Store) NamespaceKey(name string) string { return s.NamespacesPrefix() + name }

// namespaceValue is what a namespace key holds.
type namespaceValue struct {
	Labels map[string]string `json:"labels"`
}

// EncodePolicy returns the stored form of np: the object with its type
// and only the metadata that policy semantics or an operator use (name,
// namespace, labels, annotations), after validation. The error of an
// invalid object is a [policy.ErrorList].
func EncodePolicy(np *networkingv1.NetworkPolicy) ([]byte, error) {
	if errs := policy.Validate(np); errs != nil {
		return nil, errs
	}
	out := networkingv1.NetworkPolicy{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{
			Name: np.Name, Namespace: np.Namespace, Labels: np.Labels, Annotations: np.Annotations,
		},
		Spec: np.Spec,
	}
	data, err := json.Marshal(&out)
	if err != nil {
		return nil, fmt.Errorf("encode policy %s/%s: %w", np.Namespace, np.Name, err)
	}
	if len(data) > MaxPolicySize {
		return nil, fmt.Errorf("policy %s/%s is %d bytes encoded, more than %d", np.Namespace, np.Name, len(data), MaxPolicySize)
	}
	return data, nil
}

// decodePolicy parses and checks the policy stored at key ns/name: size,
// JSON (unknown fields refused), kind, that its metadata names the key,
// and [policy.Validate]. On a validation failure it also returns what was
// decoded, for the deny-all stand-in.
func decodePolicy(ns, name string, data []byte) (*networkingv1.NetworkPolicy, error) {
	if len(data) > MaxPolicySize {
		return nil, fmt.Errorf("entry is %d bytes, more than %d", len(data), MaxPolicySize)
	}
	var np networkingv1.NetworkPolicy
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&np); err != nil {
		return nil, fmt.Errorf("not a NetworkPolicy: %w", err)
	}
	if dec.More() {
		return nil, errors.New("not a NetworkPolicy: data after the object")
	}
	if np.Kind != "NetworkPolicy" || np.APIVersion != "networking.k8s.io/v1" {
		return nil, fmt.Errorf("kind %q of %q, want NetworkPolicy of networking.k8s.io/v1", np.Kind, np.APIVersion)
	}
	if np.Namespace != ns || np.Name != name {
		return &np, fmt.Errorf("object names %s/%s, not its key's %s/%s", np.Namespace, np.Name, ns, name)
	}
	if errs := policy.Validate(&np); errs != nil {
		return &np, errs
	}
	return &np, nil
}

// decodeNamespace parses and checks the labels stored for namespace name;
// the result includes the implicit name label.
func decodeNamespace(name string, data []byte) (subnet.PolicyNamespace, error) {
	if len(data) > MaxPolicySize {
		return subnet.PolicyNamespace{}, fmt.Errorf("entry is %d bytes, more than %d", len(data), MaxPolicySize)
	}
	var v namespaceValue
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return subnet.PolicyNamespace{}, fmt.Errorf("not a namespace record: %w", err)
	}
	ns := policy.Namespace{Name: name, Labels: v.Labels}
	if errs := policy.ValidateNamespace(ns); errs != nil {
		return subnet.PolicyNamespace{}, errs
	}
	return withNameLabel(name, v.Labels), nil
}

func withNameLabel(name string, labels map[string]string) subnet.PolicyNamespace {
	l := maps.Clone(labels)
	if l == nil {
		l = map[string]string{}
	}
	l[policy.NamespaceNameLabel] = name
	return subnet.PolicyNamespace{Name: name, Labels: l}
}

// PutPolicies writes nps in one transaction, replacing policies of the
// same namespace and name; nothing is written when any of them is invalid
// (the error names it and its field paths) or when two share a key.
func (s *Store) PutPolicies(ctx context.Context, nps []*networkingv1.NetworkPolicy) error {
	var ops []clientv3.Op
	seen := map[string]bool{}
	for i, np := range nps {
		data, err := EncodePolicy(np)
		if err != nil {
			return fmt.Errorf("object %d (%s/%s): %w", i+1, np.Namespace, np.Name, err)
		}
		k := s.PolicyKey(np.Namespace, np.Name)
		if seen[k] {
			return fmt.Errorf("object %d: policy %s/%s is given twice", i+1, np.Namespace, np.Name)
		}
		seen[k] = true
		ops = append(ops, clientv3.OpPut(k, string(data)))
	}
	if len(ops) == 0 {
		return errors.New("no policies to write")
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	if _, err := s.c.Txn(cctx).Then(ops...).Commit(); err != nil {
		return fmt.Errorf("write policies: %w", err)
	}
	return nil
}

// GetPolicy reads policy name of namespace ns; an entry that fails its
// checks is an error naming the key.
func (s *Store) GetPolicy(ctx context.Context, ns, name string) (*networkingv1.NetworkPolicy, error) {
	k := s.PolicyKey(ns, name)
	cctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.c.Get(cctx, k)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", k, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("policy %s/%s: %w", ns, name, ErrNotFound)
	}
	np, err := decodePolicy(ns, name, resp.Kvs[0].Value)
	if err != nil {
		return nil, fmt.Errorf("entry %s is invalid: %w", k, err)
	}
	return np, nil
}

// DeletePolicy deletes policy name of namespace ns; [ErrNotFound] when
// there is none.
func (s *Store) DeletePolicy(ctx context.Context, ns, name string) error {
	cctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.c.Delete(cctx, s.PolicyKey(ns, name))
	if err != nil {
		return fmt.Errorf("delete policy %s/%s: %w", ns, name, err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("policy %s/%s: %w", ns, name, ErrNotFound)
	}
	return nil
}

// LabelNamespace sets the labels of set and removes those of remove on
// namespace name, and returns its labels (the implicit name label
// included). Unless overwrite is true, a label that has another value
// already is refused, as kubectl label does. The write is guarded by the
// entry's revision, retried on a race. The implicit label cannot be set
// to another value nor removed. A namespace left with no label of its own
// has no entry.
func (s *Store) LabelNamespace(ctx context.Context, name string, set map[string]string, remove []string, overwrite bool) (map[string]string, error) {
	for _, k := range remove {
		if k == policy.NamespaceNameLabel {
			return nil, fmt.Errorf("label %s cannot be removed: Kubernetes sets it on every namespace", k)
		}
	}
	k := s.NamespaceKey(name)
	for range 10 {
		cctx, cancel := s.call(ctx)
		resp, err := s.c.Get(cctx, k)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", k, err)
		}
		labels := map[string]string{}
		var cmp clientv3.Cmp
		if len(resp.Kvs) == 0 {
			cmp = clientv3.Compare(clientv3.CreateRevision(k), "=", 0)
		} else {
			cur, err := decodeNamespace(name, resp.Kvs[0].Value)
			if err != nil {
				s.log.WithError(err).Warnf("namespace entry %s is invalid; its labels are replaced", k)
			} else {
				labels = cur.Labels
			}
			cmp = clientv3.Compare(clientv3.ModRevision(k), "=", resp.Kvs[0].ModRevision)
		}
		for _, r := range remove {
			delete(labels, r)
		}
		if !overwrite {
			for _, lk := range slices.Sorted(maps.Keys(set)) {
				if old, ok := labels[lk]; ok && old != set[lk] && lk != policy.NamespaceNameLabel {
					return nil, fmt.Errorf("namespace %s: label %s already has the value %q: give --overwrite to replace it", name, lk, old)
				}
			}
		}
		maps.Copy(labels, set)
		if errs := policy.ValidateNamespace(policy.Namespace{Name: name, Labels: labels}); errs != nil {
			return nil, errs
		}
		delete(labels, policy.NamespaceNameLabel)
		var op clientv3.Op
		if len(labels) == 0 {
			op = clientv3.OpDelete(k)
		} else {
			data, err := json.Marshal(namespaceValue{Labels: labels})
			if err != nil {
				return nil, err
			}
			if len(data) > MaxPolicySize {
				return nil, fmt.Errorf("labels of namespace %s are %d bytes encoded, more than %d", name, len(data), MaxPolicySize)
			}
			op = clientv3.OpPut(k, string(data))
		}
		cctx, cancel = s.call(ctx)
		tr, err := s.c.Txn(cctx).If(cmp).Then(op).Commit()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("write %s: %w", k, err)
		}
		if tr.Succeeded {
			return withNameLabel(name, labels).Labels, nil
		}
	}
	return nil, fmt.Errorf("write %s: changed by others ten times in a row", k)
}

// listPrefix reads every key under prefix at revision rev (0: the
// latest), in pages, within the bounds; it returns the revision read.
func (s *Store) listPrefix(ctx context.Context, prefix string, rev int64, maxKeys int, budget *int) ([]*mvccpb.KeyValue, int64, error) {
	var out []*mvccpb.KeyValue
	from := prefix
	end := clientv3.GetPrefixRangeEnd(prefix)
	for {
		cctx, cancel := s.call(ctx)
		resp, err := s.c.Get(cctx, from, clientv3.WithRange(end), clientv3.WithLimit(policyPage), clientv3.WithRev(rev))
		cancel()
		if err != nil {
			return nil, 0, fmt.Errorf("list %s: %w", prefix, err)
		}
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			*budget -= len(kv.Key) + len(kv.Value)
		}
		out = append(out, resp.Kvs...)
		if len(out) > maxKeys {
			return nil, 0, fmt.Errorf("etcd holds more than %d keys under %s, more than weft reads in one listing", maxKeys, prefix)
		}
		if *budget < 0 {
			return nil, 0, fmt.Errorf("the entries under %s and %s take more bytes than weft reads in one listing (%d)",
				s.PoliciesPrefix(), s.NamespacesPrefix(), MaxPolicyListBytes)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return out, rev, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// PolicySource is the etcd [subnet.PolicySource]. It remembers the last
// valid version of each entry it has read, which stands in for a later
// version that fails validation. It is safe for concurrent use.
type PolicySource struct {
	s *Store

	mu       sync.Mutex
	lastPol  map[string]*networkingv1.NetworkPolicy
	lastNS   map[string]subnet.PolicyNamespace
	reported map[string]int64 // key → ModRevision of a rejection logged
}

var _ subnet.PolicySource = (*PolicySource)(nil)

// NewPolicySource returns the policy source of s.
func NewPolicySource(s *Store) *PolicySource {
	return &PolicySource{s: s, lastPol: map[string]*networkingv1.NetworkPolicy{},
		lastNS: map[string]subnet.PolicyNamespace{}, reported: map[string]int64{}}
}

// ListPolicies reads policies/ and namespaces/ at one revision.
func (p *PolicySource) ListPolicies(ctx context.Context) (*subnet.PolicyView, error) {
	budget := MaxPolicyListBytes
	pols, rev, err := p.s.listPrefix(ctx, p.s.PoliciesPrefix(), 0, MaxPolicyKeys, &budget)
	if err != nil {
		return nil, err
	}
	nss, _, err := p.s.listPrefix(ctx, p.s.NamespacesPrefix(), rev, MaxPolicyKeys, &budget)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	v := &subnet.PolicyView{Revision: rev}
	reject := func(kv *mvccpb.KeyValue, err error, kept bool) {
		k := string(kv.Key)
		v.Rejected = append(v.Rejected, subnet.RejectedEntry{Key: k, Err: err, Kept: kept})
		if p.reported[k] != kv.ModRevision {
			p.reported[k] = kv.ModRevision
			p.s.log.WithError(err).WithField("key", k).Warn("network policy store entry is invalid: left out, and what stands in its place never allows more")
		}
	}
	seenPol := map[string]bool{}
	for _, kv := range pols {
		k := string(kv.Key)
		seenPol[k] = true
		ns, name, ok := strings.Cut(strings.TrimPrefix(k, p.s.PoliciesPrefix()), "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			// Not a key weft writes: it names no policy to stand in for.
			reject(kv, errors.New("key is not <namespace>/<name>"), false)
			continue
		}
		np, err := decodePolicy(ns, name, kv.Value)
		if err == nil {
			p.lastPol[k] = np
			v.Policies = append(v.Policies, np)
			continue
		}
		if last, ok := p.lastPol[k]; ok {
			v.Policies = append(v.Policies, last)
			reject(kv, err, true)
			continue
		}
		v.Policies = append(v.Policies, policy.DenyAllStandIn(ns, name, np))
		reject(kv, err, false)
	}
	for k := range p.lastPol {
		if !seenPol[k] {
			delete(p.lastPol, k)
		}
	}
	seenNS := map[string]bool{}
	for _, kv := range nss {
		k := string(kv.Key)
		seenNS[k] = true
		name := strings.TrimPrefix(k, p.s.NamespacesPrefix())
		ns, err := decodeNamespace(name, kv.Value)
		switch {
		case err == nil:
			p.lastNS[k] = ns
			v.Namespaces = append(v.Namespaces, ns)
		case p.lastNS[k].Name != "":
			v.Namespaces = append(v.Namespaces, p.lastNS[k])
			reject(kv, err, true)
		default:
			if policy.ValidateNamespace(policy.Namespace{Name: name}) == nil {
				v.Namespaces = append(v.Namespaces, withNameLabel(name, nil))
			}
			reject(kv, err, false)
		}
	}
	for k := range p.lastNS {
		if !seenNS[k] {
			delete(p.lastNS, k)
		}
	}
	for k := range p.reported {
		if !seenPol[k] && !seenNS[k] {
			delete(p.reported, k)
		}
	}
	slices.SortFunc(v.Policies, func(a, b *networkingv1.NetworkPolicy) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	slices.SortFunc(v.Rejected, func(a, b subnet.RejectedEntry) int { return strings.Compare(a.Key, b.Key) })
	return v, nil
}

// WaitPolicies returns once a key under policies/ or namespaces/ changed
// after revision rev.
func (p *PolicySource) WaitPolicies(ctx context.Context, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wp := p.s.c.Watch(wctx, p.s.PoliciesPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	wn := p.s.c.Watch(wctx, p.s.NamespacesPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for {
		var r clientv3.WatchResponse
		var ok bool
		select {
		case r, ok = <-wp:
		case r, ok = <-wn:
		}
		if !ok {
			if err := ctx.Err(); err != nil {
				return err
			}
			return errors.New("watch of network policies ended")
		}
		if err := r.Err(); err != nil {
			if r.CompactRevision != 0 {
				return nil // compacted past rev: something may have changed
			}
			return fmt.Errorf("watch network policies: %w", err)
		}
		if len(r.Events) > 0 {
			return nil
		}
	}
}
