// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Command weft-image writes weft's container image, built from make build's
// binaries, as a docker-archive tarball, with no container engine (see
// package image). make image runs it.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/weftnet/weft/etc/image"
)

func main() { os.Exit(run()) }

func run() int {
	fs := flag.NewFlagSet("weft-image", flag.ContinueOnError)
	var cfg image.Config
	fs.StringVar(&cfg.BinDir, "bin-dir", "bin", "the directory make build wrote the binaries into")
	fs.StringVar(&cfg.Arch, "arch", runtime.GOARCH, "the image's architecture (GOARCH)")
	fs.StringVar(&cfg.Version, "version", "", "the version (git describe)")
	fs.StringVar(&cfg.Revision, "revision", "", "the commit (git rev-parse HEAD)")
	created := fs.String("created", os.Getenv("SOURCE_DATE_EPOCH"), "the image's time, in seconds since 1970 (the commit time; default $SOURCE_DATE_EPOCH)")
	tag := fs.String("tag", "", "the image's name and tag (ghcr.io/weftnet/weft:VERSION)")
	out := fs.String("out", "", "the archive to write")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	secs, err := strconv.ParseInt(*created, 10, 64)
	if err != nil {
		fmt.Fprintf(os.Stderr, "weft-image: --created %q: want seconds since 1970\n", *created)
		return 2
	}
	cfg.Created = time.Unix(secs, 0)
	ref, err := name.NewTag(*tag, name.StrictValidation)
	if err != nil || *out == "" {
		fmt.Fprintf(os.Stderr, "weft-image: want --tag REPOSITORY:TAG (%v) and --out FILE\n", err)
		return 2
	}
	img, err := image.Build(cfg)
	if err == nil {
		err = image.WriteArchive(*out, ref, img)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "weft-image:", err)
		return 1
	}
	id, err := img.ConfigName()
	if err != nil {
		fmt.Fprintln(os.Stderr, "weft-image:", err)
		return 1
	}
	fmt.Printf("weft-image: wrote %s: %s, image ID %s\n", *out, ref, id)
	return 0
}
