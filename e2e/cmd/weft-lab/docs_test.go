// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package main

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/e2e/doclines"
)

// checker checks weft-lab's documented command lines with its
// arguments-only context. A code span in prose may name a command without
// its node argument (`weft-lab restart`); it must not name one that does
// not exist or give a wrong flag.
var checker = doclines.Checker{
	Program: "weft-lab",
	Depth:   map[string]int{"stop": 1, "start": 1, "restart": 1},
	Check: func(l doclines.Line) error {
		restore := quiet()
		defer restore()
		ctx := context.WithValue(context.Background(), argsOnlyKey{}, true)
		err := run(ctx, l.Args)
		if err == nil || errors.Is(err, errArgsOK) {
			return nil
		}
		if l.Inline && strings.Contains(err.Error(), "flag needs an argument") {
			return nil
		}
		return err
	},
}

// quiet sends the program's output to io.Discard until the returned
// function is called: the commands print usage on bad flags.
func quiet() (restore func()) {
	out, errOut := stdout, stderr
	stdout, stderr = io.Discard, io.Discard
	return func() { stdout, stderr = out, errOut }
}

// TestDocumentedCommandLines runs every weft-lab command line in the docs
// through weft-lab's own argument parsing and checks, stopping before it
// reads the state, starts a process or touches the system.
func TestDocumentedCommandLines(t *testing.T) {
	t.Setenv(labDirEnv, t.TempDir())
	files, err := doclines.ReadFiles(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	problems, checked := checker.Problems(files)
	for _, p := range problems {
		t.Error(p)
	}
	t.Logf("%d documented command lines checked:\n%s", len(checked), strings.Join(checked, "\n"))
	// The lab's page has these; fewer means the extraction broke.
	for _, want := range []string{
		"docs/lab.md:69: weft-lab up --nodes 4 --dual-stack",
		"docs/lab.md:201: weft-lab restart node1",
	} {
		if !slices.Contains(checked, want) {
			t.Errorf("not found in the docs: %s", want)
		}
	}

	t.Run("can fail", func(t *testing.T) {
		doctored := map[string]string{"bad.md": "Run `sudo ./bin/weft-lab up --nodes 40`, or\n" +
			"`weft-lab restart node1 node2`.\n\n" +
			"```sh\n" +
			"$ sudo ./bin/weft-lab up --backend geneve\n" +
			"ip netns exec n1 weft-lab up --nodes 2 \\\n" +
			"    --pods 1\n" +
			"weft-lab sideways --now\n" +
			"weft-lab lab up\n" +
			"```\n"}
		problems, checked := checker.Problems(doctored)
		if len(checked) != 6 {
			t.Errorf("checked %d lines, want 6: %q", len(checked), checked)
		}
		for _, want := range []string{
			"bad.md:1: weft-lab up --nodes 40: --nodes 40: want 1 to 20",
			"bad.md:2: weft-lab restart node1 node2: usage: weft-lab restart <node|etcd|kube-apiserver|kube-controller-manager>",
			"bad.md:5: weft-lab up --backend geneve: --backend \"geneve\"",
			"bad.md:8: weft-lab sideways --now: unknown command \"sideways\"",
			"bad.md:9: weft-lab lab up: unknown command \"lab\"",
		} {
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.HasPrefix(p, want) }) {
				t.Errorf("no problem starting with %q in:\n%s", want, strings.Join(problems, "\n"))
			}
		}
		if len(problems) != 5 {
			t.Errorf("%d problems, want 5:\n%s", len(problems), strings.Join(problems, "\n"))
		}
	})
}
