// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package daemon is weftd, weft's node agent. It wires the lease store
// (subnet/etcd), gossip membership (daemon/membership) and a data-plane
// backend (backend/vxlan, backend/hostgw, backend/wireguard) together and
// owns the process lifecycle:
//
//	flags/env ──► Config ──► Run
//	                          │ state dir: node ID, data version, last good
//	                          │ config, lease, last complete peer snapshot
//	                          ▼
//	etcd config ─► backend.Setup ─► lease Claim ─► forwarding ─► subnet file
//	                          │                                    │
//	                          ▼                                    ▼
//	          KeepAlive · WatchLeases · WatchConfig · membership ─► reconcile loop
//	                                                                │ (debounced + resync)
//	                                                                ▼
//	                                                      backend.Reconcile(desired)
//
// Run also serves /healthz, /readyz, /metrics and /status on the HTTP
// address and keeps weft's own nftables table for IP masquerade. The start
// sequence starts no goroutine; once it is done, Run runs the loops and
// waits for them. The daemon type lists which goroutine writes which part
// of the state. The daemon reaches etcd only through [subnet.Store].
//
// The kernel work (backends, masquerade, underlay discovery, forwarding
// sysctls) is in _linux.go files; elsewhere it fails with an error wrapping
// [errors.ErrUnsupported], and the rest of the package, with its pure
// tests, builds and runs on any OS.
//
// The data plane outlives the process: when Run returns (SIGTERM), routes,
// neighbours, FDB entries, devices and the lease stay in place, so a
// restarted weftd loses no traffic. Everything weftd needs to start while
// etcd is unreachable is persisted in the state dir.
package daemon
