// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// truthTableCases is the file of the upstream network-policy tests the
// e2e truth table runs; each case opens with `{name: "..."`.
const truthTableCases = "e2e/netpol_cases_e2e_test.go"

var caseName = regexp.MustCompile(`\{name: "((?:[^"\\]|\\.)*)"`)

// unnamedTests returns the names of cases in src that doc does not quote
// (line breaks and indentation in doc count as one space).
func unnamedTests(src, doc string) (names, missing []string) {
	flat := strings.Join(strings.Fields(doc), " ")
	for _, m := range caseName.FindAllStringSubmatch(src, -1) {
		names = append(names, m[1])
		if !strings.Contains(flat, `"`+m[1]+`"`) {
			missing = append(missing, m[1])
		}
	}
	return names, missing
}

// TestTruthTableTestsNamed: docs/network-policy.md names every upstream
// test the truth table runs, by its upstream name.
func TestTruthTableTestsNamed(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repoRoot, truthTableCases))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("network-policy.md")
	if err != nil {
		t.Fatal(err)
	}
	names, missing := unnamedTests(string(src), string(doc))
	if len(names) < 25 {
		t.Fatalf("%s: %d upstream tests found, want at least 25 (has the case syntax changed?)", truthTableCases, len(names))
	}
	for _, n := range missing {
		t.Errorf("network-policy.md does not name the truth table's upstream test %q (from %s)", n, truthTableCases)
	}
	// The check can fail: a name the doc lacks is reported.
	if _, m := unnamedTests(`{name: "should not exist anywhere", stages: nil}`, string(doc)); len(m) != 1 {
		t.Errorf("a test the doc does not name was not reported: %v", m)
	}
}
