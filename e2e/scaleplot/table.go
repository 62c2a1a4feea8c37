// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package scaleplot

import (
	"fmt"
	"strings"
)

// Markdown returns a table of the figures: each one's measured points
// (size: value, the median where a size was measured more than once, and
// the ratio to the reference where there is one), the
// reference's name, the fitted model and its value at upTo.
func Markdown(figs []Figure, upTo float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| figure | measured (size: value) | reference, same run | model (n: size) | at %s |\n", compact(upTo))
	b.WriteString("| --- | --- | --- | --- | --- |\n")
	for _, f := range figs {
		var pts []string
		ref := ""
		for _, p := range f.BySize() {
			s := fmt.Sprintf("%s: %s %s", compact(p.Size), num(p.Value), f.Unit)
			if p.Ref != "" && p.RefValue > 0 {
				s += fmt.Sprintf(" (%.2f×)", p.Value/p.RefValue)
				ref = p.Ref
			}
			if p.N > 1 {
				s += fmt.Sprintf(" [median of %d]", p.N)
			}
			pts = append(pts, s)
		}
		at := "n/a"
		if f.Model.Kind != "" {
			at = fmt.Sprintf("%s %s", num(f.Model.At(upTo)), f.Unit)
		}
		mod := f.Model.String()
		if f.Model.Exact {
			mod += " (two sizes: a line through them)"
		} else if f.Model.Kind != "" {
			mod += fmt.Sprintf(" (rms %s)", num(f.Model.RMS))
		}
		if ref == "" {
			ref = "–"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", f.Series, strings.Join(pts, "; "), ref, mod, at)
	}
	return b.String()
}

// num writes v with three significant digits, without exponent for
// everyday magnitudes.
func num(v float64) string {
	switch {
	case v >= 100 || v <= -100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10 || v <= -10:
		return fmt.Sprintf("%.1f", v)
	}
	return trimZeros(fmt.Sprintf("%.2f", v))
}
