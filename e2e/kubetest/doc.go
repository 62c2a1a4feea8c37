// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package kubetest runs a real Kubernetes control plane for weft's
// Kubernetes-mode tests: an etcd (the project's weft-etcd), a
// kube-apiserver and, when asked, a kube-controller-manager (its nodeipam
// controller assigns Nodes' podCIDRs, its garbage collector deletes what a
// deleted Node owned), each a process of its own inside a network
// namespace. [Start] returns a [Cluster] with an admin rest.Config and
// kubeconfig file, and stops the processes and removes their files when
// the test ends, whether it passed or failed.
//
// The Kubernetes programs are not built by the tests: `make kube-tools`
// builds them from the nested module e2e/kube/tools (k8s.io/kubernetes
// never enters weft's own go.mod) into a cache directory and exports its
// path as WEFT_KUBE_TOOLS ([ToolsEnv]). Without it the tests skip, except
// under CI, where they fail.
//
// The control plane lives in one network namespace, by default one
// created for the test, whose loopback link holds 198.18.0.2/32:
//
//	namespace kt-<random> (or Options.NetNS)
//	┌───────────────────────────────────────────────────────────────┐
//	│ weft-etcd                127.0.0.1:2479 (client), :2480 (peer)│
//	│ kube-apiserver           https://<Addr>:6443                  │
//	│ kube-controller-manager  https://127.0.0.1:10257 (/healthz)   │
//	│ link lo                  127.0.0.1/8, 198.18.0.2/32 = Addr    │
//	└───────────────────────────────────────────────────────────────┘
//
// The test process reaches the API server through [Cluster.DialContext],
// which dials from inside that namespace; programs run there read the
// kubeconfig file. One control plane per namespace: the ports are fixed.
package kubetest
