// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package e2e is weft's multi-node topology library. It builds a whole
// cluster inside network namespaces on one Linux host, runs real weftd
// processes and a real etcd in it, attaches pods through the real weft CNI
// plugin, and sends real packets between them. The e2e tests (build tag
// e2e), the benchmarks (build tag bench) and `weftctl lab` all use it; the
// package itself carries no build tag.
//
// The topology (every name carries a random per-run suffix, shown as S):
//
//	                underlay namespace wu-S
//	┌──────────────────────────────────────────────────────────────┐
//	│ bridge ub-S  198.18.0.1/24, 198.18.0.2/24 (etcd: weft-etcd)  │
//	│              2001:2::1/64, 2001:2::2/64 (when IPv6 is on)     │
//	└──┬────────────┬────────────┬─────────────┬────────────┬──────┘
//	   │ veth       │            │             │            │
//	┌──┴─────┐  ┌───┴────┐  ┌────┴───┐  ┌──────┴─────┐ ┌────┴─────────┐
//	│ node1  │  │ node2  │  │ node3  │  │ outside    │ │ router       │
//	│ eth0   │  │ eth0   │  │ eth0   │  │ wo-S       │ │ wr-S         │
//	│ .11    │  │ .12    │  │ .13    │  │ 198.18.0.5 │ │ 198.18.0.4   │
//	│ weftd  │  │ weftd  │  │ weftd  │  │ (not a     │ │ 198.18.1.1   │
//	│ weft0  │  │ weft0  │  │ weft0  │  │  node)     │ │ bridge rb-S  │
//	└─┬───┬──┘  └─┬───┬──┘  └─┬───┬──┘  └────────────┘ └──┬───────────┘
//	 pod pod     pod pod     pod pod                     nodes on the
//	                                                     second segment
//	                                                     198.18.1.(10+i)
//
// Node i lives in namespace wn<i>-S with its underlay address 198.18.0.(10+i)
// (or 198.18.1.(10+i) behind the router), runs `weftd` under
// `ip netns exec`, and owns its own state dir, subnet file, VXLAN and
// WireGuard device names, HTTP address (<node IP>:9950) and gossip address
// (<node IP>:7950). Pods are namespaces wp<i><j>-S attached to the node's
// bridge by the weft CNI plugin, which runs inside the node namespace.
//
// Nothing is ever created in the host's root network namespace. A [Cluster]
// records what it made in a [State]; [Teardown] removes exactly that, so the
// same code cleans up after a test (on success and on failure) and after
// `weftctl lab down`.
package e2e
