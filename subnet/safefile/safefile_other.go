// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build !linux

package safefile

import (
	"io"
	"os"
)

// Read reads the regular file at path under the rules r. Only Linux runs
// weft's readers as root; elsewhere (weftctl on a laptop, tests) the file
// is checked for what can be checked portably: not a symbolic link, a
// regular file, bounded, and for a secret no permission bits for group or
// others.
func Read(path string, r Rules) ([]byte, error) {
	if err := Check(path, r); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, r.Max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > r.Max {
		return nil, r.tooLarge(path, int64(len(data)))
	}
	return data, nil
}

// Check checks the file at path as [Read] does, without opening it.
func Check(path string, r Rules) error {
	st, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if st.Mode()&os.ModeSymlink != 0 {
		return &Error{r.What, path, "it is a symbolic link", nil}
	}
	if !st.Mode().IsRegular() {
		return &Error{r.What, path, "not a regular file", nil}
	}
	if st.Size() > r.Max {
		return r.tooLarge(path, st.Size())
	}
	if r.Secret && st.Mode().Perm()&0o077 != 0 {
		return r.secretMode(path, st.Mode().Perm())
	}
	return nil
}
