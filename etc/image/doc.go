// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package image builds weft's container image without a container engine
// (make image, through weft-image): one layer on an empty base holding the
// static binaries make build produces, at the paths [Files] lists, with
// weftd as the entrypoint, a non-root default user and the OCI labels
// (source, version, revision, creation time). It writes the image as a
// docker-archive tarball, which docker load, podman load, ctr import and
// skopeo's docker-archive: transport read.
//
// The build is reproducible: every time stamp in the layer and the config
// is the one given (make passes the commit time, or SOURCE_DATE_EPOCH), the
// layer's entries are in a fixed order with fixed owners and modes, and the
// layer is compressed once with a fixed gzip level, so two builds of one
// commit give byte-identical archives and the same digests.
//
// etc/docker's Dockerfile describes the same image for those who build with
// a container engine; its test checks that both hold the same files.
package image
