// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build !linux

package daemon

import (
	"errors"
	"time"
)

// dirNotify is inotify's, which only Linux has: elsewhere the endpoint
// loop polls.
type dirNotify struct{ gone bool }

func newDirNotify(string) (*dirNotify, error) { return nil, errors.ErrUnsupported }

func (*dirNotify) wait(time.Duration) bool { return false }

func (*dirNotify) close() {}
