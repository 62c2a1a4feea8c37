// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
)

// cmdGossipKey prints a new random gossip encryption key: 32 bytes
// (AES-256) in base64, one line, ready for a line of --gossip-key-file.
func cmdGossipKey(ctx context.Context, args []string) error {
	return gossipKey(stdout, args)
}

func gossipKey(w io.Writer, args []string) error {
	fs := flag.NewFlagSet("gossip-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: weftctl gossip-key [-size 32]

Prints a new random gossip key in base64. Put it in the gossip key file
(mode 0600) of every node; see docs/membership.md for key rotation.`)
		fs.PrintDefaults()
	}
	size := fs.Int("size", 32, "key size in bytes: 16, 24 or 32 (AES-128, -192, -256)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("gossip-key: unexpected argument %q", fs.Arg(0))
	}
	if *size != 16 && *size != 24 && *size != 32 {
		return fmt.Errorf("gossip-key: size %d: want 16, 24 or 32", *size)
	}
	key := make([]byte, *size)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("gossip-key: read random bytes: %w", err)
	}
	_, err := fmt.Fprintln(w, base64.StdEncoding.EncodeToString(key))
	return err
}
