// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Command kube-controller-manager is Kubernetes's controller manager,
// built from k8s.io/kubernetes at the version this module's go.mod
// requires, for weft's Kubernetes-mode tests (`make kube-tools`): they
// run its nodeipam controller (podCIDRs) and its garbage collector
// (objects owned by a deleted Node). It is not shipped.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
