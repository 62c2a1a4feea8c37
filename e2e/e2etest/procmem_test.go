// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2etest

import (
	"os"
	"runtime"
	"testing"
)

func TestReadProcMemory(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("smaps_rollup is Linux's")
	}
	m, err := ReadProcMemory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.Anon <= 0 || m.Anon > m.RSS || m.File() <= 0 {
		t.Fatalf("implausible memory of this process: %+v (file %d)", m, m.File())
	}
	if _, err := ReadProcMemory(-1); err == nil {
		t.Fatal("no error for pid -1")
	}
	if got := MaxProcMemory(os.Getpid(), -1); got.RSS < m.RSS/2 {
		t.Fatalf("MaxProcMemory with an unreadable pid: %+v, want about %+v", got, m)
	}
}
