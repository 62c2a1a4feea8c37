// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package docker

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/etc/image"
)

const repoRoot = "../.."

// instruction is one Dockerfile instruction with its stage index.
type instruction struct {
	stage int
	op    string // upper case
	args  []string
	line  int
}

// parseDockerfile splits a Dockerfile into instructions (comments and
// blank lines dropped; this Dockerfile uses no line continuations, which
// the check reports).
func parseDockerfile(text string) ([]instruction, error) {
	var out []instruction
	stage := -1
	for i, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			return nil, fmt.Errorf("line %d: line continuations are not supported by this check", i+1)
		}
		f := strings.Fields(l)
		op := strings.ToUpper(f[0])
		if op == "FROM" {
			stage++
		}
		if stage < 0 && op != "ARG" {
			return nil, fmt.Errorf("line %d: %s before the first FROM", i+1, op)
		}
		out = append(out, instruction{stage, op, f[1:], i + 1})
	}
	return out, nil
}

// madeBinaries returns the names of the binaries `make build` writes into
// $(BIN), read from the Makefile's build recipe.
func madeBinaries(makefile string) []string {
	re := regexp.MustCompile(`-o \$\(BIN\)/(\S+)`)
	var names []string
	for _, m := range re.FindAllStringSubmatch(makefile, -1) {
		names = append(names, m[1])
	}
	return names
}

