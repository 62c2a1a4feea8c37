// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package e2e is weft's multi-node topology library. It builds a whole
// cluster inside network namespaces on one Linux host, runs real weftd
// processes and a real etcd in it, attaches pods through the real weft CNI
// plugin, and sends real packets between them. The e2e tests (build tag
// e2e), the benchmarks (build tag bench) and the lab (e2e/cmd/weft-lab) all use it; the
// package itself carries no build tag.
//
// The topology (namespace names start with a per-run prefix P, "wt<id>-"
// in tests, "weftlab-" in the lab):
//
//	                  namespace P-underlay
//	┌───────────────────────────────────────────────────────────────┐
//	│ bridge br0  198.18.0.1/24, 198.18.0.2/24 (etcd: weft-etcd)    │
//	│             2001:2::1/64, 2001:2::2/64 (dual-stack clusters)  │
//	└──┬────────────┬────────────┬─────────────┬────────────┬───────┘
//	   │ veth       │            │             │            │
//	┌──┴─────┐  ┌───┴────┐  ┌────┴───┐  ┌──────┴─────┐ ┌────┴─────────┐
//	│ node1  │  │ node2  │  │ node3  │  │ outside    │ │ router       │
//	│ eth0   │  │ eth0   │  │ eth0   │  │ eth0       │ │ 198.18.0.4   │
//	│ .0.11  │  │ .0.12  │  │ .0.13  │  │ 198.18.0.5 │ │ 198.18.1.1   │
//	│ weftd  │  │ weftd  │  │ weftd  │  │ (not a     │ │ bridge br1   │
//	│ weft0  │  │ weft0  │  │ weft0  │  │  node)     │ └──┬───────────┘
//	└─┬───┬──┘  └─┬───┬──┘  └─┬───┬──┘  └────────────┘    │ veth
//	 pod pod     pod pod     pod pod                    nodes on the
//	                                                    second segment,
//	                                                    198.18.1.(10+i)
//
// Node i lives in namespace P-node<i> with the underlay address
// 198.18.0.(10+i) (198.18.1.(10+i) behind the router), runs weftd under
// `ip netns exec`, and has its own state dir, subnet file, VXLAN and
// WireGuard device names (unique per run), HTTP address (<node IP>:9950)
// and gossip address (<node IP>:7950). Pods are namespaces
// P-node<i>-pod<j> attached to the node's bridge by the weft CNI plugin,
// which runs inside the node namespace.
//
// Nothing is ever created in the host's root network namespace. A [Cluster]
// records what it made in a [State]; [Teardown] removes exactly that, so the
// same code cleans up after a test (on success and on failure) and after
// `weft-lab down`.
//
// Building and driving a cluster needs Linux (the *_linux.go files); the
// options, the state file, packet decoding and [NS] are portable, so that
// the lab binary and the pure tests build and vet on any OS.
package e2e
