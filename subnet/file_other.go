// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build !linux

package subnet

import (
	"fmt"
	"io"
	"os"
)

// readTrusted reads at most max bytes of the regular file at path. Only
// Linux runs the CNI plugin as root; elsewhere (weftctl on a laptop) the
// file is checked for what can be checked portably: not a symbolic link,
// a regular file, bounded.
func readTrusted(path string, max int64) ([]byte, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode()&os.ModeSymlink != 0 {
		return nil, &unsafeFile{path, "it is a symbolic link"}
	}
	if !st.Mode().IsRegular() {
		return nil, &unsafeFile{path, "not a regular file"}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, &unsafeFile{path, fmt.Sprintf("larger than %d bytes", max)}
	}
	return data, nil
}
