// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package nftexpr holds nftables rules that more than one of weft's tables
// write alike: the pod gate's (package cni/gate, linked by the CNI plugin)
// and the network policy's (package daemon/policy/nft). It links nothing
// but the nftables expressions.
package nftexpr
