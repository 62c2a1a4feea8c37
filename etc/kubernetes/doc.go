// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package kubernetes holds weft's Kubernetes manifests, which are not Go
// code, and the tests that keep them from rotting. weft.yaml (Namespace,
// ConfigMap, DaemonSet) runs weftd in etcd mode; weft-kube.yaml (the same,
// for Kubernetes mode: weftd --kube-subnet-mgr with its ServiceAccount's
// pod-bound token) goes with weft-crd.yaml (the WeftNode
// CustomResourceDefinition), weft-rbac.yaml (weftd's ServiceAccount and the
// verbs it uses) and weft-guard.yaml (the admission policy that lets a node
// write only its own record).
//
// Every document of the DaemonSet manifests is decoded strictly into the
// k8s.io/api types (an unknown or misspelt field fails), and the
// essentials are asserted against the code they depend on: weftd's flags
// and their validation, the network config parser, the CNI plugin's config
// parser, the image make image tags and the files it holds, and the init
// container's installer (weft-install-cni), which the test runs. The e2e
// tier applies all five files to a real kube-apiserver and runs weftd with
// a token bound to a pod made from weft-kube.yaml's template
// (e2e TestKubeDaemonSet; the store's own tests are in subnet/kube). The
// package embeds the CRD, RBAC and guard ([ModeManifests], [Manifest]) for
// the lab, which applies them to its own API server (make lab STORE=kube).
package kubernetes
