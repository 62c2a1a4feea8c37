// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package backend

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// netlinkDumps are the netlink functions and Handle methods (v1.3.1) that
// run a dump and can fail with ErrDumpInterrupted.
var netlinkDumps = map[string]bool{
	"AddrList": true, "BridgeVlanList": true, "ChainList": true, "ClassList": true,
	"FilterList": true, "FouList": true, "LinkList": true, "NeighList": true,
	"NeighListExecute": true, "NeighProxyList": true, "QdiscList": true,
	"RdmaLinkList": true, "RouteList": true, "RouteListFiltered": true,
	"RouteListFilteredIter": true, "RuleList": true, "RuleListFiltered": true,
	"XfrmPolicyList": true, "XfrmStateList": true,
}

const backendImport = "github.com/weftnet/weft/backend"

// directDumps returns "file:line: expr" for every use of a netlink dump
// (netlink.LinkList(), h.RouteListFiltered(...), f := h.NeighList) in src
// that does not go through package backend's wrappers.
func directDumps(fset *token.FileSet, name string, src any) ([]string, error) {
	f, err := parser.ParseFile(fset, name, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	// The name under which this file imports package backend: calls
	// through it are the wrappers.
	allowed := map[string]bool{}
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		if p != backendImport {
			continue
		}
		if imp.Name != nil {
			allowed[imp.Name.Name] = true
		} else {
			allowed["backend"] = true
		}
	}
	var found []string
	// Any use counts, a call or a method value (f := h.LinkList).
	ast.Inspect(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok || !netlinkDumps[sel.Sel.Name] {
			return true
		}
		if id, ok := sel.X.(*ast.Ident); ok && allowed[id.Name] {
			return true
		}
		pos := fset.Position(sel.Pos())
		found = append(found, fmt.Sprintf("%s:%d: %s", filepath.ToSlash(pos.Filename), pos.Line, exprString(sel)))
		return true
	})
	return found, nil
}

func exprString(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return exprString(e.X) + "." + e.Sel.Name
	case *ast.CallExpr:
		return exprString(e.Fun) + "()"
	default:
		return fmt.Sprintf("%T", e)
	}
}

func TestDirectDumpsDetector(t *testing.T) {
	src := `package x

import (
	"github.com/vishvananda/netlink"
	nlb "github.com/weftnet/weft/backend"
)

func f(h *netlink.Handle, handle *netlink.Handle) {
	netlink.LinkList()
	h.RouteListFiltered(0, nil, 0)
	handle.NeighList(0, 0)
	s.handle().AddrList(nil, 0)
	list := h.LinkList
	nlb.LinkList(h)
	h.LinkByName("x")
	h.RouteAdd(nil)
}
`
	got, err := directDumps(token.NewFileSet(), "x.go", src)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"x.go:9: netlink.LinkList",
		"x.go:10: h.RouteListFiltered",
		"x.go:11: handle.NeighList",
		"x.go:12: s.handle().AddrList",
		"x.go:13: h.LinkList",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("detector (-want +got):\n%s", diff)
	}
}

// TestNoDirectNetlinkDumps fails when code anywhere in the module calls a
// netlink dump directly instead of through this package's retrying
// wrappers (STYLE.md §4).
func TestNoDirectNetlinkDumps(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found above backend/: %v", err)
	}
	self := filepath.Join(root, "backend", "netlink_linux.go")
	fset := token.NewFileSet()
	var found []string
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			n := d.Name()
			if path != root && (strings.HasPrefix(n, ".") || strings.HasPrefix(n, "_") || n == "vendor" || n == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || path == self {
			return nil
		}
		files++
		hits, err := directDumps(fset, path, nil)
		if err != nil {
			// A file another engineer is in the middle of writing
			// may not parse; that is their compiler's business.
			t.Logf("skip %s: %v", path, err)
			return nil
		}
		found = append(found, hits...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatal("no Go files scanned")
	}
	for _, f := range found {
		t.Errorf("direct netlink dump (use the wrapper in package backend): %s", strings.TrimPrefix(f, filepath.ToSlash(root)+"/"))
	}
}
