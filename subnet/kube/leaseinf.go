// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kube

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/weftnet/weft/subnet"
)

// sharedLeases are the Node and WeftNode informers of the lease view, one
// pair per Store however many watchers use it: WatchLeases and
// WatchEndpoints (which checks the pods against the leases) run side by
// side in weftd, and a second pair would receive every Node and record
// change a second time. The pair runs while some watcher holds it and
// stops with the last.
type sharedLeases struct {
	nodes, recs cache.SharedIndexInformer
	// deleted is the highest revision of a WeftNode seen deleted (see
	// buildView).
	deleted atomic.Int64
	// synced is closed once both informers have listed everything.
	synced chan struct{}
	stop   context.CancelFunc
	done   sync.WaitGroup
	refs   int
}

// leaseInformers returns the store's lease informers, started if none
// ran, and the function that gives them back.
func (s *Store) leaseInformers() (*sharedLeases, func(), error) {
	s.leasesMu.Lock()
	defer s.leasesMu.Unlock()
	if sl := s.leases; sl != nil {
		sl.refs++
		return sl, s.releaseLeases(sl), nil
	}
	nodes, err := s.nodeInformer("")
	if err != nil {
		return nil, nil, err
	}
	recs, err := s.recordInformer("")
	if err != nil {
		return nil, nil, err
	}
	sl := &sharedLeases{nodes: nodes, recs: recs, synced: make(chan struct{}), refs: 1}
	if _, err := recs.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: sl.noteDeleted}); err != nil {
		return nil, nil, fmt.Errorf("watch WeftNodes: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sl.stop = cancel
	for _, inf := range []cache.SharedIndexInformer{nodes, recs} {
		sl.done.Add(1)
		go func() { defer sl.done.Done(); inf.Run(ctx.Done()) }()
	}
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), nodes.HasSynced, recs.HasSynced) {
			close(sl.synced)
		}
	}()
	s.leases = sl
	return sl, s.releaseLeases(sl), nil
}

// releaseLeases returns the function that gives sl back once; the last
// one stops its informers and waits for them.
func (s *Store) releaseLeases(sl *sharedLeases) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			s.leasesMu.Lock()
			defer s.leasesMu.Unlock()
			if sl.refs--; sl.refs > 0 {
				return
			}
			sl.stop()
			sl.done.Wait()
			if s.leases == sl {
				s.leases = nil
			}
		})
	}
}

// noteDeleted records a deleted WeftNode's revision.
func (sl *sharedLeases) noteDeleted(obj any) {
	if w, ok := obj.(*WeftNode); ok {
		for {
			cur := sl.deleted.Load()
			if revision(w) <= cur || sl.deleted.CompareAndSwap(cur, revision(w)) {
				return
			}
		}
	}
}

// watch adds h to both informers (a deletion of a record is noted before
// h hears of it), waits until both have synced and returns the function
// that removes h; false when ctx ended first.
func (sl *sharedLeases) watch(ctx context.Context, h cache.ResourceEventHandlerFuncs) (remove func(), ok bool, err error) {
	nh := h
	if h.UpdateFunc != nil {
		// A Node changes far more often than what the view reads of it
		// (a kubelet's status, labels, taints): only its name, UID and
		// podCIDRs make a new view, at thousands of Nodes each a look at
		// every lease on every node.
		nh.UpdateFunc = func(old, cur any) {
			if !sameNodeLease(old, cur) {
				h.UpdateFunc(old, cur)
			}
		}
	}
	nreg, err := sl.nodes.AddEventHandler(nh)
	if err != nil {
		return nil, false, fmt.Errorf("watch Nodes: %w", err)
	}
	rh := h
	rh.DeleteFunc = func(obj any) {
		sl.noteDeleted(obj)
		h.DeleteFunc(obj)
	}
	rreg, err := sl.recs.AddEventHandler(rh)
	if err != nil {
		_ = sl.nodes.RemoveEventHandler(nreg)
		return nil, false, fmt.Errorf("watch WeftNodes: %w", err)
	}
	remove = func() {
		_ = sl.nodes.RemoveEventHandler(nreg)
		_ = sl.recs.RemoveEventHandler(rreg)
	}
	select {
	case <-sl.synced:
		return remove, true, nil
	case <-ctx.Done():
		return remove, false, nil
	}
}

// view is the lease view of the informers' caches.
func (sl *sharedLeases) view() subnet.View {
	return buildView(cachedNodes(sl.nodes), cachedRecords(sl.recs), sl.deleted.Load())
}

// sameNodeLease reports whether two versions of a Node in the informers'
// cache (slim: see slimNode) give the same leases: the same UID and
// podCIDRs.
func sameNodeLease(old, cur any) bool {
	a, ok1 := old.(*corev1.Node)
	b, ok2 := cur.(*corev1.Node)
	return ok1 && ok2 && a.Name == b.Name && a.UID == b.UID &&
		a.Spec.PodCIDR == b.Spec.PodCIDR && slices.Equal(a.Spec.PodCIDRs, b.Spec.PodCIDRs)
}
