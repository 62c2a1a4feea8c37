// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package subnet holds weft's network configuration schema and its
// validation, the lease types, the store interface ([Store], split by
// consumer into [ConfigSource], [Leaser], [PeerSource] and [Prober]) and
// the node's subnet file, which weftd writes and the weft CNI plugin reads.
//
// Everything here is portable: lease maths, config parsing and the subnet
// file have no kernel dependency, so their tests run anywhere. The etcd
// implementation of [Store] lives in subnet/etcd.
package subnet
