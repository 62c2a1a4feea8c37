// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package netnstest helps privileged tests build their topology in
// network namespaces of their own: [SkipUnlessRoot], [NewNS] (a named
// namespace removed at cleanup, with a netlink handle into it) and [NS.Do]
// (run a function on a thread switched into the namespace, restoring the
// thread's namespace afterwards), built on e2e/namespace, which the e2e
// library shares. [RequireTool] finds a command a test needs,
// installing its Debian package only in CI. [SCTPInit] builds the raw SCTP
// INIT packet the policy tests send (this kernel has no SCTP sockets).
//
// Tests never touch the root network namespace: everything they create
// lives in namespaces made here, so removing those namespaces removes it.
package netnstest
