// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package hostgw is weft's host-gw backend: no tunnel, no device of its
// own; every peer's pod subnet is routed to the peer's underlay address.
// It works only when all nodes share one L2 segment, and it is the fastest
// backend there (no encapsulation, the underlay MTU for pods).
//
// # Kernel state it owns
//
// Only routes, each with weft's protocol ([backend.RouteProtocol]):
//
//	route <P's subnet> via <P's public IP> dev <underlay> proto 0x57
//	route <P's IPv6 subnet> via <P's public IPv6> dev <underlay> proto 0x57
//
// [Backend.Reconcile] converges them like every weft backend: missing
// routes added, changed ones replaced, correct ones untouched, and routes of
// departed peers deleted once the caller's view is complete. Routes of any
// other protocol are never touched.
//
// # Peers that are not on the segment
//
// A route via an address the kernel cannot reach directly would be a black
// hole (or, with onlink, a flood of failed ARP). So a peer whose public IP
// the kernel reaches only through a gateway (or through another interface
// than the configured one) gets no route: it is reported in
// [backend.Result.Problems] with the reason, which weftd shows in its log
// and in /status. Use the vxlan backend with DirectRouting for clusters
// that span segments.
package hostgw
