// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Checks of the package's shape: no long functions, and no etcd client
// (the daemon reaches etcd only through subnet.Store). Both parse the
// package's non-test files of every GOOS, so they run the same anywhere.

// maxFuncLines is the longest a function of the package may be, counted
// from its func line to its closing brace.
const maxFuncLines = 80

// forbiddenImports are packages the daemon must not import directly.
var forbiddenImports = map[string]string{
	"go.etcd.io/etcd/client/v3": "the daemon reaches etcd only through subnet.Store (subnet/etcd)",
}

// sourceFiles parses the non-test Go files in dir, whatever their build
// constraints.
func sourceFiles(t *testing.T, dir string) (*token.FileSet, []*ast.File) {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		t.Fatalf("no Go files in %s", dir)
	}
	return fset, files
}

// longFuncs returns the functions (and methods) longer than limit lines,
// as "file:line name: n lines".
func longFuncs(fset *token.FileSet, files []*ast.File, limit int) []string {
	var long []string
	for _, f := range files {
		for _, decl := range f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok {
				continue
			}
			start, end := fset.Position(fd.Pos()), fset.Position(fd.End())
			if n := end.Line - start.Line + 1; n > limit {
				long = append(long, fmt.Sprintf("%s:%d %s: %d lines", filepath.Base(start.Filename), start.Line, fd.Name.Name, n))
			}
		}
	}
	return long
}

// badImports returns the imports of files that forbidden names, as
// "file: path (why)".
func badImports(fset *token.FileSet, files []*ast.File, forbidden map[string]string) []string {
	var bad []string
	for _, f := range files {
		for _, imp := range f.Imports {
			path, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				continue
			}
			if why, ok := forbidden[path]; ok {
				bad = append(bad, fmt.Sprintf("%s: %s (%s)", filepath.Base(fset.Position(imp.Pos()).Filename), path, why))
			}
		}
	}
	return bad
}

func TestFunctionLength(t *testing.T) {
	fset, files := sourceFiles(t, ".")
	for _, l := range longFuncs(fset, files, maxFuncLines) {
		t.Errorf("%s: split it (at most %d)", l, maxFuncLines)
	}
}

func TestNoEtcdClient(t *testing.T) {
	fset, files := sourceFiles(t, ".")
	for _, b := range badImports(fset, files, forbiddenImports) {
		t.Errorf("forbidden import in %s", b)
	}
}

// TestStructureChecksCanFail runs both checks on a package written to
// break them: a function one line too long and an import of the etcd
// client.
func TestStructureChecksCanFail(t *testing.T) {
	dir := t.TempDir()
	var body strings.Builder
	for i := range maxFuncLines - 2 { // plus the func line and the brace
		fmt.Fprintf(&body, "\t_ = %d\n", i)
	}
	src := map[string]string{
		"long.go":      "package x\n\nfunc fits() {\n" + body.String() + "}\n\nfunc tooLong() {\n" + body.String() + "\t_ = 0\n}\n",
		"etcd.go":      "package x\n\nimport clientv3 \"go.etcd.io/etcd/client/v3\"\n\nvar _ clientv3.Config\n",
		"etcd_test.go": "package x\n\nimport _ \"go.etcd.io/etcd/client/v3\"\n",
	}
	for name, s := range src {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fset, files := sourceFiles(t, dir)
	if long := longFuncs(fset, files, maxFuncLines); len(long) != 1 || !strings.HasPrefix(long[0], "long.go:") ||
		!strings.Contains(long[0], "tooLong: 81 lines") {
		t.Errorf("longFuncs = %q, want tooLong alone at %d lines", long, maxFuncLines+1)
	}
	bad := badImports(fset, files, forbiddenImports)
	if !slices.Equal(bad, []string{"etcd.go: go.etcd.io/etcd/client/v3 (" + forbiddenImports["go.etcd.io/etcd/client/v3"] + ")"}) {
		t.Errorf("badImports = %q, want etcd.go's import alone (test files are not the daemon)", bad)
	}
}
