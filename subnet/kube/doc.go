// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package kube implements the store's parts ([subnet.ConfigSource],
// [subnet.Leaser], [subnet.PeerSource], [subnet.Prober]) on the Kubernetes
// API, for weftd --kube-subnet-mgr:
//
//   - a node's subnets are its Node's spec.podCIDRs, which
//     kube-controller-manager assigns (--allocate-node-cidrs
//     --cluster-cidr); the store never picks one;
//   - each node's peer record (public IPs, backend data, gossip address,
//     node ID, data version) is a cluster-scoped WeftNode object (group
//     weft.dev) named after the Node and owned by it (ownerReference), so
//     that the garbage collector deletes it with the Node;
//   - the network config is the JSON in a ConfigMap key, or a file.
//
// Ownership: the Node (name, UID, podCIDRs) is the authority. A record
// whose owner UID is not its Node's current UID is stale. A record's
// epoch is the resourceVersion it was created with, written into it once
// as an integer (spec.epoch; 0 while being created, and then not yet a
// lease); every write of a record is guarded by the resourceVersion it
// was read at.
//
// The peer view comes from two informers, on Nodes (cached stripped to
// name, UID and podCIDRs) and on WeftNodes; it is handed on only once both
// have listed everything (never a partial view).
package kube
