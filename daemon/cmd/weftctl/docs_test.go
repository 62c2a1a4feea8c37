// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// docCommand is one weftctl command line found in the docs.
type docCommand struct {
	where  string // file:line
	args   []string
	inline bool // a code span in prose, which may name a command or flag without a complete line
}

// codeSpan matches a code span; spans may wrap across the lines of a
// paragraph.
var codeSpan = regexp.MustCompile("`([^`]+)`")

// docCommands returns the weftctl command lines in the Markdown text:
// every line of a fenced block that runs weftctl, with backslash
// continuations joined, and every code span in prose that runs weftctl.
func docCommands(name, text string) ([]docCommand, error) {
	var out []docCommand
	add := func(where, line string, inline bool) error {
		args, err := shellWords(line)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if args != nil {
			out = append(out, docCommand{where, args, inline})
		}
		return nil
	}
	// The prose paragraph being read, joined by spaces, and where each of
	// its lines starts in it.
	var para strings.Builder
	var paraLines []int // line number, offset pairs
	endPara := func() error {
		joined := para.String()
		for _, m := range codeSpan.FindAllStringSubmatchIndex(joined, -1) {
			line := 0
			for j := 0; j < len(paraLines); j += 2 {
				if paraLines[j+1] <= m[0] {
					line = paraLines[j]
				}
			}
			if err := add(fmt.Sprintf("%s:%d", name, line), joined[m[2]:m[3]], true); err != nil {
				return err
			}
		}
		para.Reset()
		paraLines = paraLines[:0]
		return nil
	}
	lines := strings.Split(text, "\n")
	inFence := false
	for i := 0; i < len(lines); i++ {
		trimmed := strings.TrimSpace(lines[i])
		if strings.HasPrefix(trimmed, "```") {
			if err := endPara(); err != nil {
				return nil, err
			}
			inFence = !inFence
			continue
		}
		where := fmt.Sprintf("%s:%d", name, i+1)
		if !inFence {
			if trimmed == "" {
				if err := endPara(); err != nil {
					return nil, err
				}
				continue
			}
			if para.Len() > 0 {
				para.WriteByte(' ')
			}
			paraLines = append(paraLines, i+1, para.Len())
			para.WriteString(trimmed)
			continue
		}
		for strings.HasSuffix(trimmed, "\\") && i+1 < len(lines) {
			i++
			trimmed = strings.TrimSuffix(trimmed, "\\") + " " + strings.TrimSpace(lines[i])
		}
		if err := add(where, trimmed, false); err != nil {
			return nil, err
		}
	}
	if err := endPara(); err != nil {
		return nil, err
	}
	return out, nil
}

// placeholder matches a placeholder such as <node> or <node|etcd>.
var placeholder = regexp.MustCompile(`<[a-z][a-z0-9|_ -]*>`)

// placeholderWord starts the word a placeholder becomes.
const placeholderWord = "placeholder:"

// shellWords splits a command line the way a shell would for the simple
// lines the docs hold (quotes; a pipe, redirection, ; or && ends the
// command; # starts a comment; a placeholder such as <node> is one word).
// It returns weftctl's arguments when the line runs weftctl, directly or
// after "$ ", sudo or "ip netns exec <ns>", and nil otherwise.
func shellWords(line string) ([]string, error) {
	if !strings.Contains(line, "weftctl") {
		return nil, nil
	}
	// A placeholder becomes one word the shell would not split or cut.
	line = placeholder.ReplaceAllStringFunc(line, func(p string) string {
		return placeholderWord + strings.NewReplacer(" ", "-", "|", "-").Replace(strings.Trim(p, "<>"))
	})
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	flush := func() {
		if inWord {
			words = append(words, cur.String())
			cur.Reset()
			inWord = false
		}
	}
loop:
	for _, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			flush()
		case strings.ContainsRune("|;&<>", r):
			break loop
		case r == '#' && !inWord:
			break loop
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated quote in %q", line)
	}
	flush()
	if len(words) > 0 && words[0] == "$" {
		words = words[1:]
	}
	if len(words) > 0 && words[0] == "sudo" {
		words = words[1:]
	}
	if len(words) > 4 && words[0] == "ip" && words[1] == "netns" && words[2] == "exec" {
		words = words[4:]
	}
	if len(words) == 0 || filepath.Base(words[0]) != "weftctl" || len(words) > 1 && strings.HasPrefix(words[1], placeholderWord) {
		return nil, nil // not weftctl, or weftctl <command>
	}
	return words[1:], nil
}

// commandDepth is how many words name each command: a line with no more
// words than that is a reference to the command, not a command line.
var commandDepth = map[string]int{"config": 2, "leases": 1, "status": 1, "members": 1, "gossip-key": 1, "lab": 2, "version": 1, "help": 1}

