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

// incomplete are the errors of a command line that leaves something out.
// A code span in prose may do that, such as `weftctl leases rm` or
// `weftctl config set -f`, to name a command or a flag; it must not name
// one that does not exist or give a wrong value.
var incomplete = []string{"flag needs an argument", "give exactly one", "nothing to write"}

// checker checks weftctl's documented command lines with weftctl's
// arguments-only context.
var checker = doclines.Checker{
	Program: "weftctl",
	Depth:   map[string]int{"config": 2, "leases": 1, "policy": 2, "namespace": 2, "status": 1, "members": 1, "gossip-key": 1, "version": 1, "help": 1},
	Check: func(l doclines.Line) error {
		restore := quiet()
		defer restore()
		ctx := context.WithValue(context.Background(), argsOnlyKey{}, true)
		err := run(ctx, l.Args)
		if err == nil || errors.Is(err, errArgsOK) {
			return nil
		}
		if l.Inline && slices.ContainsFunc(incomplete, func(s string) bool { return strings.Contains(err.Error(), s) }) {
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

// TestDocumentedCommandLines runs every weftctl command line in the docs
// through weftctl's own argument parsing and checks, stopping before it
// reads a file, connects or touches the system.
func TestDocumentedCommandLines(t *testing.T) {
	files, err := doclines.ReadFiles(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	problems, checked := checker.Problems(files)
	for _, p := range problems {
		t.Error(p)
	}
	t.Logf("%d documented command lines checked:\n%s", len(checked), strings.Join(checked, "\n"))
	// The lab's walk-through alone has these; fewer means the extraction
	// broke.
	for _, want := range []string{
		"docs/lab.md:187: weftctl status --addr 198.18.0.11:9950",
		"docs/lab.md:210: weftctl config set --etcd-endpoints http://198.18.0.2:2379 --network 10.244.0.0/16 --vni 2",
	} {
		if !slices.Contains(checked, want) {
			t.Errorf("not found in the docs: %s", want)
		}
	}

	t.Run("can fail", func(t *testing.T) {
		doctored := map[string]string{"bad.md": "Evict it with `weftctl leases rm --now node3`, or run\n" +
			"`sudo ./bin/weftctl lab up --nodes 4`.\n\n" +
			"```sh\n" +
			"$ weftctl config set '{\"Network\": \"10.244.0.0/16\"}'\n" +
			"ip netns exec n1 weftctl config set --network 10.244.0.0/16 \\\n" +
			"    --backend vxlan --vni 1x\n" +
			"weftctl nodes -o json | jq .\n" +
			"weftctl leases rm <node>   # fine\n" +
			"```\n"}
		problems, checked := checker.Problems(doctored)
		if len(checked) != 6 {
			t.Errorf("checked %d lines, want 6: %q", len(checked), checked)
		}
		for _, want := range []string{
			"bad.md:1: weftctl leases rm --now node3: flag provided but not defined: -now",
			"bad.md:5: weftctl config set {\"Network\": \"10.244.0.0/16\"}: config set: unexpected arguments",
			"bad.md:6: weftctl config set --network 10.244.0.0/16 --backend vxlan --vni 1x: invalid value \"1x\" for flag -vni",
			"bad.md:2: weftctl lab up --nodes 4: unknown command \"lab\"",
			"bad.md:8: weftctl nodes -o json: unknown command \"nodes\"",
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
