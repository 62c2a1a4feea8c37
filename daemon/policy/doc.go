// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package policy is weft's network-policy engine, its pure part: it
// validates networking.k8s.io/v1 NetworkPolicy objects as the Kubernetes
// API server does ([Validate]) and compiles policies, pods and namespaces
// into the desired packet-filter state of one node ([Compile], [State]),
// which [State.Evaluate] can decide packets with. It links no kernel
// interface: package [github.com/weftnet/weft/daemon/policy/nft] loads a
// State into the kernel's nftables (the table is described there), so that
// weftctl can validate policies without linking nftables.
package policy
