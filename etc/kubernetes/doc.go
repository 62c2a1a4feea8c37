// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package kubernetes holds weft's Kubernetes manifest (weft.yaml: Namespace,
// ConfigMap, DaemonSet), which is not Go code, and the test that keeps it from
// rotting: every document is decoded strictly into the k8s.io/api types
// (an unknown or misspelt field fails), and the essentials are asserted
// against the code they depend on: weftd's flags and their validation, the
// network config parser, the CNI plugin's config parser, the image make
// image tags and the files it holds, and the init container's installer
// (weft-install-cni), which the test runs.
//
// Kubernetes mode (weftd --kube-subnet-mgr) adds weft-crd.yaml (the WeftNode
// CustomResourceDefinition), weft-rbac.yaml (weftd's ServiceAccount and the
// verbs it uses) and weft-guard.yaml (the admission policy that lets a node
// write only its own record). Those are tested by applying them to a real
// kube-apiserver with kubectl and running the store and weftd on them (the
// e2e tier: subnet/kube and e2e). The package embeds those three
// ([ModeManifests], [Manifest]) for the lab, which applies them to its own
// API server (make lab STORE=kube).
package kubernetes
