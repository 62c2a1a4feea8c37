// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package cni

import (
	"fmt"

	"github.com/containernetworking/cni/pkg/types"
)

// Plugin-specific CNI error codes (the spec reserves 100 and up for them).
const (
	// CodeNoAddress: the node's subnet has no free address.
	CodeNoAddress uint = 100
	// CodeKernel: a netlink or sysctl operation failed.
	CodeKernel uint = 101
	// CodeIfExists: the interface already exists in the container.
	CodeIfExists uint = 102
	// CodeCheckFailed: CHECK found a difference from the expected state.
	CodeCheckFailed uint = 103
	// CodeGC: GC could not remove everything; the message lists what.
	CodeGC uint = 104
)

func cniErr(code uint, format string, a ...any) *types.Error {
	return types.NewError(code, fmt.Sprintf(format, a...), "")
}
