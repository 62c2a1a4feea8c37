// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package docker holds the Dockerfile of weft's image and the install-cni.sh
// script its init container runs (neither is Go code), and the static checks
// that stand in for a build: no Docker engine runs on the machines this
// project is developed and tested on. The test checks the Dockerfile's shape
// (a build stage that runs make build with CGO_ENABLED=0, a minimal run-time
// stage), that every binary it copies is one make build produces and every
// file it copies exists, and lints install-cni.sh with shellcheck. The
// Kubernetes manifest's test (etc/kubernetes) runs install-cni.sh for real.
package docker
