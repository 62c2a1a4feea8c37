// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kube

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/tools/cache"

	"github.com/weftnet/weft/daemon/policy"
	"github.com/weftnet/weft/subnet"
)

// PolicySource is the Kubernetes [subnet.PolicySource]: the
// NetworkPolicies and Namespaces of the whole cluster, from two informers
// built as the store's others are (their lists and watches retried while
// the API server is unreachable, and their outcome seen by
// [Store.WatchReachability]). Run runs them; ListPolicies reads their
// caches, so while the API server is away the source keeps its last view
// and catches up when the informers list again.
//
// The caches hold slim objects: a policy keeps its name, namespace,
// labels, resource version and spec (no annotations, no managed fields);
// a namespace its name, labels and resource version.
//
// Revision is a counter of this source, bumped by every informer event
// (the initial listing's included); it orders the views of one source
// only. Each object is checked with [policy.Validate] (or
// [policy.ValidateNamespace]) although the API server has validated it:
// a server of another version may accept what weft's compiler does not,
// and the broken-entry rule of [subnet.PolicyView] then applies as in
// etcd mode. It is safe for concurrent use.
type PolicySource struct {
	s        *Store
	pols     cache.SharedIndexInformer
	nss      cache.SharedIndexInformer
	synced   chan struct{} // closed when both informers have synced
	syncOnce sync.Once

	mu       sync.Mutex
	rev      int64
	wake     chan struct{} // closed and replaced at each event
	lastPol  map[string]*networkingv1.NetworkPolicy
	lastNS   map[string]subnet.PolicyNamespace
	reported map[string]string // key → resource version of a rejection logged
	runOnce  bool
}

var _ subnet.PolicySource = (*PolicySource)(nil)

// NewPolicySource returns the policy source of s. It contacts nothing
// until Run.
func NewPolicySource(s *Store) (*PolicySource, error) {
	p := &PolicySource{
		s: s, synced: make(chan struct{}), wake: make(chan struct{}),
		lastPol: map[string]*networkingv1.NetworkPolicy{}, lastNS: map[string]subnet.PolicyNamespace{},
		reported: map[string]string{},
	}
	rc := s.cs.networking
	p.pols = cache.NewSharedIndexInformer(
		patient(s.observed(cache.NewListWatchFromClient(rc, "networkpolicies", metav1.NamespaceAll, fields.Everything()))),
		&networkingv1.NetworkPolicy{}, 0, cache.Indexers{})
	if err := p.pols.SetTransform(slimPolicy); err != nil {
		return nil, fmt.Errorf("NetworkPolicy informer: %w", err)
	}
	p.nss = cache.NewSharedIndexInformer(
		patient(s.observed(cache.NewListWatchFromClient(s.cs.core, "namespaces", "", fields.Everything()))),
		&corev1.Namespace{}, 0, cache.Indexers{})
	if err := p.nss.SetTransform(slimNamespace); err != nil {
		return nil, fmt.Errorf("Namespace informer: %w", err)
	}
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { p.bump() },
		UpdateFunc: func(any, any) { p.bump() },
		DeleteFunc: func(any) { p.bump() },
	}
	if _, err := p.pols.AddEventHandler(h); err != nil {
		return nil, fmt.Errorf("watch NetworkPolicies: %w", err)
	}
	if _, err := p.nss.AddEventHandler(h); err != nil {
		return nil, fmt.Errorf("watch Namespaces: %w", err)
	}
	return p, nil
}

// Run runs the informers until ctx is done, then returns ctx's error once
// they have stopped. A source runs once: a second Run returns an error.
func (p *PolicySource) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.runOnce {
		p.mu.Unlock()
		return errors.New("the Kubernetes policy source runs once")
	}
	p.runOnce = true
	p.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	synced, wait := runInformers(ctx, p.pols, p.nss)
	defer func() { cancel(); wait() }()
	if synced {
		p.syncOnce.Do(func() { close(p.synced) })
	}
	<-ctx.Done()
	return ctx.Err()
}

// bump records an informer event. The informer has updated its cache
// before it calls its handlers, so a view listed after reading a revision
// holds every change of that revision or earlier.
func (p *PolicySource) bump() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rev++
	close(p.wake)
	p.wake = make(chan struct{})
}

// state returns the current revision and a channel closed at the next
// event.
func (p *PolicySource) state() (int64, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rev, p.wake
}

