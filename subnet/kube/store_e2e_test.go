// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e

package kube

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/weftnet/weft/e2e/kubetest"
	"github.com/weftnet/weft/subnet"
)

// The store against a real kube-apiserver and kube-controller-manager
// (e2e/kubetest), reached with a token of weftd's own ServiceAccount bound
// by etc/kubernetes/weft-rbac.yaml, never admin credentials: a verb the
// store uses and the ClusterRole lacks fails these tests.

const netConfJSON = `{"Network": "10.244.0.0/16", "IPv6Network": "fd10:244::/56", "SubnetLen": 24, "IPv6SubnetLen": 64, "Backend": {"Type": "vxlan"}}`

// env is one control plane with the CRD and RBAC applied.
type env struct {
	c     *kubetest.Cluster
	admin kubernetes.Interface
	dyn   dynamic.Interface
	// weftd is the rest.Config of weftd's ServiceAccount token.
	weftd *rest.Config
	nc    *subnet.Config
}

func TestStore(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{
		ControllerManager: true,
		ClusterCIDRs:      []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd10:244::/56")},
	})
	e := &env{c: c, admin: c.Client(t)}
	var err error
	if e.dyn, err = dynamic.NewForConfig(c.Config); err != nil {
		t.Fatal(err)
	}
	if e.nc, err = subnet.ParseConfig([]byte(netConfJSON)); err != nil {
		t.Fatal(err)
	}
	// Before the CRD: the start check says how to install it.
	t.Run("crd-missing", func(t *testing.T) {
		s := e.adminStore(t, Config{})
		err := s.CheckCRD(ctxT(t, 30*time.Second))
		if !errors.Is(err, ErrCRDMissing) || !strings.Contains(err.Error(), "kubectl apply -f etc/kubernetes/weft-crd.yaml") {
			t.Fatalf("CheckCRD without the CRD = %v, want ErrCRDMissing saying how to install it", err)
		}
	})
	e.apply(t)

	t.Run("probe-and-crd", func(t *testing.T) {
		s := e.store(t, Config{})
		ctx := ctxT(t, 30*time.Second)
		if err := s.Probe(ctx); err != nil {
			t.Fatalf("Probe: %v", err)
		}
		if err := s.CheckCRD(ctx); err != nil {
			t.Fatalf("CheckCRD after installing it: %v", err)
		}
	})
	t.Run("rbac-denies", e.testRBACDenies)
	t.Run("claim-assigned", e.testClaimAssigned)
	t.Run("outside-network", e.testOutsideNetwork)
	t.Run("record-owned-and-collected", e.testRecordCollected)
	t.Run("keepalive-node-deleted", e.testKeepAliveDeleted)
	t.Run("keepalive-node-recreated", e.testKeepAliveRecreated)
	t.Run("watch-leases", e.testWatchLeases)
	t.Run("watch-endpoints", e.testWatchEndpoints)
	t.Run("claim-race", e.testClaimRace)
	t.Run("update-race", e.testUpdateRace)
	t.Run("network-available", e.testNetworkAvailable)
	t.Run("configmap", e.testConfigMap)
	// It stops the controller-manager.
	t.Run("podcidr-missing", e.testPodCIDRMissing)
	// Last: the guard denies weftd's token that is bound to no pod.
	t.Run("own-record-guard", e.testOwnRecordGuard)
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// apply applies the project's CRD and RBAC manifests with kubectl and
// waits for the CRD to be served, then gets a token of weftd's
// ServiceAccount.
func (e *env) apply(t *testing.T) {
	ctx := ctxT(t, 2*time.Minute)
	for _, f := range []string{"weft-crd.yaml", "weft-rbac.yaml"} {
		path, err := filepath.Abs(filepath.Join("..", "..", "etc", "kubernetes", f))
		if err != nil {
			t.Fatal(err)
		}
		if out, err := e.c.Kubectl(ctx, "apply", "-f", path); err != nil {
			t.Fatalf("kubectl apply -f %s: %v\n%s", f, err, out)
		}
	}
	if out, err := e.c.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "crd/"+CRDName); err != nil {
		t.Fatalf("wait for the CRD: %v\n%s", err, out)
	}
	s := e.adminStore(t, Config{})
	if err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		return s.CheckCRD(ctx) == nil, nil
	}); err != nil {
		t.Fatalf("the API server does not serve %s: %v", CRDName, err)
	}
	tok, err := e.admin.CoreV1().ServiceAccounts("weft-system").CreateToken(ctx, "weftd",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for ServiceAccount weft-system/weftd: %v", err)
	}
	e.weftd = &rest.Config{
		Host:            e.c.URL,
		BearerToken:     tok.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: e.c.CAPEM},
		Dial:            e.c.DialContext,
	}
}

