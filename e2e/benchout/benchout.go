// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package benchout writes benchmark figures as JSON lines, one object per
// figure at one size, so that the scale page's plots and fitted cost
// models can be made from a `make bench` or `make bench-scale` run. The
// figures go to <dir>/<bench>.jsonl, where dir is $WEFT_BENCH_OUT; with
// that variable unset nothing is written.
package benchout

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"
)

// Env names the directory the figures are written to.
const Env = "WEFT_BENCH_OUT"

// Row is one figure measured at one size, beside its reference from the
// same run when there is one.
type Row struct {
	Bench  string  `json:"bench"`  // the file's name: "wireguard-peers"
	Figure string  `json:"figure"` // what was measured: "program from empty"
	Size   int     `json:"size"`   // peers, members, nodes: what the figure scales with
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"` // "s", "ms", "MiB", "B/s", "count", ...
	// Ref and RefValue name and give the same-run reference, in Unit;
	// Ratio is Value/RefValue. All three are empty without a reference.
	Ref      string  `json:"ref,omitempty"`
	RefValue float64 `json:"refValue,omitempty"`
	Ratio    float64 `json:"ratio,omitempty"`
	// Note says anything needed to read the figure (the tool, a limit
	// hit, the machine's state).
	Note string    `json:"note,omitempty"`
	Time time.Time `json:"time"`
}

var (
	mu        sync.Mutex
	benchName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
)

// Write appends r to $WEFT_BENCH_OUT/<r.Bench>.jsonl, filling in Time and,
// when both values are set, Ratio. It does nothing when the variable is
// unset. The directory is created if missing.
func Write(r Row) error {
	dir := os.Getenv(Env)
	if dir == "" {
		return nil
	}
	if !benchName.MatchString(r.Bench) {
		return fmt.Errorf("bench name %q: want lowercase letters, digits and dashes", r.Bench)
	}
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	if r.Ratio == 0 && r.RefValue != 0 {
		r.Ratio = r.Value / r.RefValue
	}
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode bench row: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, r.Bench+".jsonl"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open bench output: %w", err)
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write bench output: %w", err)
	}
	return f.Close()
}
