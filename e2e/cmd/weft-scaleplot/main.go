// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Command weft-scaleplot reads the scale benchmarks' points (JSON lines,
// as `make bench-scale` writes them to $WEFT_BENCH_OUT), fits a cost model
// to each figure and writes a log-log chart (PNG) and a markdown table,
// extrapolated to -to nodes (docs/scale.md).
package main

import (
	"flag"
	"fmt"
	"image/png"
	"os"

	"github.com/weftnet/weft/e2e/scaleplot"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "weft-scaleplot:", err)
		os.Exit(1)
	}
}

func run() error {
	png_ := flag.String("png", "scale.png", "the chart to write")
	md := flag.String("md", "", "the markdown table to write (empty: standard output)")
	to := flag.Float64("to", 10000, "the size the models are extrapolated to")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: weft-scaleplot [-png FILE] [-md FILE] [-to N] POINTS.jsonl...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		return fmt.Errorf("no points file given")
	}
	var pts []scaleplot.Point
	for _, name := range flag.Args() {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		ps, err := scaleplot.Read(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		pts = append(pts, ps...)
	}
	figs, err := scaleplot.Figures(pts)
	if err != nil {
		return err
	}
	out, err := os.Create(*png_)
	if err != nil {
		return err
	}
	if err := png.Encode(out, scaleplot.Chart(figs, *to)); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	table := scaleplot.Markdown(figs, *to)
	if *md == "" {
		_, err = fmt.Print(table)
		return err
	}
	return os.WriteFile(*md, []byte(table), 0o644)
}
