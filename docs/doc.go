// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package docs holds weft's operator documentation (Markdown) and the tests
// that keep it, and the source tree, honest: the configuration reference is
// checked against the code, every package has a package doc, file names
// follow the project's rules, and weftctl and the CNI plugin link only what
// they need.
package docs
