// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build !linux

package namespace

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/vishvananda/netns"
)

// RunDir holds the bind mounts of named namespaces.
const RunDir = "/run/netns"

// errNoNetns is what every function returns off Linux.
var errNoNetns = fmt.Errorf("network namespaces need Linux: %w", errors.ErrUnsupported)

// Path returns the bind-mount path of the namespace name.
func Path(name string) string { return filepath.Join(RunDir, name) }

// Create fails: network namespaces need Linux.
func Create(name string) (netns.NsHandle, error) { return netns.None(), errNoNetns }

// Delete fails: network namespaces need Linux.
func Delete(name string) error { return errNoNetns }

// Open fails: network namespaces need Linux.
func Open(name string) (netns.NsHandle, error) { return netns.None(), errNoNetns }

// Do fails: network namespaces need Linux.
func Do(ns netns.NsHandle, fn func() error) error { return errNoNetns }

// DoNamed fails: network namespaces need Linux.
func DoNamed(name string, fn func() error) error { return errNoNetns }