func ptr[T any](v T) *T { return &v }

// store returns a Store with weftd's token.
func (e *env) store(t *testing.T, cfg Config) *Store {
	t.Helper()
	return newStore(t, e.weftd, cfg)
}

// adminStore returns a Store with admin credentials (only where weftd's
// are not the point: before RBAC exists).
func (e *env) adminStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	return newStore(t, e.c.Config, cfg)
}

func newStore(t *testing.T, rc *rest.Config, cfg Config) *Store {
	t.Helper()
	s, err := New(rc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// node creates a Node (with podCIDRs when given).
func (e *env) node(t *testing.T, name string, podCIDRs ...string) *corev1.Node {
	t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if len(podCIDRs) > 0 {
		n.Spec.PodCIDR, n.Spec.PodCIDRs = podCIDRs[0], podCIDRs
	}
	n, err := e.admin.CoreV1().Nodes().Create(ctxT(t, 30*time.Second), n, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create Node %s: %v", name, err)
	}
	return n
}

func (e *env) deleteNode(t *testing.T, name string) {
	t.Helper()
	if err := e.admin.CoreV1().Nodes().Delete(ctxT(t, 30*time.Second), name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete Node %s: %v", name, err)
	}
}

// record returns a well-formed record for node name.
func record(name string, i int) subnet.Record {
	return subnet.Record{
		NodeName: name, NodeID: fmt.Sprintf("id-%s-%d", name, i),
		PublicIP:    netip.AddrFrom4([4]byte{198, 18, 1, byte(i)}),
		GossipAddr:  fmt.Sprintf("198.18.1.%d:7950", i),
		BackendType: subnet.BackendVXLAN, BackendData: subnet.BackendData{VTEPMAC: fmt.Sprintf("02:00:00:00:01:%02x", i)},
		Version: 1,
	}
}

// claimWhenAssigned claims until the controller-manager assigned the
// Node's podCIDRs (Claim reports ErrNotAssigned until then).
func (e *env) claimWhenAssigned(t *testing.T, s *Store, rec subnet.Record) *subnet.Lease {
	t.Helper()
	ctx := ctxT(t, time.Minute)
	var l *subnet.Lease
	var last error
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		l, last = s.Claim(ctx, subnet.ClaimRequest{Config: e.nc, Record: rec})
		if errors.Is(last, subnet.ErrNotAssigned) {
			return false, nil
		}
		return true, last
	})
	if err != nil {
		t.Fatalf("claim for %s: %v (last: %v)", rec.NodeName, err, last)
	}
	return l
}

func (e *env) getRecord(t *testing.T, name string) *WeftNode {
	t.Helper()
	u, err := e.dyn.Resource(GVR).Get(ctxT(t, 30*time.Second), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get WeftNode %s: %v", name, err)
	}
	w, err := fromUnstructured(u)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// testRBACDenies checks that weftd's token cannot read Secrets, write
// Nodes or read other ConfigMaps.
func (e *env) testRBACDenies(t *testing.T) {
	cs, err := kubernetes.NewForConfig(e.weftd)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 30*time.Second)
	n := e.node(t, "rbac-node")
	checks := map[string]error{}
	_, checks["list secrets"] = cs.CoreV1().Secrets("weft-system").List(ctx, metav1.ListOptions{})
	_, checks["get secret"] = cs.CoreV1().Secrets("kube-system").Get(ctx, "any", metav1.GetOptions{})
	_, checks["list configmaps"] = cs.CoreV1().ConfigMaps("weft-system").List(ctx, metav1.ListOptions{})
	_, checks["patch node spec"] = cs.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, []byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{})
	_, checks["update node status"] = cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	checks["delete node"] = cs.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{})
	// Network policy's verbs are list and watch only.
	_, checks["get namespace"] = cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
	_, checks["patch namespace labels"] = cs.CoreV1().Namespaces().Patch(ctx, "default", types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
	_, checks["create networkpolicy"] = cs.NetworkingV1().NetworkPolicies("default").Create(ctx, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "rogue"}}, metav1.CreateOptions{})
	checks["delete pods"] = cs.CoreV1().Pods("default").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	_, checks["get pod log"] = cs.CoreV1().Pods("default").GetLogs("any", &corev1.PodLogOptions{}).DoRaw(ctx)
	for what, err := range checks {
		if !apierrors.IsForbidden(err) {
			t.Errorf("weftd's token: %s = %v, want Forbidden", what, err)
		}
	}
	e.deleteNode(t, n.Name)
}

