// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e && linux

package e2e_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/cni"
	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/e2etest"
	"github.com/weftnet/weft/subnet"
	subnetetcd "github.com/weftnet/weft/subnet/etcd"
)

// TestEndpointPublication: each weftd publishes its pods' endpoints in
// etcd, read by another node's reader (WatchEndpoints, as a node's policy
// source will read them):
//
//	underlay br0 ── node1 (pods with identities) ── node2 (none)
//	etcd ── the test's reader, a client of its own
//
// Pods added with a namespace, name and labels appear with their
// addresses (the delay from ADD returning to the reader seeing them is
// measured), a deleted pod disappears, an endpoint deleted in etcd by
// hand is back within one resync, and a lying record (node2 claiming one
// of node1's pod addresses) is rejected.
func TestEndpointPublication(t *testing.T) {
	const resync = 2 * time.Second
	c := e2etest.NewCluster(t, e2e.Options{Nodes: 2, ResyncInterval: resync})
	ctx := t.Context()
	n1, n2 := c.Nodes()[0], c.Nodes()[1]
	for _, n := range c.Nodes() {
		if err := n.WaitReady(ctx, 60*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	cli, err := c.Etcd.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	st := subnetetcd.New(subnetetcd.Config{Client: cli, Prefix: e2e.EtcdPrefix})

	var (
		mu   sync.Mutex
		last subnet.EndpointView
		seen = map[string]time.Time{} // node/key → first seen
		gone = map[string]time.Time{} // node/key → first seen absent after being seen
	)
	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- st.WatchEndpoints(wctx, func(v subnet.EndpointView) {
			now := time.Now()
			mu.Lock()
			defer mu.Unlock()
			last = v
			have := map[string]bool{}
			for _, e := range v.Endpoints {
				k := e.Node + "/" + e.Key
				have[k] = true
				if _, ok := seen[k]; !ok {
					seen[k] = now
				}
			}
			for k := range seen {
				if _, ok := gone[k]; !ok && !have[k] {
					gone[k] = now
				}
			}
		})
	}()
	defer func() {
		wcancel()
		if err := <-done; err != nil {
			t.Errorf("WatchEndpoints: %v", err)
		}
	}()
	waitView := func(what string, d time.Duration, cond func(subnet.EndpointView) bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for {
			mu.Lock()
			ok := cond(last)
			v := last
			mu.Unlock()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out after %s waiting for %s; last view: %+v", d, what, v)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	const npods = 7
	var pods []*e2e.Pod
	for i := range npods {
		id := subnet.PodIdentity{Namespace: "x", Name: fmt.Sprintf("web-%d", i),
			Labels: map[string]string{"app": "web", "pod-template-hash": "5d8f7c9b4d"}}
		p, err := n1.AddPodAs(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, p)
		key := n1.Name + "/" + cni.HostVethName(p.ContainerID, "eth0")
		waitView(p.Name+"'s endpoint", 30*time.Second, func(subnet.EndpointView) bool { _, ok := seen[key]; return ok })
	}
	var delays []time.Duration
	mu.Lock()
	for _, p := range pods {
		delays = append(delays, seen[n1.Name+"/"+cni.HostVethName(p.ContainerID, "eth0")].Sub(p.Added))
	}
	v := last
	mu.Unlock()
	for _, p := range pods {
		i := slices.IndexFunc(v.Endpoints, func(e subnet.Endpoint) bool { return e.Key == cni.HostVethName(p.ContainerID, "eth0") })
		if i < 0 {
			t.Fatalf("%s not in the view", p.Name)
		}
		e := v.Endpoints[i]
		if e.Node != n1.Name || e.Namespace != p.Identity.Namespace || e.Name != p.Identity.Name ||
			e.IPv4 != p.IP || e.IPv6 != p.IPv6 || fmt.Sprint(e.Labels) != fmt.Sprint(p.Identity.Labels) {
			t.Errorf("endpoint of %s: %+v; pod %s %s, identity %+v", p.Name, e, p.IP, p.IPv6, p.Identity)
		}
	}
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	t.Logf("endpoint seen by another node's reader, relative to CNI ADD returning (negative: before), %d pods: median %.1f ms, min %.1f ms, max %.1f ms",
		npods, millis(delays[len(delays)/2]), millis(delays[0]), millis(delays[len(delays)-1]))

	// A pod without identity is not published.
	plain, err := n1.AddPod(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A deleted pod disappears.
	del := pods[0]
	if err := del.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	delAt := time.Now()
	delKey := n1.Name + "/" + cni.HostVethName(del.ContainerID, "eth0")
	waitView(del.Name+"'s endpoint gone", 30*time.Second, func(subnet.EndpointView) bool { _, ok := gone[delKey]; return ok })
	mu.Lock()
	t.Logf("endpoint gone for the reader, relative to CNI DEL returning (negative: before): %.1f ms", millis(gone[delKey].Sub(delAt)))
	v = last
	mu.Unlock()
	if slices.ContainsFunc(v.Endpoints, func(e subnet.Endpoint) bool { return e.Key == cni.HostVethName(plain.ContainerID, "eth0") }) {
		t.Errorf("a pod without identity was published")
	}

	// Drift: an endpoint deleted in etcd by hand comes back within a
	// resync. Twice: the first repair may come from the publication a
	// recent change still had pending; after it, with nothing changing
	// on the node, only the resync can repair the second.
	victim := pods[1]
	vport := cni.HostVethName(victim.ContainerID, "eth0")
	vkey := st.NodeEndpointsPrefix(n1.Name) + vport
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	has := func(v subnet.EndpointView) bool {
		return slices.ContainsFunc(v.Endpoints, func(e subnet.Endpoint) bool { return e.Key == vport })
	}
	for i := range 2 {
		if _, err := cli.Delete(cctx, vkey); err != nil {
			t.Fatal(err)
		}
		deleted := time.Now()
		waitView("the deleted endpoint gone", 10*time.Second, func(v subnet.EndpointView) bool { return !has(v) })
		waitView("the deleted endpoint back", resync+10*time.Second, has)
		t.Logf("endpoint deleted in etcd by hand (%d): back after %.2f s (resync %s)", i+1, time.Since(deleted).Seconds(), resync)
	}

	// A lying record: node2 publishes one of node1's pod addresses.
	lie := fmt.Sprintf(`{"namespace":"x","name":"liar","ipv4":%q}`, pods[2].IP)
	lkey := st.NodeEndpointsPrefix(n2.Name) + "weft0000beef"
	if _, err := cli.Put(cctx, lkey, lie); err != nil {
		t.Fatal(err)
	}
	waitView("the lying record rejected", 10*time.Second, func(v subnet.EndpointView) bool {
		return slices.ContainsFunc(v.Rejected, func(r subnet.RejectedLease) bool {
			return r.Key == n2.Name+"/weft0000beef" && strings.Contains(r.Reason, "outside node")
		})
	})
	mu.Lock()
	v = last
	mu.Unlock()
	if slices.ContainsFunc(v.Endpoints, func(e subnet.Endpoint) bool { return e.Name == "liar" }) {
		t.Errorf("the lying record was accepted")
	}
	if _, err := cli.Delete(cctx, lkey); err != nil {
		t.Fatal(err)
	}
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
