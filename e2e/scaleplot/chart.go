// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package scaleplot

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"math"
	"strings"
)

// The chart's geometry: panels of panelW×panelH in columns, each a
// log-log plot inside its margins.
const (
	panelW, panelH = 540, 330
	columns        = 2
	marginL        = 56
	marginR        = 18
	marginT        = 34
	marginB        = 44
)

var (
	white    = color.RGBA{255, 255, 255, 255}
	ink      = color.RGBA{30, 30, 30, 255}
	grid     = color.RGBA{222, 222, 222, 255}
	measured = color.RGBA{25, 90, 200, 255}
	model    = color.RGBA{210, 60, 40, 255}
	refInk   = color.RGBA{120, 120, 120, 255}
)

// Chart draws one log-log panel per figure: the measured points (blue,
// the medians at each size joined by a line), the reference measured in
// the same run where there is one (grey), and the fitted model (red) from
// the smallest size to upTo.
func Chart(figs []Figure, upTo float64) *image.RGBA {
	rows := (len(figs) + columns - 1) / columns
	img := image.NewRGBA(image.Rect(0, 0, columns*panelW, max(rows, 1)*panelH))
	draw.Draw(img, img.Bounds(), image.NewUniform(white), image.Point{}, draw.Src)
	for i, f := range figs {
		panel(img, image.Pt(i%columns*panelW, i/columns*panelH), f, upTo)
	}
	return img
}

// axis maps values to pixels on a log10 scale between two decades.
type axis struct {
	lo, hi   float64 // decades (log10)
	from, to int     // pixels
}

func (a axis) px(v float64) int {
	t := (math.Log10(v) - a.lo) / (a.hi - a.lo)
	return a.from + int(math.Round(t*float64(a.to-a.from)))
}

func decades(lo, hi float64) (float64, float64) {
	l, h := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if h <= l {
		h = l + 1
	}
	return l, h
}

func panel(img *image.RGBA, o image.Point, f Figure, upTo float64) {
	minN, maxN := math.Inf(1), upTo
	minV, maxV := math.Inf(1), 0.0
	see := func(v float64) {
		if v > 0 {
			minV, maxV = math.Min(minV, v), math.Max(maxV, v)
		}
	}
	for _, p := range f.Points {
		minN, maxN = math.Min(minN, p.Size), math.Max(maxN, p.Size)
		see(p.Value)
		see(p.RefValue)
	}
	curve := modelCurve(f.Model, minN, maxN)
	for _, c := range curve {
		see(c[1])
	}
	if maxV == 0 {
		minV, maxV = 1, 10
	}
	xl, xh := decades(minN, maxN)
	yl, yh := decades(minV, maxV)
	x := axis{xl, xh, o.X + marginL, o.X + panelW - marginR}
	y := axis{yl, yh, o.Y + panelH - marginB, o.Y + marginT}

	for d := xl; d <= xh; d++ {
		px := x.px(math.Pow(10, d))
		line(img, px, y.to, px, y.from, grid, 1)
		s := compact(math.Pow(10, d))
		drawText(img, px-textWidth(s)/2, y.from+6, s, ink)
	}
	for d := yl; d <= yh; d++ {
		py := y.px(math.Pow(10, d))
		line(img, x.from, py, x.to, py, grid, 1)
		s := compact(math.Pow(10, d))
		drawText(img, x.from-6-textWidth(s), py-3, s, ink)
	}
	line(img, x.from, y.from, x.to, y.from, ink, 1)
	line(img, x.from, y.from, x.from, y.to, ink, 1)

	title := clip(f.Series+" ("+f.Unit+")", panelW-20)
	drawText(img, o.X+10, o.Y+10, title, ink)
	foot := "blue: measured, grey: reference, red: " + asciiModel(f.Model)
	if f.Model.Kind != "" {
		foot += fmt.Sprintf("; at %s: %s %s", compact(upTo), compact(f.Model.At(upTo)), f.Unit)
	}
	drawText(img, o.X+10, o.Y+panelH-18, clip(foot, panelW-20), ink)

	for i := 1; i < len(curve); i++ {
		a, b := curve[i-1], curve[i]
		if a[1] > 0 && b[1] > 0 {
			line(img, x.px(a[0]), y.px(a[1]), x.px(b[0]), y.px(b[1]), model, 2)
		}
	}
	// Every point is marked; the lines join the medians at each size.
	for _, p := range f.Points {
		if p.RefValue > 0 {
			square(img, image.Pt(x.px(p.Size), y.px(p.RefValue)), 2, refInk)
		}
		if p.Value > 0 {
			square(img, image.Pt(x.px(p.Size), y.px(p.Value)), 3, measured)
		}
	}
	med := f.BySize()
	for i := 1; i < len(med); i++ {
		a, b := med[i-1], med[i]
		if a.RefValue > 0 && b.RefValue > 0 {
			line(img, x.px(a.Size), y.px(a.RefValue), x.px(b.Size), y.px(b.RefValue), refInk, 1)
		}
		if a.Value > 0 && b.Value > 0 {
			line(img, x.px(a.Size), y.px(a.Value), x.px(b.Size), y.px(b.Value), measured, 2)
		}
	}
}

// modelCurve samples the model from lo to hi, evenly in log space.
func modelCurve(m Model, lo, hi float64) [][2]float64 {
	if m.Kind == "" || !(lo > 0) {
		return nil
	}
	const steps = 80
	out := make([][2]float64, 0, steps+1)
	for i := 0; i <= steps; i++ {
		n := lo * math.Pow(hi/lo, float64(i)/steps)
		out = append(out, [2]float64{n, m.At(n)})
	}
	return out
}

// line draws from (x0, y0) to (x1, y1), width pixels wide.
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.Color, width int) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		for w := range width {
			img.Set(x0, y0+w, c)
			img.Set(x0+w, y0, c)
		}
		if x0 == x1 && y0 == y1 {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			x0 += sx
		} else {
			e += dx
			y0 += sy
		}
	}
}

func square(img *image.RGBA, p image.Point, r int, c color.Color) {
	draw.Draw(img, image.Rect(p.X-r, p.Y-r, p.X+r+1, p.Y+r+1), image.NewUniform(c), image.Point{}, draw.Src)
}

func abs(v int) int { return max(v, -v) }

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}

// compact writes v short: 10K, 1.5M, 250, 0.5.
func compact(v float64) string {
	for _, u := range []struct {
		div float64
		suf string
	}{{1e9, "G"}, {1e6, "M"}, {1e3, "K"}} {
		if math.Abs(v) >= u.div {
			return trimZeros(fmt.Sprintf("%.1f", v/u.div)) + u.suf
		}
	}
	if math.Abs(v) >= 10 || v == 0 {
		return fmt.Sprintf("%.0f", v)
	}
	return trimZeros(fmt.Sprintf("%.2g", v))
}

func trimZeros(s string) string {
	if strings.Contains(s, ".") && !strings.ContainsAny(s, "e") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// asciiModel is the model's formula in the font's characters.
func asciiModel(m Model) string {
	switch m.Kind {
	case "":
		return "none (one size)"
	case "n log n":
		return fmt.Sprintf("%s + %s*n*log2(n)", compact(m.A), trimZeros(fmt.Sprintf("%.3g", m.B)))
	}
	return fmt.Sprintf("%s + %s*n", compact(m.A), trimZeros(fmt.Sprintf("%.3g", m.B)))
}

// clip shortens s to at most w pixels.
func clip(s string, w int) string {
	r := []rune(s)
	if n := w / glyphW; len(r) > n {
		return string(r[:n-3]) + "..."
	}
	return s
}
