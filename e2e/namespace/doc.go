// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package namespace creates, enters and deletes named network namespaces
// (bind mounts under /run/netns, as `ip netns add` makes them, so that
// `ip netns exec` and CNI_NETNS work with them). The e2e topology library
// (and through it the lab) and the privileged tests' kit (e2e/netnstest)
// both build on it; it does not import testing.
//
// Entering a namespace switches one OS thread: [Do] runs a function on a
// goroutine locked to its thread, switches the thread in and back, and
// never lets a thread whose namespace could not be restored run other
// goroutines. It needs Linux; elsewhere every function returns an error
// wrapping [errors.ErrUnsupported].
package namespace
