// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package scaleplot

import (
	"bytes"
	"image/color"
	"image/png"
	"math"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	ps, err := Read(strings.NewReader(`{"series":"a","size":100,"value":2,"unit":"ms"}

{"series":"a","size":1000,"value":20,"unit":"ms","ref":"r","refValue":10}
`))
	if err != nil || len(ps) != 2 || ps[1].RefValue != 10 {
		t.Fatalf("%v %v", ps, err)
	}
	for _, bad := range []string{
		`{"series":"a","size":0,"value":2,"unit":"ms"}`,
		`{"series":"a","size":10,"value":-1,"unit":"ms"}`,
		`{"series":"","size":10,"value":1,"unit":"ms"}`,
		`{"series":"a","size":10,"value":1}`,
		`{"series":"a","size":10,"value":1,"unit":"ms","extra":1}`,
		`not json`,
	} {
		if _, err := Read(strings.NewReader("\n" + bad)); err == nil || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%s: error %v, want one naming line 2", bad, err)
		}
	}
	if _, err := Figures([]Point{{Series: "a", Size: 1, Unit: "ms"}, {Series: "a", Size: 2, Unit: "MiB"}}); err == nil {
		t.Error("a series in two units: no error")
	}
}

func TestFit(t *testing.T) {
	sizes := []float64{100, 500, 1000, 2000, 5000}
	gen := func(f func(n float64) float64) []Point {
		var ps []Point
		for _, n := range sizes {
			ps = append(ps, Point{Series: "s", Unit: "ms", Size: n, Value: f(n)})
		}
		return ps
	}
	lin := Fit(gen(func(n float64) float64 { return 3 + 0.5*n }))
	if lin.Kind != "linear" || math.Abs(lin.A-3) > 1e-6 || math.Abs(lin.B-0.5) > 1e-9 || math.Abs(lin.At(10000)-5003) > 1e-3 {
		t.Errorf("linear data: %+v", lin)
	}
	nln := Fit(gen(func(n float64) float64 { return 7 + 0.01*n*math.Log2(n) }))
	if nln.Kind != "n log n" || math.Abs(nln.B-0.01) > 1e-9 {
		t.Errorf("n log n data: %+v", nln)
	}
	if m := Fit(gen(func(float64) float64 { return 1 })[:1]); m.Kind != "" {
		t.Errorf("one size: %+v", m)
	}
	if m := Fit(gen(func(n float64) float64 { return n })[:2]); m.Kind != "linear" || !m.Exact {
		t.Errorf("two sizes: %+v", m)
	}
}

func TestChartAndTable(t *testing.T) {
	figs, err := Figures([]Point{
		{Series: "watch", Unit: "ms", Size: 500, Value: 100, Ref: "etcd", RefValue: 3},
		{Series: "watch", Unit: "ms", Size: 500, Value: 140, Ref: "etcd", RefValue: 5},
		{Series: "watch", Unit: "ms", Size: 5000, Value: 1300, Ref: "etcd", RefValue: 5},
		{Series: "rss", Unit: "MiB", Size: 100, Value: 40},
		{Series: "rss", Unit: "MiB", Size: 1000, Value: 50},
		{Series: "rss", Unit: "MiB", Size: 5000, Value: 90},
	})
	if err != nil {
		t.Fatal(err)
	}
	img := Chart(figs, 10000)
	if b := img.Bounds(); b.Dx() != columns*panelW || b.Dy() != panelH {
		t.Errorf("chart %v: want one row of %d panels", b, columns)
	}
	inked := map[color.RGBA]int{}
	for y := 0; y < img.Bounds().Dy(); y++ {
		for x := 0; x < img.Bounds().Dx(); x++ {
			inked[img.RGBAAt(x, y)]++
		}
	}
	for name, c := range map[string]color.RGBA{"measured": measured, "model": model, "reference": refInk, "text": ink} {
		if inked[c] < 20 {
			t.Errorf("%s colour: %d pixels", name, inked[c])
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	md := Markdown(figs, 10000)
	for _, want := range []string{
		"| watch | 500: 120 ms (30.00×) [median of 2]; 5K: 1300 ms (260.00×) | etcd |",
		"| rss | 100: 40.0 MiB; 1K: 50.0 MiB; 5K: 90.0 MiB | – |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("table lacks %q:\n%s", want, md)
		}
	}
}

func TestGlyphs(t *testing.T) {
	for r, g := range glyphs {
		for _, row := range g {
			if len(row) != 5 || strings.Trim(row, "#.") != "" {
				t.Errorf("glyph %q: row %q", r, row)
			}
		}
	}
	for _, r := range "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:-+/()%=*<>_'?" {
		if _, ok := glyphs[r]; !ok {
			t.Errorf("no glyph for %q", r)
		}
	}
}
