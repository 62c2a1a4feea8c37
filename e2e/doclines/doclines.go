// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package doclines finds the command lines of one program (weftctl,
// weft-lab) in the Markdown docs, so that a program's tests can run every
// documented line through the program's own argument parsing and catch a
// doc that names a command or flag that does not exist.
package doclines

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Line is one command line of the program found in the docs.
type Line struct {
	// Where is file:line.
	Where string
	// Args are the program's arguments (its name left out).
	Args []string
	// Inline is true for a code span in prose, which may name a command
	// or flag without a complete line.
	Inline bool
}

// codeSpan matches a code span; spans may wrap across the lines of a
// paragraph.
var codeSpan = regexp.MustCompile("`([^`]+)`")

// Find returns the command lines of program in the Markdown text of the
// file name: every line of a fenced block that runs program, with
// backslash continuations joined, and every code span in prose that runs
// it.
func Find(name, text, program string) ([]Line, error) {
	var out []Line
	add := func(where, line string, inline bool) error {
		args, err := ShellWords(line, program)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if args != nil {
			out = append(out, Line{where, args, inline})
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

// ShellWords splits a command line the way a shell would for the simple
// lines the docs hold (quotes; a pipe, redirection, ; or && ends the
// command; # starts a comment; a placeholder such as <node> is one word).
// It returns program's arguments when the line runs program, directly or
// after "$ ", sudo or "ip netns exec <ns>", and nil otherwise (also for
// "program <command>", a placeholder for a command).
func ShellWords(line, program string) ([]string, error) {
	if !strings.Contains(line, program) {
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
	if len(words) == 0 || filepath.Base(words[0]) != program || len(words) > 1 && strings.HasPrefix(words[1], placeholderWord) {
		return nil, nil // not program, or program <command>
	}
	return words[1:], nil
}

// Files returns the Markdown files under the repository root that
// operators read: docs/, etc/, e2e/ and the README.
func Files(root string) ([]string, error) {
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
			return nil, err
		}
	}
	return append(files, filepath.Join(root, "README.md")), nil
}

// ReadFiles reads [Files] into a map from the path relative to root to
// the text.
func ReadFiles(root string) (map[string]string, error) {
	paths, err := Files(root)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, p := range paths {
		text, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return nil, err
		}
		out[rel] = string(text)
	}
	return out, nil
}

// Checker checks the command lines of one program.
type Checker struct {
	// Program is the program's name as the docs write it.
	Program string
	// Depth is how many words name each command: a line with no more
	// words than that refers to the command, as prose does, and is not
	// checked.
	Depth map[string]int
	// Check runs the program's argument parsing on the line and returns
	// the problem, or nil. It keeps the program's output (usage on bad
	// flags) out of the test's: Problems does not touch os.Stdout or
	// os.Stderr, which other goroutines of a test binary may use.
	Check func(Line) error
}

// Problems checks the program's lines in files (name → Markdown text) and
// returns what is wrong ("file:line: program args: error") and the lines
// it checked, both sorted.
func (c Checker) Problems(files map[string]string) (problems, checked []string) {
	for name, text := range files {
		lines, err := Find(name, text, c.Program)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		for _, l := range lines {
			if len(l.Args) == 0 || len(l.Args) <= c.Depth[l.Args[0]] {
				continue
			}
			cmd := fmt.Sprintf("%s: %s %s", l.Where, c.Program, strings.Join(l.Args, " "))
			checked = append(checked, cmd)
			if err := c.Check(l); err != nil {
				problems = append(problems, cmd+": "+err.Error())
			}
		}
	}
	slices.Sort(problems)
	slices.Sort(checked)
	return problems, checked
}
