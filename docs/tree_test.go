// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package docs

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// repoRoot is the module root, one level above this package.
const repoRoot = ".."

// goPackages returns the Go source files of the tree grouped by directory,
// skipping hidden directories and testdata.
func goPackages(t *testing.T, root string) map[string][]string {
	t.Helper()
	pkgs := map[string][]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(name, ".go") {
			pkgs[filepath.Dir(path)] = append(pkgs[filepath.Dir(path)], path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

// missingPackageDocs returns the directories whose non-test Go files carry
// no package doc comment.
func missingPackageDocs(t *testing.T, root string) []string {
	t.Helper()
	var missing []string
	for dir, files := range goPackages(t, root) {
		hasDoc, hasSource := false, false
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			hasSource = true
			af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatalf("parse %s: %v", f, err)
			}
			if af.Doc != nil && strings.TrimSpace(af.Doc.Text()) != "" {
				hasDoc = true
			}
		}
		if hasSource && !hasDoc {
			missing = append(missing, dir)
		}
	}
	sort.Strings(missing)
	return missing
}

func TestPackageDocs(t *testing.T) {
	if m := missingPackageDocs(t, repoRoot); len(m) > 0 {
		t.Errorf("packages without a package doc comment: %s", strings.Join(m, ", "))
	}
}

// TestPackageDocsCheckCanFail proves the check above reports a package
// without a doc.
func TestPackageDocsCheckCanFail(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "nodoc"), 0o755)
	os.WriteFile(filepath.Join(dir, "nodoc", "a.go"), []byte("package nodoc\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "withdoc"), 0o755)
	os.WriteFile(filepath.Join(dir, "withdoc", "a.go"), []byte("// Package withdoc does things.\npackage withdoc\n"), 0o644)
	got := missingPackageDocs(t, dir)
	if len(got) != 1 || filepath.Base(got[0]) != "nodoc" {
		t.Fatalf("missingPackageDocs = %v, want only nodoc", got)
	}
}

var goodFileName = regexp.MustCompile(`^[a-z0-9_]+\.go$`)

func badFileNames(t *testing.T, root string) []string {
	var bad []string
	for _, files := range goPackages(t, root) {
		for _, f := range files {
			if !goodFileName.MatchString(filepath.Base(f)) {
				bad = append(bad, f)
			}
		}
	}
	sort.Strings(bad)
	return bad
}

// TestFileNames enforces lowercase Go file names without hyphens.
func TestFileNames(t *testing.T) {
	if bad := badFileNames(t, repoRoot); len(bad) > 0 {
		t.Errorf("Go file names must be lowercase, digits and underscores: %s", strings.Join(bad, ", "))
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Bad-Name.go"), []byte("package x\n"), 0o644)
	if got := badFileNames(t, dir); len(got) != 1 {
		t.Errorf("the file-name check missed Bad-Name.go: %v", got)
	}
}

var spdx = "// SPDX-License-Identifier: Apache-2.0\n"

func filesWithoutSPDX(t *testing.T, root string) []string {
	var bad []string
	for _, files := range goPackages(t, root) {
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(b), spdx) {
				bad = append(bad, f)
			}
		}
	}
	sort.Strings(bad)
	return bad
}

// TestLicenseHeaders checks the two-line SPDX header on every Go file.
func TestLicenseHeaders(t *testing.T) {
	if bad := filesWithoutSPDX(t, repoRoot); len(bad) > 0 {
		t.Errorf("Go files without the SPDX header: %s", strings.Join(bad, ", "))
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.go"), []byte("package x\n"), 0o644)
	if got := filesWithoutSPDX(t, dir); len(got) != 1 {
		t.Errorf("the header check missed a.go: %v", got)
	}
}
