// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package docs

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// programUse is a program a Go source runs, found by programsNamed.
type programUse struct {
	program string
	pkg     string // the Debian package RequireTool names ("" elsewhere)
	where   string // file:line
}

var (
	// netnstest.RequireTool(t, "bin", "pkg")
	requireTool = regexp.MustCompile(`RequireTool\(\w+, "([^"]+)", "([^"]+)"\)`)
	// exec.LookPath("bin")
	lookPath = regexp.MustCompile(`exec\.LookPath\("([^"]+)"\)`)
	// exec.Command("bin", ...), exec.CommandContext(ctx, "bin", ...)
	execCommand = regexp.MustCompile(`exec\.Command\("([^"]+)"|exec\.CommandContext\(\w+, "([^"]+)"`)
	// the e2e harness's NS.Command(ctx, "bin", ...) and NS.Run(ctx, "bin", ...)
	nsCommand = regexp.MustCompile(`\.(?:Command|Run)\(ctx, "([^"]+)"`)
	// "ip", "netns", "exec", <namespace>, "bin"
	netnsExec = regexp.MustCompile(`"ip", "netns", "exec", [^,"]+, "([^"]+)"`)
)

// programsNamed returns the programs named in one Go source.
func programsNamed(name, src string) []programUse {
	var out []programUse
	for i, line := range strings.Split(src, "\n") {
		where := fmt.Sprintf("%s:%d", name, i+1)
		for _, m := range requireTool.FindAllStringSubmatch(line, -1) {
			out = append(out, programUse{m[1], m[2], where})
		}
		for _, re := range []*regexp.Regexp{lookPath, execCommand, nsCommand, netnsExec} {
			for _, m := range re.FindAllStringSubmatch(line, -1) {
				out = append(out, programUse{program: strings.Join(m[1:], ""), where: where})
			}
		}
	}
	return out
}

// programRow is a row of the Programs table of testing.md.
type programRow struct {
	programs []string
	pkg      string // "" when the cell names no package in backquotes
	provided string
}

var backquoted = regexp.MustCompile("`([^`]+)`")

// programTable parses the table under "## Programs" in testing.md.
func programTable(doc string) ([]programRow, error) {
	_, sec, ok := strings.Cut(doc, "\n## Programs\n")
	if !ok {
		return nil, fmt.Errorf(`no "## Programs" section`)
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	var rows []programRow
	for _, line := range strings.Split(sec, "\n") {
		if !strings.HasPrefix(line, "|") || strings.HasPrefix(line, "| program ") || strings.HasPrefix(line, "| ---") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if len(cells) != 4 {
			return nil, fmt.Errorf("row with %d cells, want 4: %s", len(cells), line)
		}
		var r programRow
		for _, m := range backquoted.FindAllStringSubmatch(cells[0], -1) {
			r.programs = append(r.programs, m[1])
		}
		if len(r.programs) == 0 {
			return nil, fmt.Errorf("row names no program in backquotes: %s", line)
		}
		if m := backquoted.FindStringSubmatch(cells[1]); m != nil {
			r.pkg = m[1]
		}
		r.provided = cells[3]
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("the Programs table has no rows")
	}
	return rows, nil
}

var (
	// .ci/run's tools=( ... ) list of program:package entries
	ciTools = regexp.MustCompile(`(?s)\ntools=\((.*?)\n\)`)
	// .ci/bench-deps: `command -v bin ... need+=(pkg)` or `[ -x path ] || need+=(pkg)`
	benchNeed = regexp.MustCompile(`(?:command -v (\S+)|\[ -x (\S+) \]).*need\+=\(([^)]+)\)`)
)

// toolsProblems checks the programs the sources name against the table,
// and the table against .ci/run (ciRun) and .ci/bench-deps (benchDeps).
func toolsProblems(uses []programUse, rows []programRow, ciRun, benchDeps string) []string {
	var problems []string
	row := map[string]programRow{}
	for _, r := range rows {
		for _, p := range r.programs {
			row[p] = r
		}
	}
	for _, u := range uses {
		r, ok := row[u.program]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s runs %s, which docs/testing.md does not list", u.where, u.program))
		case u.pkg != "" && u.pkg != r.pkg:
			problems = append(problems, fmt.Sprintf("%s installs %s from Debian's %s, docs/testing.md says %q", u.where, u.program, u.pkg, r.pkg))
		}
	}

	m := ciTools.FindStringSubmatch(ciRun)
	if m == nil {
		return append(problems, ".ci/run has no tools=( ... ) list")
	}
	ci := map[string]string{}
	for _, f := range strings.Fields(m[1]) {
		prog, pkg, ok := strings.Cut(f, ":")
		if !ok {
			problems = append(problems, fmt.Sprintf(".ci/run: tools entry %q is not program:package", f))
			continue
		}
		ci[prog] = pkg
		if r, ok := row[prog]; !ok || !strings.Contains(r.provided, "`.ci/run`") {
			problems = append(problems, fmt.Sprintf(".ci/run installs %s, which docs/testing.md does not list as provided by .ci/run", prog))
		}
	}
	bench := map[string]string{}
	for _, m := range benchNeed.FindAllStringSubmatch(benchDeps, -1) {
		bench[m[1]+m[2]] = m[3]
	}
	for _, r := range rows {
		for _, p := range r.programs {
			if strings.Contains(r.provided, "`.ci/run`") && ci[p] != r.pkg {
				problems = append(problems, fmt.Sprintf("docs/testing.md: .ci/run provides %s, but its tools list has %q, want %s:%s", p, p+":"+ci[p], p, r.pkg))
			}
		}
		if strings.Contains(r.provided, "`.ci/bench-deps`") {
			found := false
			for _, p := range r.programs {
				found = found || bench[p] == r.pkg
			}
			if !found {
				problems = append(problems, fmt.Sprintf("docs/testing.md: .ci/bench-deps provides %v, but it checks none of them for package %s", r.programs, r.pkg))
			}
		}
	}
	slices.Sort(problems)
	return problems
}