// markdownFiles returns the Markdown files of the repository that
// operators read.
func markdownFiles(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	for _, dir := range []string{"docs", "etc", "e2e"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && strings.HasSuffix(p, ".md") {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return append(files, filepath.Join(root, "README.md"))
}

// incomplete are the errors of a command line that leaves something out.
// A code span in prose may do that, such as `weftctl leases rm` or
// `weftctl config set -f`, to name a command or a flag; it must not name
// one that does not exist or give a wrong value.
var incomplete = []string{"flag needs an argument", "give exactly one", "usage: weftctl lab", "nothing to write", "no subcommand given"}

// checkCommand runs the command line with weftctl's arguments-only
// context and returns the problem, if the line does not parse.
func checkCommand(c docCommand) error {
	ctx := context.WithValue(context.Background(), argsOnlyKey{}, true)
	err := run(ctx, c.args)
	if err == nil || errors.Is(err, errArgsOK) {
		return nil
	}
	if c.inline && slices.ContainsFunc(incomplete, func(s string) bool { return strings.Contains(err.Error(), s) }) {
		return nil
	}
	return fmt.Errorf("%s: weftctl %s: %v", c.where, strings.Join(c.args, " "), err)
}

// quiet sends weftctl's output to io.Discard until the returned function
// is called: the commands print usage on bad flags.
func quiet() (restore func()) {
	out, errOut := stdout, stderr
	stdout, stderr = io.Discard, io.Discard
	return func() { stdout, stderr = out, errOut }
}

// docProblems checks the weftctl command lines of the Markdown files
// (name → text) and returns what is wrong and the lines it checked.
func docProblems(t *testing.T, files map[string]string) (problems, checked []string) {
	t.Helper()
	for name, text := range files {
		cmds, err := docCommands(name, text)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		for _, c := range cmds {
			if len(c.args) == 0 || len(c.args) <= commandDepth[c.args[0]] {
				continue // names the command, as prose does
			}
			checked = append(checked, fmt.Sprintf("%s: weftctl %s", c.where, strings.Join(c.args, " ")))
			restore := quiet()
			err := checkCommand(c)
			restore()
			if err != nil {
				problems = append(problems, err.Error())
			}
		}
	}
	slices.Sort(problems)
	slices.Sort(checked)
	return problems, checked
}

// TestDocumentedCommandLines runs every weftctl command line in the docs
// through weftctl's own argument parsing and checks, stopping before it
// reads a file, connects or touches the system.
func TestDocumentedCommandLines(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	t.Setenv("WEFTCTL_LAB_DIR", t.TempDir())
	files := map[string]string{}
	for _, f := range markdownFiles(t, root) {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, f)
		files[rel] = string(text)
	}
	problems, checked := docProblems(t, files)
	for _, p := range problems {
		t.Error(p)
	}
	t.Logf("%d documented command lines checked:\n%s", len(checked), strings.Join(checked, "\n"))
	// The lab's walk-through alone has these; fewer means the extraction
	// broke.
	for _, want := range []string{
		"docs/lab.md:67: weftctl lab up --nodes 4 --dual-stack",
		"docs/lab.md:135: weftctl status --addr 198.18.0.11:9950",
		"docs/lab.md:158: weftctl config set --etcd-endpoints http://198.18.0.2:2379 --network 10.244.0.0/16 --vni 2",
	} {
		if !slices.Contains(checked, want) {
			t.Errorf("not found in the docs: %s", want)
		}
	}

	t.Run("can fail", func(t *testing.T) {
		doctored := map[string]string{"bad.md": "Evict it with `weftctl leases rm --now node3`, or run\n" +
			"`sudo ./bin/weftctl lab up --nodes 40`.\n\n" +
			"```sh\n" +
			"$ weftctl config set '{\"Network\": \"10.244.0.0/16\"}'\n" +
			"ip netns exec n1 weftctl config set --network 10.244.0.0/16 \\\n" +
			"    --backend vxlan --vni 1x\n" +
			"weftctl nodes -o json | jq .\n" +
			"weftctl leases rm <node>   # fine\n" +
			"```\n"}
		problems, checked := docProblems(t, doctored)
		if len(checked) != 6 {
			t.Errorf("checked %d lines, want 6: %q", len(checked), checked)
		}
		for _, want := range []string{
			"bad.md:1: weftctl leases rm --now node3: flag provided but not defined: -now",
			"bad.md:5: weftctl config set {\"Network\": \"10.244.0.0/16\"}: config set: unexpected arguments",
			"bad.md:6: weftctl config set --network 10.244.0.0/16 --backend vxlan --vni 1x: invalid value \"1x\" for flag -vni",
			"bad.md:2: weftctl lab up --nodes 40: --nodes 40: want 1 to 20",
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
