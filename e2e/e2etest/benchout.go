// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2etest

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
)

// BenchOutEnv names the file benchmarks append their points to, one JSON
// object a line (see [BenchPoint]); unset, nothing is written.
// e2e/cmd/weft-scaleplot reads it (docs/scale.md).
const BenchOutEnv = "WEFT_BENCH_OUT"

// BenchPoint is one measured point of a scale figure: Value (in Unit) of
// the figure Series at Size (nodes, peers, claimers, members: what the
// series is measured against). Ref, when set, is the reference measured
// in the same run (RefValue, in Unit).
type BenchPoint struct {
	Series   string  `json:"series"`
	Size     float64 `json:"size"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Ref      string  `json:"ref,omitempty"`
	RefValue float64 `json:"refValue,omitempty"`
}

var benchOutMu sync.Mutex

// WriteBenchPoint appends p to the [BenchOutEnv] file, when set.
func WriteBenchPoint(p BenchPoint) error {
	path := os.Getenv(BenchOutEnv)
	if path == "" {
		return nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	benchOutMu.Lock()
	defer benchOutMu.Unlock()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("%s: %w", BenchOutEnv, err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", BenchOutEnv, err)
	}
	return f.Close()
}
