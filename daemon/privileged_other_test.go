// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build !linux

package daemon

// privileged is false off Linux: the privileged tests build network
// namespaces.
func privileged() bool { return false }
