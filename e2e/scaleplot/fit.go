// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package scaleplot

import (
	"fmt"
	"math"
)

// Model is a cost model y = A + B·f(n), f(n) = n (linear) or n·log2(n)
// (n log n), fitted by least squares.
type Model struct {
	// Kind is "linear" or "n log n"; "" when there are fewer than two
	// distinct sizes (nothing to fit).
	Kind string
	A, B float64
	// RMS is the root mean square of the residuals, in the figure's unit.
	RMS float64
	// Exact is set when there are only two distinct sizes: the models
	// only draw a line through the two, and linear is kept as the
	// simpler one.
	Exact bool
}

func (m Model) f(n float64) float64 {
	if m.Kind == "n log n" {
		return n * math.Log2(n)
	}
	return n
}

// At returns the model's value at size n.
func (m Model) At(n float64) float64 { return m.A + m.B*m.f(n) }

// String describes the model with its coefficients.
func (m Model) String() string {
	switch m.Kind {
	case "":
		return "none (one size)"
	case "n log n":
		return fmt.Sprintf("%.4g + %.4g·n·log₂n", m.A, m.B)
	}
	return fmt.Sprintf("%.4g + %.4g·n", m.A, m.B)
}

// Fit fits both models to the points by least squares and returns the
// one with the smaller residual (linear on a tie, within 1%).
func Fit(ps []Point) Model {
	sizes := map[float64]bool{}
	for _, p := range ps {
		sizes[p.Size] = true
	}
	if len(sizes) < 2 {
		return Model{}
	}
	lin := fit(ps, Model{Kind: "linear"})
	nln := fit(ps, Model{Kind: "n log n"})
	if len(sizes) == 2 {
		lin.Exact = true
		return lin
	}
	if nln.RMS < lin.RMS*0.99 {
		return nln
	}
	return lin
}

// fit solves the 2×2 normal equations of y = A + B·f(n).
func fit(ps []Point, m Model) Model {
	var sx, sy, sxx, sxy float64
	n := float64(len(ps))
	for _, p := range ps {
		x := m.f(p.Size)
		sx += x
		sy += p.Value
		sxx += x * x
		sxy += x * p.Value
	}
	d := n*sxx - sx*sx
	m.B = (n*sxy - sx*sy) / d
	m.A = (sy - m.B*sx) / n
	var ss float64
	for _, p := range ps {
		r := p.Value - m.At(p.Size)
		ss += r * r
	}
	m.RMS = math.Sqrt(ss / n)
	return m
}
