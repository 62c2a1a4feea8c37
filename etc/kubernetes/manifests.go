// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kubernetes

import "embed"

// ModeManifests are the files Kubernetes mode needs before any weftd
// starts, in the order to apply them: the WeftNode CRD, weftd's
// ServiceAccount and RBAC, and the guard that lets a node write only its
// own record. The lab (e2e/cmd/weft-lab) applies them from here.
var ModeManifests = []string{"weft-crd.yaml", "weft-rbac.yaml", "weft-guard.yaml"}

//go:embed weft-crd.yaml weft-rbac.yaml weft-guard.yaml
var files embed.FS

// Manifest returns the content of the manifest file name (one of
// ModeManifests).
func Manifest(name string) ([]byte, error) { return files.ReadFile(name) }