// dockerfileProblems checks the Dockerfile's shape against what make build
// produces and what the repository holds (root), and its run-time stage
// against the image make image builds (package image).
func dockerfileProblems(text, makefile, root string) []string {
	var bad []string
	add := func(format string, a ...any) { bad = append(bad, fmt.Sprintf(format, a...)) }
	ins, err := parseDockerfile(text)
	if err != nil {
		return []string{err.Error()}
	}
	var froms []instruction
	for _, in := range ins {
		if in.op == "FROM" {
			froms = append(froms, in)
		}
	}
	if len(froms) < 2 {
		return []string{"want a multi-stage build (a build stage and a run-time stage)"}
	}
	// Build stage: named "build", Go toolchain, CGO off, runs make build.
	b := froms[0]
	if len(b.args) != 3 || !strings.EqualFold(b.args[1], "AS") || b.args[2] != "build" || !strings.HasPrefix(b.args[0], "golang:") {
		add("line %d: the first stage must be `FROM golang:... AS build`", b.line)
	}
	var cgoOff, makeBuild bool
	for _, in := range ins {
		if in.stage != 0 {
			continue
		}
		joined := strings.Join(in.args, " ")
		if in.op == "ENV" && (joined == "CGO_ENABLED=0" || joined == "CGO_ENABLED 0") {
			cgoOff = true
		}
		if in.op == "RUN" && strings.HasPrefix(joined, "make build") {
			makeBuild = true
		}
	}
	if !cgoOff {
		add("the build stage must set ENV CGO_ENABLED=0 (static binaries)")
	}
	if !makeBuild {
		add("the build stage must RUN make build")
	}
	// Run-time stage: an empty base, as make image's.
	last := froms[len(froms)-1]
	if last.args[0] != "scratch" {
		add("line %d: run-time base %q is not scratch (make image builds on an empty base)", last.line, last.args[0])
	}
	made := madeBinaries(makefile)
	if len(made) == 0 {
		add("no binaries found in the Makefile's build recipe")
	}
	var held []string
	for _, in := range ins {
		if in.stage != last.stage {
			continue
		}
		switch in.op {
		case "RUN":
			add("line %d: the run-time stage runs nothing (RUN needs tools a minimal base lacks)", in.line)
		case "COPY":
			var from string
			var args []string
			for _, a := range in.args {
				if v, ok := strings.CutPrefix(a, "--from="); ok {
					from = v
				} else if !strings.HasPrefix(a, "--") {
					args = append(args, a)
				}
			}
			if len(args) < 2 {
				add("line %d: COPY needs a source and a destination", in.line)
				continue
			}
			dst, srcs := args[len(args)-1], args[:len(args)-1]
			if len(srcs) > 1 && !strings.HasSuffix(dst, "/") {
				add("line %d: several sources need a destination directory ending in /", in.line)
			}
			for _, s := range srcs {
				switch {
				case from == "build":
					if filepath.Dir(s) != "/src/bin" || !slices.Contains(made, filepath.Base(s)) {
						add("line %d: %s is not a binary make build writes into /src/bin (%v)", in.line, s, made)
					}
				case from != "":
					add("line %d: COPY --from=%s: only the build stage is expected", in.line, from)
				default:
					if _, err := os.Stat(filepath.Join(root, s)); err != nil {
						add("line %d: %s is not in the repository", in.line, s)
					}
				}
				if strings.HasSuffix(dst, "/") {
					held = append(held, dst+filepath.Base(s))
				} else {
					held = append(held, dst)
				}
			}
		}
	}
	last1 := func(op string) string {
		v := ""
		for _, in := range ins {
			if in.stage == last.stage && in.op == op {
				v = strings.Join(in.args, " ")
			}
		}
		return v
	}
	if e := last1("ENTRYPOINT"); e != `["`+image.Entrypoint+`"]` {
		add("ENTRYPOINT %s, want [%q] as make image sets", e, image.Entrypoint)
	}
	if u := last1("USER"); u != image.User {
		add("USER %q, want %q as make image sets", u, image.User)
	}
	if e := last1("ENV"); e != "PATH="+image.Path {
		add("ENV %q, want PATH=%s as make image sets", e, image.Path)
	}
	var want []string
	for _, f := range image.Files {
		want = append(want, f.Path)
		if !slices.Contains(made, f.Binary) {
			add("make image's %s is not a binary make build writes (%v)", f.Binary, made)
		}
	}
	slices.Sort(want)
	slices.Sort(held)
	if !slices.Equal(held, want) {
		add("the run-time stage holds %v, make image's image %v", held, want)
	}
	return bad
}

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDockerfile checks the Dockerfile statically (no Docker engine here).
func TestDockerfile(t *testing.T) {
	df := read(t, "Dockerfile")
	mk := read(t, filepath.Join(repoRoot, "Makefile"))
	if p := dockerfileProblems(df, mk, repoRoot); len(p) > 0 {
		t.Errorf("Dockerfile:\n%s", strings.Join(p, "\n"))
	}
	for _, tc := range []struct{ name, old, new, want string }{
		{"cgo on", "ENV CGO_ENABLED=0", "ENV CGO_ENABLED=1", "CGO_ENABLED=0"},
		{"no make build", "RUN make build", "RUN go build ./...", "RUN make build"},
		{"binary make does not build", "/src/bin/weftctl ", "/src/bin/weftcli ", "/src/bin/weftcli is not a binary"},
		{"missing file", "COPY --from=build /src/bin/weft /opt/weft/bin/weft", "COPY etc/cni/10-weft.conflis /opt/weft/bin/weft", "etc/cni/10-weft.conflis is not in the repository"},
		{"file not in make image's image", " /src/bin/weft-install-cni ", " ", "make image's image"},
		{"another entrypoint", `ENTRYPOINT ["/usr/local/bin/weftd"]`, `ENTRYPOINT ["/usr/local/bin/weftctl"]`, "ENTRYPOINT"},
		{"root", "USER 65532:65532", "USER 0", `USER "0"`},
		{"fat base", "FROM scratch", "FROM debian:bookworm-slim", `run-time base "debian:bookworm-slim"`},
		{"single stage", "FROM scratch\n", "", "multi-stage"},
	} {
		t.Run("can fail/"+tc.name, func(t *testing.T) {
			edited := strings.Replace(df, tc.old, tc.new, 1)
			if edited == df {
				t.Fatalf("edit %q did not apply", tc.old)
			}
			got := strings.Join(dockerfileProblems(edited, mk, repoRoot), "\n")
			if !strings.Contains(got, tc.want) {
				t.Errorf("want a problem containing %q, got:\n%s", tc.want, got)
			}
		})
	}
}

// TestBinariesStatic checks that the binaries make build wrote (the ones
// the image copies onto a base without Go's C dependencies) are static.
// It needs them built: make sets WEFT_BIN_DIR (make test-priv, make e2e).
func TestBinariesStatic(t *testing.T) {
	dir := os.Getenv("WEFT_BIN_DIR")
	if dir == "" {
		t.Skip("WEFT_BIN_DIR not set: run make build, then WEFT_BIN_DIR=./bin go test ./etc/docker/ (make test-priv does)")
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(repoRoot, dir)
	}
	names := madeBinaries(read(t, filepath.Join(repoRoot, "Makefile")))
	for _, name := range names {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Skipf("%s is not built yet (WEFT_BIN_DIR=%s): run make build", name, dir)
		}
	}
	for _, name := range names {
		if err := image.CheckBinary(filepath.Join(dir, name), ""); err != nil {
			t.Errorf("not a static executable: %v", err)
		}
	}
	// The check can fail on a dynamic binary: image's tests prove it.
}
