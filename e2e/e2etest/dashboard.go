// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2etest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Query is one PromQL expression of a Grafana dashboard, with the metric
// names it selects.
type Query struct {
	Panel   string
	Expr    string
	Metrics []string
}

// DashboardQueries reads a Grafana dashboard (JSON) and returns the
// queries of its panels (rows' nested panels too) and of its templating
// variables, each with the metric names it selects. A panel without a
// query, or a query that does not lex, is an error.
func DashboardQueries(path string) ([]Query, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	type panel struct {
		Title   string  `json:"title"`
		Type    string  `json:"type"`
		Panels  []panel `json:"panels"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	}
	var d struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []Query
	add := func(where, expr string) error {
		names, err := PromQLMetrics(expr)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", path, where, err)
		}
		if len(names) == 0 {
			return fmt.Errorf("%s: %s: query %q names no metric", path, where, expr)
		}
		out = append(out, Query{Panel: where, Expr: expr, Metrics: names})
		return nil
	}
	var walk func([]panel) error
	walk = func(ps []panel) error {
		for _, p := range ps {
			if p.Type == "row" {
				if err := walk(p.Panels); err != nil {
					return err
				}
				continue
			}
			if len(p.Targets) == 0 {
				return fmt.Errorf("%s: panel %q has no query", path, p.Title)
			}
			for _, t := range p.Targets {
				if err := add("panel "+p.Title, t.Expr); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(d.Panels); err != nil {
		return nil, err
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			return nil, fmt.Errorf("%s: variable %s: %w", path, v.Name, err)
		}
		// label_values(metric, label): the metric is what the variable
		// reads.
		expr, ok := strings.CutPrefix(q.Query, "label_values(")
		if !ok {
			return nil, fmt.Errorf("%s: variable %s: query %q is not label_values(metric, label)", path, v.Name, q.Query)
		}
		metric, _, _ := strings.Cut(expr, ",")
		if err := add("variable "+v.Name, metric); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// promqlWords are PromQL's keywords: never metric names. Those marked
// true take a parenthesised label list.
var promqlWords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"offset": false, "bool": false, "and": false, "or": false, "unless": false, "atan2": false,
	"inf": false, "nan": false,
}

// PromQLMetrics returns the metric names a PromQL expression selects, in
// order of appearance, without repeats: every identifier that is not a
// keyword, a function or aggregation (followed by "(", by or without), a label list
// (after by, without, on, ignoring, group_left or group_right), a label
// matcher ({...}), a range or offset duration, a number or a string.
// Unbalanced brackets or an unknown character are errors.
func PromQLMetrics(expr string) ([]string, error) {
	var names []string
	var stack []byte
	closing := map[byte]byte{'(': ')', '{': '}', '[': ']'}
	skipLabels := false // the next "(" opens a label list
	labelList := -1     // depth of the label list being read, -1 outside
	i := 0
	for i < len(expr) {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			i++
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			if j >= len(expr) {
				return nil, fmt.Errorf("unterminated string at %d in %q", i, expr)
			}
			i = j + 1
		case c == '(' || c == '{' || c == '[':
			if c == '(' && skipLabels {
				labelList = len(stack)
			}
			skipLabels = false
			stack = append(stack, closing[c])
			i++
		case c == ')' || c == '}' || c == ']':
			if len(stack) == 0 || stack[len(stack)-1] != c {
				return nil, fmt.Errorf("unbalanced %q at %d in %q", c, i, expr)
			}
			stack = stack[:len(stack)-1]
			if labelList == len(stack) {
				labelList = -1
			}
			i++
		case isDigit(c) || c == '.':
			// A number or a duration (5m, 1h30m, 0.99, 1e3).
			for i < len(expr) && (isIdent(expr[i]) || isDigit(expr[i]) || expr[i] == '.') {
				i++
			}
		case isIdent(c):
			j := i
			for j < len(expr) && (isIdent(expr[j]) || isDigit(expr[j])) {
				j++
			}
			word := expr[i:j]
			i = j
			inside := len(stack) > 0 && stack[len(stack)-1] != ')'
			if inside || labelList >= 0 {
				continue // a label name in {...}, or a label list
			}
			if takes, ok := promqlWords[strings.ToLower(word)]; ok {
				skipLabels = takes
				continue
			}
			k := i
			for k < len(expr) && (expr[k] == ' ' || expr[k] == '\t') {
				k++
			}
			if k < len(expr) && expr[k] == '(' {
				continue // a function or an aggregation
			}
			if next := nextWord(expr[k:]); next == "by" || next == "without" {
				continue // an aggregation: sum by (x) (...)
			}
			if !slices.Contains(names, word) {
				names = append(names, word)
			}
		case strings.IndexByte("+-*/%^=!~<>,", c) >= 0:
			i++
		default:
			return nil, fmt.Errorf("unexpected %q at %d in %q", c, i, expr)
		}
	}
	if len(stack) > 0 {
		return nil, fmt.Errorf("unclosed %q in %q", stack[len(stack)-1], expr)
	}
	return names, nil
}

// nextWord returns the identifier s starts with, lower-cased.
func nextWord(s string) string {
	j := 0
	for j < len(s) && (isIdent(s[j]) || j > 0 && isDigit(s[j])) {
		j++
	}
	return strings.ToLower(s[:j])
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isIdent(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// ParseMetrics parses a /metrics page (Prometheus text format).
func ParseMetrics(page []byte) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(bytes.NewReader(page))
}

// MissingMetrics returns a problem for each metric a query names that the
// families do not export with at least one series. A histogram's
// _bucket, _sum and _count, and a summary's _sum and _count, are its
// family's.
func MissingMetrics(qs []Query, fams map[string]*dto.MetricFamily) []string {
	var out []string
	for _, q := range qs {
		for _, name := range q.Metrics {
			f := family(fams, name)
			switch {
			case f == nil:
				out = append(out, fmt.Sprintf("%s: metric %s is not exported (query %q)", q.Panel, name, q.Expr))
			case len(f.Metric) == 0:
				out = append(out, fmt.Sprintf("%s: metric %s has no series: its panel is empty until an event (query %q)", q.Panel, name, q.Expr))
			}
		}
	}
	return out
}

func family(fams map[string]*dto.MetricFamily, name string) *dto.MetricFamily {
	if f, ok := fams[name]; ok {
		return f
	}
	for suffix, types := range map[string][]dto.MetricType{
		"_bucket": {dto.MetricType_HISTOGRAM},
		"_sum":    {dto.MetricType_HISTOGRAM, dto.MetricType_SUMMARY},
		"_count":  {dto.MetricType_HISTOGRAM, dto.MetricType_SUMMARY},
	} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if f, ok := fams[base]; ok && slices.Contains(types, f.GetType()) {
				return f
			}
		}
	}
	return nil
}
