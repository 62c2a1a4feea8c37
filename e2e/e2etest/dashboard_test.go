// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2etest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestPromQLMetrics(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`weft_peers`, []string{"weft_peers"}},
		{`weft_ready{instance=~"$instance"}`, []string{"weft_ready"}},
		{`sum by (state) (weft_members{state=~"suspect|dead"})`, []string{"weft_members"}},
		{`sum(weft_members) without (state, instance)`, []string{"weft_members"}},
		{`histogram_quantile(0.99, sum by (le) (rate(weft_reconcile_duration_seconds_bucket{instance=~".*"}[5m])))`,
			[]string{"weft_reconcile_duration_seconds_bucket"}},
		{`rate(a_total[1h30m] offset 5m) / on (instance) group_left (node) b_info > bool 0.5e1`, []string{"a_total", "b_info"}},
		{`a{x="}{[("} and b or c unless a`, []string{"a", "b", "c"}},
	} {
		got, err := PromQLMetrics(c.expr)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.expr, got, c.want)
		}
	}
	for _, bad := range []string{`sum(weft_peers`, `weft_peers}`, `weft_peers{a="b}`, `weft_peers ? 1`} {
		if got, err := PromQLMetrics(bad); err == nil {
			t.Errorf("%s: no error (got %v)", bad, got)
		}
	}
}

// TestMissingMetrics checks the check against a page it parses: it must
// name a metric that is not there, a labelled metric with no series, and
// accept a histogram's buckets.
func TestMissingMetrics(t *testing.T) {
	page := `# HELP h a histogram
# TYPE h histogram
h_bucket{le="1"} 0
h_bucket{le="+Inf"} 0
h_sum 0
h_count 0
# HELP c a counter
# TYPE c counter
c 0
# HELP v a labelled counter with no series
# TYPE v counter
`
	fams, err := ParseMetrics([]byte(page))
	if err != nil {
		t.Fatal(err)
	}
	qs := []Query{{Panel: "p", Expr: "x", Metrics: []string{"h_bucket", "h_count", "c", "v", "nope", "c_bucket"}}}
	got := MissingMetrics(qs, fams)
	if len(got) != 3 || !strings.Contains(got[0], "metric v ") || !strings.Contains(got[1], "metric nope ") || !strings.Contains(got[2], "metric c_bucket ") {
		t.Errorf("problems %q: want v (no series), nope and c_bucket (not exported)", got)
	}
}

// TestDashboardQueries reads weft's dashboard: every panel has a query
// that lexes and names a metric; a panel without a query is refused.
func TestDashboardQueries(t *testing.T) {
	qs, err := DashboardQueries(filepath.Join("..", "..", "etc", "grafana", "weft.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) < 15 {
		t.Errorf("%d queries: the dashboard lost panels", len(qs))
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"panels":[{"type":"row","panels":[{"title":"empty","type":"stat"}]}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := DashboardQueries(bad); err == nil || !strings.Contains(err.Error(), `panel "empty" has no query`) {
		t.Errorf("a panel without a query: %v", err)
	}
}