// ListPolicies returns the informers' caches as a view; before both have
// listed everything once (Run must be running), it waits for them or for
// ctx.
func (p *PolicySource) ListPolicies(ctx context.Context) (*subnet.PolicyView, error) {
	select {
	case <-p.synced:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for the NetworkPolicy and Namespace informers to list everything (is the source's Run running?): %w", ctx.Err())
	}
	// The revision first: a change the caches hold but rev does not count
	// yet only makes the next WaitPolicies return early.
	rev, _ := p.state()
	pols := p.pols.GetStore().List()
	nss := p.nss.GetStore().List()

	p.mu.Lock()
	defer p.mu.Unlock()
	v := &subnet.PolicyView{Revision: rev}
	reject := func(key, rv string, err error, kept bool) {
		v.Rejected = append(v.Rejected, subnet.RejectedEntry{Key: key, Err: err, Kept: kept})
		if p.reported[key] != rv {
			p.reported[key] = rv
			p.s.log.WithError(err).WithField("object", key).Warn("NetworkPolicy or Namespace fails weft's validation: left out, and what stands in its place never allows more")
		}
	}
	seen := map[string]bool{}
	for _, o := range pols {
		np, ok := o.(*networkingv1.NetworkPolicy)
		if !ok {
			continue
		}
		k := policyKey(np.Namespace, np.Name)
		seen[k] = true
		if errs := policy.Validate(np); errs != nil {
			if last, ok := p.lastPol[k]; ok {
				v.Policies = append(v.Policies, last)
				reject(k, np.ResourceVersion, errs, true)
			} else {
				v.Policies = append(v.Policies, policy.DenyAllStandIn(np.Namespace, np.Name, np))
				reject(k, np.ResourceVersion, errs, false)
			}
			continue
		}
		p.lastPol[k] = np
		v.Policies = append(v.Policies, np)
	}
	for k := range p.lastPol {
		if !seen[k] {
			delete(p.lastPol, k)
		}
	}
	for _, o := range nss {
		ns, ok := o.(*corev1.Namespace)
		if !ok {
			continue
		}
		k := namespaceKey(ns.Name)
		seen[k] = true
		pn := subnet.PolicyNamespace{Name: ns.Name, Labels: maps.Clone(ns.Labels)}
		if pn.Labels == nil {
			pn.Labels = map[string]string{}
		}
		// The API server sets it on every namespace; it is set here too
		// for one that predates the rule (Kubernetes before 1.21).
		pn.Labels[policy.NamespaceNameLabel] = ns.Name
		switch errs := policy.ValidateNamespace(policy.Namespace{Name: pn.Name, Labels: pn.Labels}); {
		case errs == nil:
			p.lastNS[k] = pn
			v.Namespaces = append(v.Namespaces, pn)
		case p.lastNS[k].Name != "":
			v.Namespaces = append(v.Namespaces, p.lastNS[k])
			reject(k, ns.ResourceVersion, errs, true)
		default:
			bare := subnet.PolicyNamespace{Name: ns.Name, Labels: map[string]string{policy.NamespaceNameLabel: ns.Name}}
			if policy.ValidateNamespace(policy.Namespace{Name: bare.Name, Labels: bare.Labels}) == nil {
				v.Namespaces = append(v.Namespaces, bare)
			}
			reject(k, ns.ResourceVersion, errs, false)
		}
	}
	for k := range p.lastNS {
		if !seen[k] {
			delete(p.lastNS, k)
		}
	}
	for k := range p.reported {
		if !seen[k] {
			delete(p.reported, k)
		}
	}
	slices.SortFunc(v.Policies, func(a, b *networkingv1.NetworkPolicy) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	slices.SortFunc(v.Namespaces, func(a, b subnet.PolicyNamespace) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(v.Rejected, func(a, b subnet.RejectedEntry) int { return strings.Compare(a.Key, b.Key) })
	return v, nil
}

// WaitPolicies returns once an informer event came after the view of
// revision rev (at once when one has already), or ctx's error.
func (p *PolicySource) WaitPolicies(ctx context.Context, rev int64) error {
	for {
		cur, wake := p.state()
		if cur > rev {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		}
	}
}

// policyKey and namespaceKey name the objects in [subnet.RejectedEntry].
func policyKey(ns, name string) string { return "networkpolicies/" + ns + "/" + name }
func namespaceKey(name string) string  { return "namespaces/" + name }

// slimPolicy keeps of a NetworkPolicy what its semantics need.
func slimPolicy(obj any) (any, error) {
	np, ok := obj.(*networkingv1.NetworkPolicy)
	if !ok {
		return obj, nil
	}
	return &networkingv1.NetworkPolicy{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{
			Name: np.Name, Namespace: np.Namespace, Labels: np.Labels,
			UID: np.UID, ResourceVersion: np.ResourceVersion, Generation: np.Generation,
		},
		Spec: np.Spec,
	}, nil
}

// slimNamespace keeps of a Namespace its name and labels.
func slimNamespace(obj any) (any, error) {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return obj, nil
	}
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: ns.Name, Labels: ns.Labels, UID: ns.UID, ResourceVersion: ns.ResourceVersion,
	}}, nil
}
