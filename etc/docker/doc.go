// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package docker holds the Dockerfile of weft's image (not Go code), for
// those who build it with a container engine, and the static checks that
// stand in for such a build: no Docker engine runs on the machines this
// project is developed and tested on, where make image builds the image
// without one (etc/image). The test checks the Dockerfile's shape (a build
// stage that runs make build with CGO_ENABLED=0, an empty run-time stage),
// that every binary it copies is one make build produces, and that its
// files, entrypoint and user are those of make image's image.
package docker
