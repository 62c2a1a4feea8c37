// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/weftnet/weft/daemon/status"
	"github.com/weftnet/weft/subnet"
	subnetkube "github.com/weftnet/weft/subnet/kube"
)

// kubeconfigFlag registers --kubeconfig on fs: a cluster in Kubernetes
// mode (weftd --kube-subnet-mgr), whose leases are Nodes' podCIDRs joined
// with WeftNode records. Its default comes from WEFTCTL_KUBECONFIG.
func kubeconfigFlag(fs *flag.FlagSet) *string {
	def := os.Getenv(envName("kubeconfig"))
	return fs.String("kubeconfig", def, "kubeconfig of a cluster in Kubernetes mode: find its nodes (and pods) through the API server instead of etcd (env "+envName("kubeconfig")+")")
}

// kubeLeasesList lists the leases of a Kubernetes-mode cluster, as
// leasesList does etcd's: records that are not leases go to errOut with
// the reason. Kubernetes-mode leases do not expire (TTL LEFT is -).
func kubeLeasesList(ctx context.Context, kubeconfig, output string, cio *cmdIO) error {
	view, err := kubeView(ctx, kubeconfig)
	if err != nil {
		return err
	}
	for _, r := range view.Rejected {
		fmt.Fprintf(cio.errOut, "rejected weftnode/%s: %s\n", r.Key, r.Reason)
	}
	now := time.Now()
	if output == "json" {
		return writeLeasesJSON(cio.out, view.Leases, now)
	}
	if len(view.Leases) == 0 {
		fmt.Fprintln(cio.out, "no leases: no Node with podCIDRs has a WeftNode record")
		return nil
	}
	return writeLeasesTable(cio.out, view.Leases, now)
}

// kubeView lists a Kubernetes-mode cluster's leases: Nodes' podCIDRs
// joined with their WeftNode records, as weftd's store sees them.
func kubeView(ctx context.Context, kubeconfig string) (subnet.View, error) {
	s, err := kubeStore(kubeconfig)
	if err != nil {
		return subnet.View{}, err
	}
	defer s.Close()
	return kubeList(ctx, s, kubeconfig)
}

// kubeStore opens the lease store of the cluster behind kubeconfig.
func kubeStore(kubeconfig string) (*subnetkube.Store, error) {
	rc, err := subnetkube.RESTConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	rc.Timeout = callTimeout
	log := logrus.New()
	log.Out = io.Discard
	return subnetkube.New(rc, subnetkube.Config{CallTimeout: callTimeout, Log: log})
}

func kubeList(ctx context.Context, s *subnetkube.Store, kubeconfig string) (subnet.View, error) {
	view, err := s.List(ctx)
	if err != nil {
		return subnet.View{}, fmt.Errorf("%w\ncheck --kubeconfig %s and that the API server serves %s (kubectl get weftnodes)", err, kubeconfig, subnetkube.CRDName)
	}
	return view, nil
}

// kubeLocator locates the ends of `policy explain` in a Kubernetes-mode
// cluster: a pod by its Pod object (spec.nodeName, status.podIPs, checked
// against its node's podCIDRs as weftd checks it), an address by the Node
// whose podCIDR holds it.
type kubeLocator struct {
	leases []subnet.Lease
	// pod reads one Pod's endpoint ([subnetkube.Store.PodEndpoint]).
	pod func(ctx context.Context, namespace, name string) (subnet.Endpoint, error)
}

// newKubeLocator lists the cluster's leases; the returned function
// closes the store the locator reads Pods through.
func newKubeLocator(ctx context.Context, kubeconfig string) (*kubeLocator, func(), error) {
	s, err := kubeStore(kubeconfig)
	if err != nil {
		return nil, nil, err
	}
	view, err := kubeList(ctx, s, kubeconfig)
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	return &kubeLocator{leases: view.Leases, pod: s.PodEndpoint}, func() { s.Close() }, nil
}

func (l *kubeLocator) nodeOf(ctx context.Context, e status.PolicyEndArg) (string, error) {
	if e.Name == "" {
		return leaseNode(e.Addr, l.leases), nil
	}
	ep, err := l.pod(ctx, e.Namespace, e.Name)
	if err != nil {
		return "", err
	}
	if err := subnet.CheckEndpoint(ep, l.leases); err != nil {
		return "", fmt.Errorf("pod %s on node %s: weft does not take it as a pod of that node: %w", e, ep.Node, err)
	}
	return ep.Node, nil
}

func (l *kubeLocator) httpAddr(node string, port int) (string, error) {
	return nodeHTTPAddr(node, l.leases, port)
}
