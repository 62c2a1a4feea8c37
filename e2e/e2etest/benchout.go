// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2etest

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/weftnet/weft/e2e/scaleplot"
)

// BenchOutEnv names the file benchmarks append their points to, one JSON
// object a line (see [BenchPoint]); unset, nothing is written.
// e2e/cmd/weft-scaleplot reads it (docs/scale.md).
const BenchOutEnv = "WEFT_BENCH_OUT"

// BenchPoint is one measured point of a scale figure (see
// [scaleplot.Point]).
type BenchPoint = scaleplot.Point

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

// BenchScaleEnv, set non-empty (`make bench-scale` does), runs the scale
// benchmarks that take longer than a few minutes; `make bench` skips them.
const BenchScaleEnv = "WEFT_BENCH_SCALE"

// RequireBenchScale skips a long scale benchmark unless [BenchScaleEnv] is
// set, saying how to run it.
func RequireBenchScale(tb testing.TB) {
	tb.Helper()
	if os.Getenv(BenchScaleEnv) == "" {
		tb.Skipf("skipping %s: a long scale run; make bench-scale runs it (%s=1)", tb.Name(), BenchScaleEnv)
	}
}
