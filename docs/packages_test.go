// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// tablePackages returns the package paths named in backquotes in the
// first column of the table under "## Where the code is" in text.
func tablePackages(text string) []string {
	_, section, ok := strings.Cut(text, "## Where the code is")
	if !ok {
		return nil
	}
	if i := strings.Index(section, "\n## "); i >= 0 {
		section = section[:i]
	}
	name := regexp.MustCompile("`([^`]+)`")
	var out []string
	for line := range strings.SplitSeq(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 {
			continue
		}
		for _, m := range name.FindAllStringSubmatch(cells[1], -1) {
			out = append(out, m[1])
		}
	}
	return out
}

// unlistedPackages returns the directories of root holding a Go package
// that the architecture table does not name.
func unlistedPackages(t *testing.T, root, text string) []string {
	t.Helper()
	listed := tablePackages(text)
	var missing []string
	for dir, files := range goPackages(t, root) {
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			t.Fatal(err)
		}
		if rel == "." || !slices.ContainsFunc(files, func(f string) bool { return strings.HasSuffix(f, ".go") }) {
			continue
		}
		if !slices.Contains(listed, filepath.ToSlash(rel)) {
			missing = append(missing, filepath.ToSlash(rel))
		}
	}
	slices.Sort(missing)
	return missing
}

// TestArchitecturePackageTable checks that docs/architecture.md's package
// table names every package of the tree, the test kits included.
func TestArchitecturePackageTable(t *testing.T) {
	text, err := os.ReadFile("architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	if m := unlistedPackages(t, repoRoot, string(text)); len(m) > 0 {
		t.Errorf("docs/architecture.md's package table (\"Where the code is\") does not name: %s", strings.Join(m, ", "))
	}
}

// TestArchitecturePackageTableCanFail proves the check reports a package
// the table leaves out, and accepts one it names in a shared row.
func TestArchitecturePackageTableCanFail(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"a", "b/c", "d"} {
		if err := os.MkdirAll(filepath.Join(dir, p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p, "x.go"), []byte("package x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text := "## Where the code is\n\n| package | owns |\n| --- | --- |\n| `a`, `b/c` | things |\n\n## Next\n| `d` | not the table |\n"
	got := unlistedPackages(t, dir, text)
	if !slices.Equal(got, []string{"d"}) {
		t.Fatalf("unlistedPackages = %v, want [d]", got)
	}
}
