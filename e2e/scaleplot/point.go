// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package scaleplot turns the scale benchmarks' points into what
// docs/scale.md shows: a least-squares cost model per figure (linear or
// n log n in the size), extrapolated to 10 000 nodes, a markdown table,
// and a log-log line chart drawn as a PNG with the standard library alone
// (its own 5×7 bitmap font). The benchmarks write the points as JSON lines
// to $WEFT_BENCH_OUT; e2e/cmd/weft-scaleplot reads them.
package scaleplot

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// Point is one measured point of a figure: Value (in Unit) of the figure
// Series at Size (nodes, peers, claimers, members: what the series is
// measured against). Ref, when set, names the reference measured in the
// same run, and RefValue is its value in Unit.
type Point struct {
	Series   string  `json:"series"`
	Size     float64 `json:"size"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Ref      string  `json:"ref,omitempty"`
	RefValue float64 `json:"refValue,omitempty"`
}

// Read reads JSON lines of [Point]s; blank lines are skipped. A line that
// does not decode, or a point without a series, a unit, a positive size
// or a finite non-negative value, is an error naming its line.
func Read(r io.Reader) ([]Point, error) {
	var out []Point
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for line := 1; sc.Scan(); line++ {
		b := strings.TrimSpace(sc.Text())
		if b == "" {
			continue
		}
		var p Point
		dec := json.NewDecoder(strings.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		switch {
		case p.Series == "" || p.Unit == "":
			return nil, fmt.Errorf("line %d: a point needs a series and a unit", line)
		case !(p.Size > 0) || math.IsInf(p.Size, 0):
			return nil, fmt.Errorf("line %d: size %v: want a positive number", line, p.Size)
		case !(p.Value >= 0) || math.IsInf(p.Value, 0):
			return nil, fmt.Errorf("line %d: value %v: want a finite number >= 0", line, p.Value)
		}
		out = append(out, p)
	}
	return out, sc.Err()
}

// Figure is one series: its points by size (several points at one size,
// from several runs, are kept; the model fits all of them).
type Figure struct {
	Series string
	Unit   string
	Points []Point
	Model  Model
}

// Figures groups points by series, in order of first appearance, each
// sorted by size, and fits each one's model. A series measured in two
// units is an error.
func Figures(ps []Point) ([]Figure, error) {
	var out []Figure
	idx := map[string]int{}
	for _, p := range ps {
		i, ok := idx[p.Series]
		if !ok {
			i = len(out)
			idx[p.Series] = i
			out = append(out, Figure{Series: p.Series, Unit: p.Unit})
		}
		if out[i].Unit != p.Unit {
			return nil, fmt.Errorf("series %q: in %s and in %s", p.Series, out[i].Unit, p.Unit)
		}
		out[i].Points = append(out[i].Points, p)
	}
	for i := range out {
		slices.SortStableFunc(out[i].Points, func(a, b Point) int { return cmpFloat(a.Size, b.Size) })
		out[i].Model = Fit(out[i].Points)
	}
	return out, nil
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// BySize returns one point per size: the median of the values (and of
// the reference values) measured at that size, with N the number of
// points it stands for.
func (f Figure) BySize() []Sized {
	var out []Sized
	for i := 0; i < len(f.Points); {
		j := i
		var vs, rs []float64
		for ; j < len(f.Points) && f.Points[j].Size == f.Points[i].Size; j++ {
			vs = append(vs, f.Points[j].Value)
			if f.Points[j].RefValue > 0 {
				rs = append(rs, f.Points[j].RefValue)
			}
		}
		p := f.Points[i]
		p.Value, p.RefValue = median(vs), median(rs)
		out = append(out, Sized{Point: p, N: j - i})
		i = j
	}
	return out
}

// Sized is the median point at one size, of N measured points.
type Sized struct {
	Point
	N int
}

func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
