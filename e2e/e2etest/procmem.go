// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2etest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ProcMemory is a process's resident memory in bytes, from
// /proc/PID/smaps_rollup (Linux).
type ProcMemory struct {
	// RSS is all resident pages; Anon the anonymous ones (heap, stacks).
	RSS, Anon int64
}

// File is the resident file-backed pages (RSS less anonymous): mostly
// the mapped binary.
func (m ProcMemory) File() int64 { return m.RSS - m.Anon }

// ReadProcMemory reads pid's resident memory.
func ReadProcMemory(pid int) (ProcMemory, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return ProcMemory{}, err
	}
	var m ProcMemory
	for line := range strings.SplitSeq(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "Rss:":
			m.RSS = kb << 10
		case "Anonymous:":
			m.Anon = kb << 10
		}
	}
	return m, nil
}

// MaxProcMemory returns, over pids, the highest RSS and the highest
// anonymous RSS, each on its own; a process that cannot be read counts
// as zero.
func MaxProcMemory(pids ...int) ProcMemory {
	var m ProcMemory
	for _, pid := range pids {
		p, _ := ReadProcMemory(pid)
		m.RSS, m.Anon = max(m.RSS, p.RSS), max(m.Anon, p.Anon)
	}
	return m
}
