// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package wireguard is weft's encrypted backend: pod traffic between nodes
// travels inside WireGuard tunnels, one peer per other node.
//
// # Kernel state owned by the backend
//
// One WireGuard interface per node (default name "weft-wg"):
//
//	node A                                           node B
//	pod 10.244.1.2                                   pod 10.244.2.2
//	   │                                                │
//	weft-wg 10.244.1.0/32 ══ UDP 51820, encrypted ══ weft-wg 10.244.2.0/32
//	   route 10.244.2.0/24 dev weft-wg proto 0x57       route 10.244.1.0/24 dev weft-wg proto 0x57
//	   peer B: endpoint 198.18.0.2:51820                peer A: endpoint 198.18.0.1:51820
//	           allowed-ips 10.244.2.0/24                        allowed-ips 10.244.1.0/24
//
// The backend owns:
//
//   - The interface. It carries this node's subnet network address as a /32
//     (and the IPv6 subnet's network address as a /128). Without it,
//     packets the node itself sends into the tunnel would leave with the
//     underlay source address, which is outside every peer's allowed IPs for
//     us, and the peers would drop them.
//   - One WireGuard peer per other node: its public key and listen port come
//     from the node's lease record, the endpoint is its public IP, and its
//     allowed IPs are its pod subnet(s). Peers are added, updated and removed
//     one at a time; the peer list is never replaced as a whole, because
//     that drops every session and forces every tunnel to re-handshake.
//   - One route per peer subnet through the interface, marked with
//     [backend.RouteProtocol]; routes without that mark are never touched.
//
// The private key is generated once and kept in the state dir (file mode
// 0600, directory 0700), so the public key other nodes know stays valid
// across restarts. An optional cluster-wide pre-shared key adds a
// symmetric layer (post-quantum hedge); its file must be mode 0600.
//
// # Kernel or userspace
//
// At Setup the backend asks the kernel to create a link of type wireguard
// with an impossible MTU ([KernelSupported]): EOPNOTSUPP means the kernel
// has no WireGuard, EINVAL means it has (and nothing was created). The
// answer does not depend on whether the module is already loaded, unlike
// the generic-netlink family, which appears only after loading. With kernel
// support the backend creates (or adopts) a kernel interface, which
// outlives weftd together with its peers, addresses and routes. Without it,
// weftd runs the device itself with the golang.zx2c4.com/wireguard library:
// a TUN interface, the library's UDP sockets and a UAPI socket in
// /var/run/wireguard so that wg(8) and wgctrl can inspect and manage it.
// Both kinds are configured through wgctrl with the same code.
//
// The userspace data plane lives in the weftd process: when weftd stops, the
// TUN interface and its routes disappear. On start the backend re-creates
// them and, once peers are configured, initiates a handshake with every new
// peer at once, so that flows towards this node resume at once instead of
// stalling until the other side's timers fire (about 15 s).
//
// The userspace device's memory is mostly packet buffers of 64 KiB, one per
// packet in flight whatever its size: about 24 MiB that its readers hold
// always, and under load the packets in flight, which the library's queues
// do not bound: with TUN offloads, weft's readers wait while more than 32
// packets per direction are in flight (flow_linux.go). weftd bounds its
// heap with a soft memory limit (--memory-limit,
// runtime/debug.SetMemoryLimit), which makes the garbage collector return
// pool memory under sustained load; a lower limit costs some throughput
// (TestBenchWireGuard measures both). While the device is busy the
// collector runs at GOGC=25 rather than the process's setting, since a
// buffer that a collection freed is zeroed whole when handed out again,
// so the heap's headroom becomes resident (TestBenchWireGuardMemory). Once
// a busy device goes quiet it restores the setting and returns the memory
// of the burst to the OS within about a second. Each peer costs about
// 31 KiB more (the library's per-peer queues and goroutines): at 5000
// peers the heap holds about 180 MiB before any traffic, so
// --memory-limit must be raised for such clusters.
package wireguard
