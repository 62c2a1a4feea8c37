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

	"github.com/weftnet/weft/subnet"
	subnetkube "github.com/weftnet/weft/subnet/kube"
)

// kubeconfigFlag registers --kubeconfig on fs: a cluster in Kubernetes
// mode (weftd --kube-subnet-mgr), whose leases are Nodes' podCIDRs joined
// with WeftNode records. Its default comes from WEFTCTL_KUBECONFIG.
func kubeconfigFlag(fs *flag.FlagSet) *string {
	def := os.Getenv(envName("kubeconfig"))
	return fs.String("kubeconfig", def, "kubeconfig of a cluster in Kubernetes mode: list its Nodes' leases instead of etcd's (env "+envName("kubeconfig")+")")
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
	rc, err := subnetkube.RESTConfig(kubeconfig)
	if err != nil {
		return subnet.View{}, err
	}
	rc.Timeout = callTimeout
	log := logrus.New()
	log.Out = io.Discard
	s, err := subnetkube.New(rc, subnetkube.Config{CallTimeout: callTimeout, Log: log})
	if err != nil {
		return subnet.View{}, err
	}
	defer s.Close()
	view, err := s.List(ctx)
	if err != nil {
		return subnet.View{}, fmt.Errorf("%w\ncheck --kubeconfig %s and that the API server serves %s (kubectl get weftnodes)", err, kubeconfig, subnetkube.CRDName)
	}
	return view, nil
}
