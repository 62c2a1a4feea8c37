// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package cni implements the weft CNI plugin (binary cni/cmd/weft, "type":
// "weft" in a network config). It wires each pod onto the node's bridge with
// an address from the node's subnet, which weftd publishes in the subnet file.
//
// Kernel state the plugin owns, all in the namespace it runs in (the node's):
//
//	         node namespace                        pod namespace
//	weft0 (bridge, gateway 10.244.3.1/24,
//	       fd10:244:0:3::1/64)
//	  ├── weftXXXXXXXX (veth) ─────────────────────  eth0 10.244.3.7/24
//	  └── weftYYYYYYYY (veth) ──── ...                    default via 10.244.3.1
//
// The host end of a veth is named "weft" plus 8 hex digits of a hash of the
// container ID and interface name, and carries "<containerID>/<ifname>" as
// its alias, so DEL and GC can find it without any other state. Addresses
// come from the file store in package [github.com/weftnet/weft/cni/ipam].
// Masquerading is not the plugin's job: weftd keeps one nftables table for
// the whole node.
package cni
