// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build !cnitesthook

package cni

import "time"

// testHook is a no-op in production builds; see hook_cnitesthook.go.
func testHook(string) {}

// traceStep is a no-op in production builds; see hook_cnitesthook.go.
func traceStep(string) {}

// traceDuration is a no-op in production builds; see hook_cnitesthook.go.
func traceDuration(string, time.Duration) {}

// testNoAntispoof is false in production builds; see hook_cnitesthook.go.
func testNoAntispoof() bool { return false }
