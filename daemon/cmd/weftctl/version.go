// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package main

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"
