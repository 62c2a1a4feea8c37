// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package vxlan is weft's VXLAN backend: it carries pod traffic between
// nodes in UDP (port 8472 by default) through one kernel VXLAN device per
// node.
//
// # Kernel state it owns
//
// One device, weft.<VNI> unless configured otherwise:
//
//	weft.1: vxlan id 1 dstport 8472 local <public IP> dev <underlay> nolearning
//	        address <VTEP MAC, persisted in the state dir>, addrgenmode none
//	        inet <this node's subnet network address>/32
//	        inet6 <this node's IPv6 subnet network address>/128
//
// and, for every peer node P reached through the tunnel, in this order:
//
//	neigh  <P's subnet network address> lladdr <P's VTEP MAC> dev weft.1 permanent
//	fdb    <P's VTEP MAC> dst <P's public IP> dev weft.1 self permanent
//	route  <P's subnet> via <P's subnet network address> dev weft.1 onlink proto 0x57
//
// (the same neighbour and route for P's IPv6 subnet). The route comes last
// and goes first: whenever it exists, the neighbour and FDB entries it
// needs exist too, so the kernel never has to resolve the gateway (no ARP or
// neighbour discovery on the overlay, and learning is off, so nothing is
// flooded). Every peer's VTEP address is the network address of its subnet,
// which the peer carries on its own device; traffic a node originates to a
// remote pod therefore leaves with that address as its source, and replies
// come back to it.
//
// With DirectRouting, a peer whose public IP the kernel reaches without a
// gateway (same L2 segment) gets a plain route instead,
//
//	route <P's subnet> via <P's public IP> dev <underlay> proto 0x57
//
// and no neighbour or FDB entry; its IPv6 subnet goes the same way through
// its public IPv6 address when it has a directly reachable one, and through
// the tunnel otherwise.
//
// # Level-triggered
//
// [Backend.Reconcile] is handed every peer. It reads the device's
// neighbour and FDB entries and weft's routes, and changes only what
// differs: missing entries are added, changed ones replaced, correct ones
// left alone, and (once the caller's view is complete) entries for peers
// that are gone are deleted. It deletes neighbour and FDB entries only on
// its own device and routes only with weft's protocol
// ([backend.RouteProtocol]). This is what lets a periodic resync repair
// drift (ip neigh flush, a deleted route) and clean up after peers that
// left while weftd was down; the reason flannel dropped its L2/L3-miss
// callbacks.
//
// Between resyncs weftd hands [Backend.Update] only the peers that changed:
// it writes their neighbour, FDB entry and route and deletes what only
// their old data needed, reading no table, so that one change among
// thousands of peers costs what the change costs. Drift stays
// Reconcile's to repair, at the next resync.
//
// # Restarts
//
// [Backend.Setup] adopts an existing device when it is compatible (same
// VNI, port, local IP, parent and learning off) without touching it, so a
// weftd restart drops no packets. The VTEP MAC is kept in the state dir and
// set on the device whenever it is created, so it stays the same across
// restarts, reboots and re-creations and peers' FDB entries stay valid. An
// incompatible device is deleted and re-created, and the reason is logged.
package vxlan