// goSources returns the Go files of the module under root (testdata
// included: test helpers live there too), name → text.
func goSources(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || path == filepath.Join(root, "docs", "testing_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		out[rel] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func readTestingInputs(t *testing.T) (rows []programRow, ciRun, benchDeps string) {
	t.Helper()
	docs := readDocs(t, []string{"testing.md", "../.ci/run", "../.ci/bench-deps"})
	rows, err := programTable(docs["testing.md"])
	if err != nil {
		t.Fatalf("testing.md: %v", err)
	}
	return rows, docs["../.ci/run"], docs["../.ci/bench-deps"]
}

// TestTestingTools checks that docs/testing.md lists every program a test
// or benchmark runs, with the package RequireTool installs it from, and
// that .ci/run and .ci/bench-deps install what the page says they do.
func TestTestingTools(t *testing.T) {
	rows, ciRun, benchDeps := readTestingInputs(t)
	var uses []programUse
	for name, src := range goSources(t, "..") {
		uses = append(uses, programsNamed(name, src)...)
	}
	if len(uses) < 20 {
		t.Fatalf("found only %d program uses in the sources: the patterns no longer match the code", len(uses))
	}
	if p := toolsProblems(uses, rows, ciRun, benchDeps); len(p) > 0 {
		t.Errorf("docs/testing.md, .ci/run and the tests disagree:\n%s", strings.Join(p, "\n"))
	}
}

// TestTestingToolsCanFail feeds the check sources and lists that are wrong
// in each way it looks for.
func TestTestingToolsCanFail(t *testing.T) {
	rows, ciRun, benchDeps := readTestingInputs(t)
	src := `package x
func f(t *testing.T, ctx context.Context, n NS) {
	exec.LookPath("tcpdump")
	netnstest.RequireTool(t, "nft", "nft-tools")
	exec.Command("etcdctl", "get", "/")
	exec.CommandContext(ctx, "conntrack", "-L")
	n.Run(ctx, "ethtool", "-k", "eth0")
	exec.Command("ip", "netns", "exec", n.Name, "arping", "198.18.0.1")
	exec.Command(filepath.Join(dir, "weft"))
	exec.Command("ip", "link")
}
`
	uses := programsNamed("x_test.go", src)
	var got []string
	for _, u := range uses {
		got = append(got, u.program)
	}
	want := []string{"nft", "tcpdump", "etcdctl", "conntrack", "ethtool", "ip", "arping", "ip"}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("programsNamed found %v, want %v", got, want)
	}
	for _, c := range []struct {
		name              string
		uses              []programUse
		ciRun, benchDeps  string
		wantSubstrings    []string
		wantProblemsCount int
	}{
		{"sources", uses, ciRun, benchDeps, []string{
			"x_test.go:3 runs tcpdump", "x_test.go:4 installs nft from Debian's nft-tools",
			"x_test.go:5 runs etcdctl", "x_test.go:6 runs conntrack", "x_test.go:7 runs ethtool", "x_test.go:8 runs arping",
		}, 6},
		{".ci/run lacks a program", nil, strings.Replace(ciRun, "\n\tnft:nftables", "", 1), benchDeps, []string{
			`.ci/run provides nft, but its tools list has "nft:"`,
		}, 1},
		{".ci/run has a program the page does not list", nil, strings.Replace(ciRun, "\n\tip:iproute2", "\n\tip:iproute2\n\ttcpdump:tcpdump", 1), benchDeps, []string{
			".ci/run installs tcpdump",
		}, 1},
		{"no tools list", nil, "apt-get install nftables", benchDeps, []string{"no tools=( ... ) list"}, 1},
		{"bench-deps lacks a reference", nil, ciRun, strings.Replace(benchDeps, "need+=(iperf3)", "true", 1), []string{
			".ci/bench-deps provides [iperf3], but it checks none",
		}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := toolsProblems(c.uses, rows, c.ciRun, c.benchDeps)
			if len(p) != c.wantProblemsCount {
				t.Errorf("%d problems, want %d:\n%s", len(p), c.wantProblemsCount, strings.Join(p, "\n"))
			}
			all := strings.Join(p, "\n")
			for _, w := range c.wantSubstrings {
				if !strings.Contains(all, w) {
					t.Errorf("problems lack %q:\n%s", w, all)
				}
			}
		})
	}
	if _, err := programTable("# t\n## Programs\n\n| program | a | b | c |\n| --- | --- | --- | --- |\n| ip | x | y | z |\n"); err == nil {
		t.Error("a row without a program in backquotes was accepted")
	}
	if _, err := programTable("# t\n"); err == nil {
		t.Error("a page without a Programs section was accepted")
	}
}
