// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Command kube-apiserver is Kubernetes's API server, built from
// k8s.io/kubernetes at the version this module's go.mod requires, for
// weft's Kubernetes-mode tests (`make kube-tools`). It is not shipped.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
