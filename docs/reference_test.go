// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package docs

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/daemon/status"
)

// operatorDocs are the pages whose references to weftctl commands,
// metrics and /status fields are checked against the code.
var operatorDocs = []string{
	"architecture.md", "configuration.md", "flannel.md", "install.md",
	"operations.md", "security.md", "troubleshooting.md", "membership.md",
	"lab.md", "backends/host-gw.md", "backends/vxlan.md", "backends/wireguard.md",
	"kubernetes.md",
}

func readDocs(t *testing.T, names []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		out[n] = string(b)
	}
	return out
}

func readSources(t *testing.T, dir string) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
	}
	return b.String()
}

var (
	weftctlCmd    = regexp.MustCompile("weftctl ([a-z][a-z-]*)")
	dispatchCase  = regexp.MustCompile(`case "([a-z][a-z-]*)":`)
	metricName    = regexp.MustCompile(`\bweft_[a-z_]+[a-z]\b`)
	metricDefined = regexp.MustCompile(`(?:Name:\s*|prometheus\.NewDesc\()"(weft_[a-z_]+)"`)
	camelToken    = regexp.MustCompile("`([a-z]+[A-Z][A-Za-z]*)`")
)

// unknownCommands returns the weftctl commands the docs name that the
// dispatcher (the case labels of its main.go) does not have.
func unknownCommands(docs map[string]string, mainGo string) []string {
	var have []string
	for _, m := range dispatchCase.FindAllStringSubmatch(mainGo, -1) {
		have = append(have, m[1])
	}
	var bad []string
	for name, text := range docs {
		for _, m := range weftctlCmd.FindAllStringSubmatch(text, -1) {
			if !slices.Contains(have, m[1]) {
				bad = append(bad, fmt.Sprintf("%s: weftctl %s is not a weftctl command (%v)", name, m[1], have))
			}
		}
	}
	slices.Sort(bad)
	return slices.Compact(bad)
}

// metricProblems returns metrics the docs name that the code does not
// define, and metrics the code defines that operations.md does not list.
func metricProblems(docs map[string]string, source string) []string {
	var defined []string
	for _, m := range metricDefined.FindAllStringSubmatch(source, -1) {
		defined = append(defined, m[1])
	}
	var bad []string
	for name, text := range docs {
		for _, m := range metricName.FindAllString(text, -1) {
			if !slices.Contains(defined, m) {
				bad = append(bad, fmt.Sprintf("%s: metric %s is not defined by weftd", name, m))
			}
		}
	}
	for _, m := range defined {
		ops := docs["operations.md"]
		if !strings.Contains(ops, "`"+m+"`") && !strings.Contains(ops, "`"+m+"{") {
			bad = append(bad, fmt.Sprintf("operations.md: metric %s is not listed", m))
		}
	}
	slices.Sort(bad)
	return slices.Compact(bad)
}

// jsonFieldNames returns every JSON field name reachable from t.
func jsonFieldNames(t reflect.Type, into map[string]bool) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return
	}
	for f := range t.Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			into[name] = true
		}
		jsonFieldNames(f.Type, into)
	}
}

// unknownFields returns the camelCase names in backticks that are neither
// a /status field nor a CNI key.
func unknownFields(docs map[string]string, known map[string]bool) []string {
	var bad []string
	for name, text := range docs {
		for _, m := range camelToken.FindAllStringSubmatch(text, -1) {
			if !known[m[1]] {
				bad = append(bad, fmt.Sprintf("%s: `%s` is neither a /status field nor a CNI key", name, m[1]))
			}
		}
	}
	slices.Sort(bad)
	return slices.Compact(bad)
}

// TestReferences keeps the operator docs' weftctl commands, metric names
// and /status fields true to the code.
func TestReferences(t *testing.T) {
	docs := readDocs(t, operatorDocs)
	mainGo := readSources(t, filepath.Join(repoRoot, "daemon", "cmd", "weftctl"))
	source := readSources(t, filepath.Join(repoRoot, "daemon"))
	known := map[string]bool{}
	jsonFieldNames(reflect.TypeFor[status.Report](), known)
	for _, k := range cniKeys() {
		known[k] = true
	}
	// Standard CNI keys and Kubernetes field names the docs mention.
	for _, k := range []string{"cniVersion", "prevResult", "hostNetwork", "httpGet", "dnsPolicy", "priorityClassName", "maxUnavailable"} {
		known[k] = true
	}
	for name, bad := range map[string][]string{
		"weftctl commands": unknownCommands(docs, mainGo),
		"metrics":          metricProblems(docs, source),
		"status fields":    unknownFields(docs, known),
	} {
		t.Run(name, func(t *testing.T) {
			if len(bad) > 0 {
				t.Error(strings.Join(bad, "\n"))
			}
		})
	}

	t.Run("can fail", func(t *testing.T) {
		doctored := map[string]string{
			"operations.md": docs["operations.md"] + "\nRun `weftctl nodes`; watch `weft_peer_count`; read `forwardingProblems`.\n",
		}
		got := strings.Join(append(append(unknownCommands(doctored, mainGo), metricProblems(doctored, source)...), unknownFields(doctored, known)...), "\n")
		for _, want := range []string{"weftctl nodes is not a weftctl command", "metric weft_peer_count is not defined", "`forwardingProblems` is neither"} {
			if !strings.Contains(got, want) {
				t.Errorf("want a problem containing %q, got:\n%s", want, got)
			}
		}
		doctored["operations.md"] = strings.ReplaceAll(docs["operations.md"], "`weft_ready`", "ready")
		if got := metricProblems(doctored, source); !slices.Contains(got, "operations.md: metric weft_ready is not listed") {
			t.Errorf("an unlisted metric was not reported: %q", got)
		}
	})
}
