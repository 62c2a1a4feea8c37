// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Command kubectl is Kubernetes's command-line client, built at the
// version this module pins for weft's Kubernetes-mode tests and the lab
// (`make kube-tools`). It is not shipped.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
)

func main() {
	os.Exit(cli.Run(cmd.NewDefaultKubectlCommand()))
}