// testClaimAssigned: the controller-manager assigns a Node's podCIDRs; the
// store's lease has them, and its record with our data and epoch.
func (e *env) testClaimAssigned(t *testing.T) {
	s := e.store(t, Config{})
	n := e.node(t, "assigned")
	rec := record(n.Name, 1)
	l := e.claimWhenAssigned(t, s, rec)
	n, err := e.admin.CoreV1().Nodes().Get(ctxT(t, 30*time.Second), n.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{l.Subnet.String(), l.IPv6Subnet.String()}
	if strings.Join(n.Spec.PodCIDRs, ",") != strings.Join(want, ",") {
		t.Errorf("lease subnets %v, Node podCIDRs %v", want, n.Spec.PodCIDRs)
	}
	if l.Record != rec {
		t.Errorf("lease record %+v, want %+v", l.Record, rec)
	}
	w := e.getRecord(t, n.Name)
	if l.Epoch <= 0 || w.Spec.Epoch != l.Epoch || l.ModRevision != revision(w) {
		t.Errorf("lease epoch %d modRevision %d; record epoch %d resourceVersion %s", l.Epoch, l.ModRevision, w.Spec.Epoch, w.ResourceVersion)
	}
	// A second claim (a restart) gets the same lease, same epoch.
	l2, err := s.Claim(ctxT(t, 30*time.Second), subnet.ClaimRequest{Config: e.nc, Record: rec})
	if err != nil {
		t.Fatal(err)
	}
	if l2.Epoch != l.Epoch || l2.Subnet != l.Subnet || l2.IPv6Subnet != l.IPv6Subnet {
		t.Errorf("claim again: %+v, want the first lease %+v", l2, l)
	}
	// Another node ID for the same Node: a conflict naming both IDs.
	other := record(n.Name, 2)
	_, err = s.Claim(ctxT(t, 30*time.Second), subnet.ClaimRequest{Config: e.nc, Record: other})
	if !errors.Is(err, subnet.ErrNodeConflict) || !strings.Contains(err.Error(), rec.NodeID) || !strings.Contains(err.Error(), other.NodeID) {
		t.Errorf("claim with another node ID = %v, want ErrNodeConflict naming %s and %s", err, rec.NodeID, other.NodeID)
	}
}

// testOutsideNetwork: a podCIDR outside the network is refused, naming
// both values.
func (e *env) testOutsideNetwork(t *testing.T) {
	s := e.store(t, Config{})
	nc, err := subnet.ParseConfig([]byte(`{"Network": "10.244.0.0/17", "IPv6Network": "fd10:244::/56", "Backend": {"Type": "vxlan"}}`))
	if err != nil {
		t.Fatal(err)
	}
	n := e.node(t, "outside", "10.244.200.0/24", "fd10:244:0:c8::/64")
	_, err = s.Claim(ctxT(t, 30*time.Second), subnet.ClaimRequest{Config: nc, Record: record(n.Name, 3)})
	if !errors.Is(err, subnet.ErrSubnetRefused) || !strings.Contains(err.Error(), "10.244.200.0/24") || !strings.Contains(err.Error(), "10.244.0.0/17") {
		t.Fatalf("claim of podCIDR 10.244.200.0/24 in network 10.244.0.0/17 = %v, want ErrSubnetRefused naming both", err)
	}
	t.Logf("refused: %v", err)
	// The wrong subnet length, the other way to miss the network.
	nc25, err := subnet.ParseConfig([]byte(`{"Network": "10.244.0.0/16", "SubnetLen": 25, "IPv6Network": "fd10:244::/56", "Backend": {"Type": "vxlan"}}`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Claim(ctxT(t, 30*time.Second), subnet.ClaimRequest{Config: nc25, Record: record(n.Name, 3)})
	if !errors.Is(err, subnet.ErrSubnetRefused) || !strings.Contains(err.Error(), "/25") {
		t.Fatalf("claim of a /24 podCIDR with SubnetLen 25 = %v, want ErrSubnetRefused naming /25", err)
	}
	if _, err := e.dyn.Resource(GVR).Get(ctxT(t, 30*time.Second), n.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a refused claim wrote a WeftNode: get = %v, want NotFound", err)
	}
	e.deleteNode(t, n.Name)
}

// testRecordCollected: the record is owned by its Node, and the garbage
// collector deletes it with the Node.
func (e *env) testRecordCollected(t *testing.T) {
	s := e.store(t, Config{})
	n := e.node(t, "collected")
	e.claimWhenAssigned(t, s, record(n.Name, 4))
	w := e.getRecord(t, n.Name)
	if len(w.OwnerReferences) != 1 || w.OwnerReferences[0].UID != n.UID || w.OwnerReferences[0].Kind != "Node" {
		t.Fatalf("WeftNode owners %+v, want the Node (UID %s)", w.OwnerReferences, n.UID)
	}
	e.deleteNode(t, n.Name)
	e.waitRecordGone(t, n.Name)
}

func (e *env) waitRecordGone(t *testing.T, name string) {
	t.Helper()
	start := time.Now()
	err := wait.PollUntilContextCancel(ctxT(t, time.Minute), 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := e.dyn.Resource(GVR).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("WeftNode %s still there %s after its Node was deleted: %v", name, time.Since(start).Round(time.Millisecond), err)
	}
	t.Logf("WeftNode %s collected %s after its Node's deletion", name, time.Since(start).Round(time.Millisecond))
}

// keepAlive runs KeepAlive on l and returns its result channel.
func keepAlive(t *testing.T, s *Store, l *subnet.Lease) (<-chan error, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		done <- s.KeepAlive(ctx, l, func(*subnet.Lease) { t.Error("KeepAlive called onChange") })
	}()
	t.Cleanup(func() { cancel(); <-finished })
	return done, cancel
}

func waitLost(t *testing.T, done <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-done:
		if !errors.Is(err, subnet.ErrLeaseLost) {
			t.Fatalf("KeepAlive after %s = %v, want ErrLeaseLost", what, err)
		}
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("KeepAlive still holds the lease 30 s after %s", what)
	}
	return nil
}

func (e *env) testKeepAliveDeleted(t *testing.T) {
	s := e.store(t, Config{})
	n := e.node(t, "ka-deleted")
	l := e.claimWhenAssigned(t, s, record(n.Name, 5))
	done, _ := keepAlive(t, s, l)
	select {
	case err := <-done:
		t.Fatalf("KeepAlive returned while the Node exists: %v", err)
	case <-time.After(2 * time.Second):
	}
	start := time.Now()
	e.deleteNode(t, n.Name)
	err := waitLost(t, done, "the Node's deletion")
	t.Logf("lost %s after the Node's deletion: %v", time.Since(start).Round(time.Millisecond), err)
}

// testKeepAliveRecreated: the Node re-created (another UID) while weftd
// held the lease, and while it was away: the lease is lost; the next
// claim deletes the stale record and makes one with a higher epoch.
func (e *env) testKeepAliveRecreated(t *testing.T) {
	s := e.store(t, Config{})
	pods := []string{"10.244.250.0/24", "fd10:244:0:fa::/64"}
	n := e.node(t, "ka-recreated", pods...)
	rec := record(n.Name, 6)
	l := e.claimWhenAssigned(t, s, rec)
	done, _ := keepAlive(t, s, l)
	e.deleteNode(t, n.Name)
	n2 := e.node(t, n.Name, pods...)
	waitLost(t, done, "the Node's re-creation")

	// While away: the old lease meets the new Node (and, until the
	// garbage collector runs, the old record).
	done2, _ := keepAlive(t, s, l)
	waitLost(t, done2, "a re-created Node (KeepAlive started after)")

	l2 := e.claimWhenAssigned(t, s, rec)
	w := e.getRecord(t, n.Name)
	if l2.Epoch <= l.Epoch || w.owner() != n2.UID {
		t.Errorf("claim after re-creation: epoch %d (before %d), record owner %s (Node UID %s); want a higher epoch and the new owner", l2.Epoch, l.Epoch, w.owner(), n2.UID)
	}
	if l2.Subnet != l.Subnet {
		t.Errorf("claim after re-creation: subnet %s, want %s", l2.Subnet, l.Subnet)
	}
	// The same subnets on a re-created Node with the lease re-claimed:
	// held again.
	done3, cancel := keepAlive(t, s, l2)
	select {
	case err := <-done3:
		t.Fatalf("KeepAlive of the new lease returned: %v", err)
	case <-time.After(2 * time.Second):
	}
	cancel()
}

// testWatchLeases: the first view is complete (it holds leases made
// before the watch), and a record update reaches a later view.
func (e *env) testWatchLeases(t *testing.T) {
	s := e.store(t, Config{})
	n := e.node(t, "watched")
	rec := record(n.Name, 7)
	l := e.claimWhenAssigned(t, s, rec)

	ctx, cancel := context.WithCancel(context.Background())
	views := make(chan subnet.View, 64)
	done := make(chan error, 1)
	go func() {
		done <- s.WatchLeases(ctx, func(v subnet.View) {
			select {
			case views <- v:
			default:
			}
		})
	}()
	defer func() { cancel(); <-done }()
	next := func() subnet.View {
		t.Helper()
		select {
		case v := <-views:
			if !v.Complete {
				t.Fatalf("WatchLeases gave an incomplete view")
			}
			return v
		case <-time.After(30 * time.Second):
			t.Fatal("no view within 30 s")
		}
		return subnet.View{}
	}
	find := func(v subnet.View) *subnet.Lease {
		for i := range v.Leases {
			if v.Leases[i].Record.NodeName == n.Name {
				return &v.Leases[i]
			}
		}
		return nil
	}
	first := next()
	if got := find(first); got == nil || got.Epoch != l.Epoch || got.Subnet != l.Subnet || got.IPv6Subnet != l.IPv6Subnet {
		t.Fatalf("first view: lease of %s = %+v, want %+v (leases %d, rejected %v)", n.Name, got, l, len(first.Leases), first.Rejected)
	}
	if first.Revision < l.ModRevision {
		t.Errorf("first view revision %d below our lease's %d", first.Revision, l.ModRevision)
	}
	listed, err := s.List(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if lg := find(listed); lg == nil || *lg != *find(first) {
		t.Errorf("List: lease %+v, watch: %+v", lg, find(first))
	}

	rec.Version++
	rec.PublicIP = netip.MustParseAddr("198.18.1.77")
	nl, err := s.UpdateRecord(ctxT(t, 30*time.Second), l, rec)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		v := next()
		if got := find(v); got != nil && got.Record == rec {
			if got.ModRevision != nl.ModRevision || v.Revision < nl.ModRevision {
				t.Errorf("updated lease modRevision %d (UpdateRecord said %d), view revision %d", got.ModRevision, nl.ModRevision, v.Revision)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the record update never reached a view")
		}
	}
	// A Node change that keeps its UID and podCIDRs (a label here; a
	// kubelet's status, taints) makes no view: the next view is the one of
	// the record update after it.
	for len(views) > 0 {
		<-views
	}
	patch := []byte(`{"metadata":{"labels":{"weft-test/touched":"yes"}}}`)
	if _, err := e.admin.CoreV1().Nodes().Patch(ctxT(t, 30*time.Second), n.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the label's event reaches the informer
	rec.Version++
	if nl, err = s.UpdateRecord(ctxT(t, 30*time.Second), nl, rec); err != nil {
		t.Fatal(err)
	}
	if got := find(next()); got == nil || got.Record != rec {
		t.Errorf("the view after a Node's label changed: lease %+v, want the record update that followed it (%+v)", got, rec)
	}
	// A stale record (its Node gone, before the garbage collector): shown
	// as rejected, never as a lease. The Node is deleted; whichever comes
	// first, rejection or collection, the lease goes.
	e.deleteNode(t, n.Name)
	for {
		v := next()
		if find(v) == nil {
			for _, r := range v.Rejected {
				if r.Key == n.Name && !strings.Contains(r.Reason, "stale") {
					t.Errorf("rejected %s: %q, want a stale record", r.Key, r.Reason)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the deleted Node's lease stayed in the view")
		}
	}
}

// testClaimRace: two weftd with one node name and different node IDs
// claim at once: one wins, the other gets ErrNodeConflict, and the record
// is the winner's.
func (e *env) testClaimRace(t *testing.T) {
	n := e.node(t, "race")
	// Wait for the podCIDRs first, so that the race is on the record.
	probe := e.store(t, Config{})
	err := wait.PollUntilContextCancel(ctxT(t, time.Minute), 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		got, err := probe.getNode(ctx, n.Name)
		return err == nil && len(got.Spec.PodCIDRs) > 0, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	leases := make([]*subnet.Lease, 2)
	errs := make([]error, 2)
	for i := range 2 {
		s := e.store(t, Config{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			leases[i], errs[i] = s.Claim(ctxT(t, 30*time.Second), subnet.ClaimRequest{Config: e.nc, Record: record(n.Name, 10+i)})
		}()
	}
	wg.Wait()
	won := -1
	for i := range 2 {
		switch {
		case errs[i] == nil:
			if won >= 0 {
				t.Fatalf("both claims won: %+v and %+v", leases[won], leases[i])
			}
			won = i
		case !errors.Is(errs[i], subnet.ErrNodeConflict):
			t.Errorf("claim %d = %v, want success or ErrNodeConflict", i, errs[i])
		}
	}
	if won < 0 {
		t.Fatalf("no claim won: %v", errs)
	}
	if w := e.getRecord(t, n.Name); w.Spec.NodeID != record(n.Name, 10+won).NodeID || w.Spec.Epoch != leases[won].Epoch {
		t.Errorf("record %+v, want the winner's (ID %s, epoch %d)", w.Spec, record(n.Name, 10+won).NodeID, leases[won].Epoch)
	}
}

// testUpdateRace: another writer changes the record between UpdateRecord's
// read and its write. The guarded write fails, UpdateRecord reads again:
// a benign change (same node) is written over; a record taken over by
// another node ID is lost, and left as that writer made it.
func (e *env) testUpdateRace(t *testing.T) {
	s := e.store(t, Config{})
	n := e.node(t, "update-race")
	rec := record(n.Name, 20)
	l := e.claimWhenAssigned(t, s, rec)

	rewrite := func(change func(*WeftNode)) {
		w := e.getRecord(t, n.Name)
		change(w)
		u, err := w.toUnstructured()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.dyn.Resource(GVR).Update(ctxT(t, 30*time.Second), u, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("the other writer's update: %v", err)
		}
	}
	var once sync.Once
	s.testHookBeforeWrite = func() { once.Do(func() { rewrite(func(w *WeftNode) { w.Spec.Version = 99 }) }) }
	rec.Version = 2
	nl, err := s.UpdateRecord(ctxT(t, 30*time.Second), l, rec)
	if err != nil {
		t.Fatalf("UpdateRecord after a benign concurrent write: %v", err)
	}
	if w := e.getRecord(t, n.Name); w.Spec.Version != 2 || revision(w) != nl.ModRevision {
		t.Errorf("record version %d at %s, want 2 at %d", w.Spec.Version, w.ResourceVersion, nl.ModRevision)
	}

	var once2 sync.Once
	s.testHookBeforeWrite = func() { once2.Do(func() { rewrite(func(w *WeftNode) { w.Spec.NodeID = "intruder" }) }) }
	rec.Version = 3
	_, err = s.UpdateRecord(ctxT(t, 30*time.Second), nl, rec)
	if !errors.Is(err, subnet.ErrLeaseLost) {
		t.Fatalf("UpdateRecord after the record was taken over = %v, want ErrLeaseLost", err)
	}
	if w := e.getRecord(t, n.Name); w.Spec.NodeID != "intruder" || w.Spec.Version != 2 {
		t.Errorf("record after the lost race: %+v, want the other writer's (nodeID intruder, version 2)", w.Spec)
	}
	s.testHookBeforeWrite = nil
}

// testConfigMap: the network config from the ConfigMap through weftd's
// Role (get, list and watch of that one ConfigMap): read, validated, an
// invalid one reported as a ConfigError naming the ConfigMap, deletion as
// ErrNoConfig.
func (e *env) testConfigMap(t *testing.T) {
	s := e.store(t, Config{})
	ctx := ctxT(t, 2*time.Minute)
	if _, err := s.GetConfig(ctx); !errors.Is(err, subnet.ErrNoConfig) || !strings.Contains(err.Error(), "weft-system/weft-config") {
		t.Fatalf("GetConfig without the ConfigMap = %v, want ErrNoConfig naming it", err)
	}
	cms := e.admin.CoreV1().ConfigMaps("weft-system")
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "weft-config"}, Data: map[string]string{ConfigKey: netConfJSON}}
	cm, err := cms.Create(ctx, cm, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.GetConfig(ctx)
	if err != nil || *got != *e.nc {
		t.Fatalf("GetConfig = %+v, %v; want %+v", got, err, e.nc)
	}

	type result struct {
		c   *subnet.Config
		err error
	}
	results := make(chan result, 16)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.WatchConfig(wctx, func(c *subnet.Config, err error) { results <- result{c, err} }) }()
	defer func() { cancel(); <-done }()
	next := func(what string) result {
		t.Helper()
		select {
		case r := <-results:
			return r
		case <-time.After(30 * time.Second):
			t.Fatalf("WatchConfig: nothing within 30 s after %s", what)
		}
		return result{}
	}
	if r := next("start"); r.err != nil || *r.c != *e.nc {
		t.Fatalf("WatchConfig first call: %+v, %v", r.c, r.err)
	}
	cm.Data[ConfigKey] = `{"Network": "10.244.0.0/16", "SubnetLen": 33}`
	if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	r := next("an invalid config")
	var ce *subnet.ConfigError
	if !errors.As(r.err, &ce) || !strings.Contains(ce.Key, "ConfigMap weft-system/weft-config") {
		t.Fatalf("WatchConfig after an invalid config: %+v, %v; want a ConfigError naming the ConfigMap", r.c, r.err)
	}
	t.Logf("invalid config: %v", r.err)
	cm.Data[ConfigKey] = strings.Replace(netConfJSON, `"vxlan"`, `"vxlan", "VNI": 7`, 1)
	if _, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if r := next("a valid config"); r.err != nil || r.c.Backend.VNI != 7 {
		t.Fatalf("WatchConfig after a valid config: %+v, %v; want VNI 7", r.c, r.err)
	}
	if err := cms.Delete(ctx, "weft-config", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if r := next("deletion"); !errors.Is(r.err, subnet.ErrNoConfig) {
		t.Fatalf("WatchConfig after deletion: %v, want ErrNoConfig", r.err)
	}
}

// testPodCIDRMissing stops the controller-manager: a new Node gets no
// podCIDR, and Claim says so, naming the flags that assign them, until one
// is set.
func (e *env) testPodCIDRMissing(t *testing.T) {
	if err := e.c.ControllerManager().Stop(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	s := e.store(t, Config{})
	n := e.node(t, "unassigned")
	rec := record(n.Name, 30)
	ctx := ctxT(t, 30*time.Second)
	_, err := s.Claim(ctx, subnet.ClaimRequest{Config: e.nc, Record: rec})
	if !errors.Is(err, subnet.ErrNotAssigned) || !strings.Contains(err.Error(), "--allocate-node-cidrs") ||
		!strings.Contains(err.Error(), "--cluster-cidr=10.244.0.0/16,fd10:244::/56") {
		t.Fatalf("claim without podCIDRs = %v, want ErrNotAssigned naming --allocate-node-cidrs and --cluster-cidr", err)
	}
	t.Logf("waiting: %v", err)
	if _, err := e.dyn.Resource(GVR).Get(ctx, n.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a waiting claim wrote a WeftNode: get = %v, want NotFound", err)
	}
	// No Node at all: waiting too, naming the node name's sources.
	_, err = s.Claim(ctx, subnet.ClaimRequest{Config: e.nc, Record: record("no-such-node", 31)})
	if !errors.Is(err, subnet.ErrNotAssigned) || !strings.Contains(err.Error(), "NODE_NAME") {
		t.Errorf("claim for a missing Node = %v, want ErrNotAssigned naming NODE_NAME", err)
	}
	// Assigned by hand (as the controller-manager would): the claim
	// succeeds.
	patch := `{"spec":{"podCIDR":"10.244.251.0/24","podCIDRs":["10.244.251.0/24","fd10:244:0:fb::/64"]}}`
	if _, err := e.admin.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	l, err := s.Claim(ctx, subnet.ClaimRequest{Config: e.nc, Record: rec})
	if err != nil || l.Subnet.String() != "10.244.251.0/24" {
		t.Fatalf("claim after the podCIDRs were set = %+v, %v", l, err)
	}
}

// testNetworkAvailable: the NetworkUnavailable condition set False through
// weftd's token, other conditions left alone, and a second call writes
// nothing.
func (e *env) testNetworkAvailable(t *testing.T) {
	s := e.store(t, Config{})
	ctx := ctxT(t, 30*time.Second)
	n := e.node(t, "condition")
	// As a kubelet and a cloud route controller would have left them (the
	// controller-manager may write the Node meanwhile: retry).
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := e.admin.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Status.Conditions = []corev1.NodeCondition{
			{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionTrue, Reason: "NoRouteCreated", LastTransitionTime: metav1.Now()},
			{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", LastTransitionTime: metav1.Now()},
		}
		_, err = e.admin.CoreV1().Nodes().UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetNetworkAvailable(ctx, n.Name); err != nil {
		t.Fatal(err)
	}
	got, err := e.admin.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	conds := map[corev1.NodeConditionType]corev1.NodeCondition{}
	for _, c := range got.Status.Conditions {
		conds[c.Type] = c
	}
	if c := conds[corev1.NodeNetworkUnavailable]; c.Status != corev1.ConditionFalse || c.Reason != conditionReason {
		t.Errorf("NetworkUnavailable %+v, want False for %s", c, conditionReason)
	}
	if c := conds[corev1.NodeMemoryPressure]; c.Status != corev1.ConditionFalse || c.Reason != "KubeletHasSufficientMemory" {
		t.Errorf("MemoryPressure %+v: changed", c)
	}
	if err := s.SetNetworkAvailable(ctx, n.Name); err != nil {
		t.Fatal(err)
	}
	again, err := e.admin.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if again.ResourceVersion != got.ResourceVersion {
		t.Errorf("a second SetNetworkAvailable wrote the Node (resourceVersion %s → %s)", got.ResourceVersion, again.ResourceVersion)
	}
	e.deleteNode(t, n.Name)
}

// podToken returns a rest.Config with a token of weftd's ServiceAccount
// bound to a pod of it on node (created here; no kubelet runs it): the
// token a DaemonSet pod on that node gets.
func (e *env) podToken(t *testing.T, node string) *rest.Config {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "weftd-" + node, Namespace: "weft-system"},
		Spec: corev1.PodSpec{
			NodeName: node, ServiceAccountName: "weftd", AutomountServiceAccountToken: ptr(false),
			Containers: []corev1.Container{{Name: "weftd", Image: "weft:test"}},
		},
	}
	pod, err := e.admin.CoreV1().Pods("weft-system").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod on %s: %v", node, err)
	}
	tok, err := e.admin.CoreV1().ServiceAccounts("weft-system").CreateToken(ctx, "weftd", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: ptr(int64(3600)),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("pod-bound token for %s: %v", pod.Name, err)
	}
	rc := rest.CopyConfig(e.weftd)
	rc.BearerToken = tok.Status.Token
	return rc
}

// testOwnRecordGuard applies etc/kubernetes/weft-guard.yaml: with tokens
// bound to pods on their nodes, each weftd claims and updates its own
// record, and node b's token can neither update nor delete node a's. A
// token bound to no pod writes no record.
func (e *env) testOwnRecordGuard(t *testing.T) {
	ctx := ctxT(t, 2*time.Minute)
	path, err := filepath.Abs(filepath.Join("..", "..", "etc", "kubernetes", "weft-guard.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := e.c.Kubectl(ctx, "apply", "-f", path); err != nil {
		t.Fatalf("kubectl apply -f weft-guard.yaml: %v\n%s", err, out)
	}
	a := e.node(t, "guard-a", "10.244.252.0/24", "fd10:244:0:fc::/64")
	b := e.node(t, "guard-b", "10.244.253.0/24", "fd10:244:0:fd::/64")
	sa := newStore(t, e.podToken(t, a.Name), Config{})
	sb := newStore(t, e.podToken(t, b.Name), Config{})

	// The policy takes effect a moment after it is created: b's write of
	// a's record is refused once it has.
	la, err := sa.Claim(ctx, subnet.ClaimRequest{Config: e.nc, Record: record(a.Name, 40)})
	if err != nil {
		t.Fatalf("claim of its own record with a pod-bound token: %v", err)
	}
	if _, err := sb.Claim(ctx, subnet.ClaimRequest{Config: e.nc, Record: record(b.Name, 41)}); err != nil {
		t.Fatalf("claim of its own record with a pod-bound token: %v", err)
	}
	hijack := la.Record
	hijack.PublicIP = netip.MustParseAddr("198.18.1.66")
	hijack.Version++
	var last error
	err = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, last = sb.UpdateRecord(ctx, la, hijack)
		if last == nil {
			// The policy was not in force yet: put a's record back.
			if la, last = sa.UpdateRecord(ctx, la, la.Record); last != nil {
				return false, last
			}
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("the guard never refused node b's update of a's record: %v (last: %v)", err, last)
	}
	if !strings.Contains(last.Error(), "WeftNode of the node its pod runs on") {
		t.Errorf("b's update of a's record: %v, want the policy's refusal", last)
	}
	t.Logf("refused: %v", last)
	if w := e.getRecord(t, a.Name); w.Spec.PublicIP != la.Record.PublicIP.String() {
		t.Errorf("a's record holds public IP %s after b's refused write, want %s", w.Spec.PublicIP, la.Record.PublicIP)
	}
	if err := sb.dyn.Resource(GVR).Delete(ctx, a.Name, metav1.DeleteOptions{}); err == nil || !strings.Contains(err.Error(), "WeftNode of the node its pod runs on") {
		t.Errorf("b's delete of a's record = %v, want the policy's refusal", err)
	}
	// Its own record: allowed.
	own := record(b.Name, 41)
	own.Version = 2
	lb, err := sb.Claim(ctx, subnet.ClaimRequest{Config: e.nc, Record: record(b.Name, 41)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sb.UpdateRecord(ctx, lb, own); err != nil {
		t.Errorf("b's update of its own record: %v", err)
	}
	// A token bound to no pod (weftd's token in the tests above): no node
	// name, no write.
	unbound := e.store(t, Config{})
	if _, err := unbound.UpdateRecord(ctx, lb, own); err == nil || !strings.Contains(err.Error(), "WeftNode of the node its pod runs on") {
		t.Errorf("update with a token bound to no pod = %v, want the policy's refusal", err)
	}
}
