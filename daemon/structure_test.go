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

// Checks of the package's shape: no etcd client (the daemon reaches etcd
// only through subnet.Store). They parse the package's non-test files of
// every GOOS, so they run the same anywhere.

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

func TestNoEtcdClient(t *testing.T) {
	fset, files := sourceFiles(t, ".")
	for _, b := range badImports(fset, files, forbiddenImports) {
		t.Errorf("forbidden import in %s", b)
	}
}

// TestStructureChecksCanFail runs the check on a package written to break
// it: an import of the etcd client.
func TestStructureChecksCanFail(t *testing.T) {
	dir := t.TempDir()
	src := map[string]string{
		"etcd.go":      "package x\n\nimport clientv3 \"go.etcd.io/etcd/client/v3\"\n\nvar _ clientv3.Config\n",
		"etcd_test.go": "package x\n\nimport _ \"go.etcd.io/etcd/client/v3\"\n",
	}
	for name, s := range src {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fset, files := sourceFiles(t, dir)
	bad := badImports(fset, files, forbiddenImports)
	if !slices.Equal(bad, []string{"etcd.go: go.etcd.io/etcd/client/v3 (" + forbiddenImports["go.etcd.io/etcd/client/v3"] + ")"}) {
		t.Errorf("badImports = %q, want etcd.go's import alone (test files are not the daemon)", bad)
	}
}
