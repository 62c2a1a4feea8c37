// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kube

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/weftnet/weft/subnet"
)

// nodeInformer returns an informer on every Node, or on the one named,
// whose cache holds slim Nodes (see slimNode).
func (s *Store) nodeInformer(name string) (cache.SharedIndexInformer, error) {
	sel := fields.Everything()
	if name != "" {
		sel = fields.OneTermEqualSelector("metadata.name", name)
	}
	lw := patient(s.observed(cache.NewListWatchFromClient(s.cs.core, "nodes", "", sel)))
	inf := cache.NewSharedIndexInformer(lw, &corev1.Node{}, 0, cache.Indexers{})
	if err := inf.SetTransform(slimNode); err != nil {
		return nil, fmt.Errorf("node informer: %w", err)
	}
	return inf, nil
}

// recordInformer returns an informer on every WeftNode, or on the one
// named, whose cache holds *WeftNode.
func (s *Store) recordInformer(name string) (cache.SharedIndexInformer, error) {
	tweak := func(o metav1.ListOptions) metav1.ListOptions {
		if name != "" {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}
		return o
	}
	lw := patient(s.observed(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return s.dyn.Resource(GVR).List(ctx, tweak(o))
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return s.dyn.Resource(GVR).Watch(ctx, tweak(o))
		},
	}))
	inf := cache.NewSharedIndexInformer(lw, &unstructured.Unstructured{}, 0, cache.Indexers{})
	if err := inf.SetTransform(toWeftNode); err != nil {
		return nil, fmt.Errorf("WeftNode informer: %w", err)
	}
	return inf, nil
}

// toWeftNode converts the dynamic informer's objects. One that does not
// decode is kept as a WeftNode without spec and owner, which the view
// rejects as stale.
func toWeftNode(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	w, err := fromUnstructured(u)
	if err != nil {
		w = &WeftNode{ObjectMeta: metav1.ObjectMeta{Name: u.GetName(), UID: u.GetUID(), ResourceVersion: u.GetResourceVersion()}}
	}
	w.ManagedFields = nil
	return w, nil
}

// informers runs infs until ctx is done and waits until all have synced
// (false when ctx ended first). wait waits for them to stop after ctx.
func runInformers(ctx context.Context, infs ...cache.SharedIndexInformer) (synced bool, wait func()) {
	done := make(chan struct{}, len(infs))
	synced0 := make([]cache.InformerSynced, len(infs))
	for i, inf := range infs {
		go func() { inf.Run(ctx.Done()); done <- struct{}{} }()
		synced0[i] = inf.HasSynced
	}
	wait = func() {
		for range infs {
			<-done
		}
	}
	return cache.WaitForCacheSync(ctx.Done(), synced0...), wait
}

// List returns every lease: the Nodes joined with the records, as
// [buildView] does, from one list of each.
func (s *Store) List(ctx context.Context) (subnet.View, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	nl, err := s.cs.listNodes(cctx)
	if err != nil {
		return subnet.View{}, fmt.Errorf("list Nodes: %w", err)
	}
	rl, err := s.dyn.Resource(GVR).List(cctx, metav1.ListOptions{})
	if err != nil {
		return subnet.View{}, fmt.Errorf("list WeftNodes: %w", err)
	}
	nodes := make([]*corev1.Node, len(nl.Items))
	for i := range nl.Items {
		nodes[i] = &nl.Items[i]
	}
	recs := make([]*WeftNode, 0, len(rl.Items))
	for i := range rl.Items {
		w, _ := toWeftNode(&rl.Items[i])
		recs = append(recs, w.(*WeftNode))
	}
	return buildView(nodes, recs, 0), nil
}

// WatchLeases runs the informers on Nodes and WeftNodes (shared with
// WatchEndpoints: see leaseinf.go) and calls fn with a complete view once
// both have listed everything, then after changes (a burst of changes may
// give one call) until ctx is done. The informers re-list by themselves
// after a broken watch; fn is never given a view before both have synced.
func (s *Store) WatchLeases(ctx context.Context, fn func(subnet.View)) error {
	sl, release, err := s.leaseInformers()
	if err != nil {
		return err
	}
	defer release()
	kick := make(chan struct{}, 1)
	remove, synced, err := sl.watch(ctx, kicker(kick))
	if err != nil {
		return err
	}
	defer remove()
	if !synced {
		return ctx.Err()
	}
	for {
		fn(sl.view())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-kick:
		}
	}
}

func cachedNodes(inf cache.SharedIndexInformer) []*corev1.Node {
	objs := inf.GetStore().List()
	out := make([]*corev1.Node, 0, len(objs))
	for _, o := range objs {
		if n, ok := o.(*corev1.Node); ok {
			out = append(out, n)
		}
	}
	return out
}

func cachedRecords(inf cache.SharedIndexInformer) []*WeftNode {
	objs := inf.GetStore().List()
	out := make([]*WeftNode, 0, len(objs))
	for _, o := range objs {
		if w, ok := o.(*WeftNode); ok {
			out = append(out, w)
		}
	}
	return out
}
