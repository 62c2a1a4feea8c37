// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package docs

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var (
	mdLink    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	mdHeading = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*$`)
	fence     = regexp.MustCompile("(?ms)^```.*?^```")
)

// slug turns a Markdown heading into its anchor as GitHub renders it:
// lower case, punctuation other than '-' and '_' dropped, spaces as '-'.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}

// anchors returns the heading anchors of a Markdown text.
func anchors(text string) []string {
	var out []string
	for _, m := range mdHeading.FindAllStringSubmatch(fence.ReplaceAllString(text, ""), -1) {
		out = append(out, slug(strings.ReplaceAll(m[1], "`", "")))
	}
	return out
}

// brokenLinks checks the relative links of the Markdown files under root
// (and the extra files): the target file must exist and an anchor must name
// one of its headings. External links (with a scheme) are not followed.
func brokenLinks(root string, extra ...string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
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
	files = append(files, extra...)
	var bad []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		text := fence.ReplaceAllString(string(b), "")
		for _, m := range mdLink.FindAllStringSubmatch(text, -1) {
			link := m[1]
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			target, anchor, _ := strings.Cut(link, "#")
			path := f
			if target != "" {
				path = filepath.Join(filepath.Dir(f), target)
			}
			tb, err := os.ReadFile(path)
			if err != nil {
				if st, serr := os.Stat(path); serr == nil && st.IsDir() && anchor == "" {
					continue
				}
				bad = append(bad, fmt.Sprintf("%s: link %s: %s does not exist", f, link, path))
				continue
			}
			if anchor != "" && strings.HasSuffix(path, ".md") && !slices.Contains(anchors(string(tb)), anchor) {
				bad = append(bad, fmt.Sprintf("%s: link %s: no heading with anchor #%s in %s", f, link, anchor, path))
			}
		}
	}
	slices.Sort(bad)
	return bad, nil
}

// TestLinks checks every relative link in docs/ and the README.
func TestLinks(t *testing.T) {
	bad, err := brokenLinks(".", filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Errorf("broken links:\n%s", strings.Join(bad, "\n"))
	}
}

func TestLinksCheckCanFail(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.md"), []byte("# The unit's choices\n\n[ok](b.md#two-words) [self](#the-units-choices) [gone](c.md) [anchor](b.md#three) [web](https://example.com/x)\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "b.md"), []byte("## Two words\n\n```\n# three\n```\n"), 0o644)
	bad, err := brokenLinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) != 2 || !strings.Contains(bad[0], "b.md#three") || !strings.Contains(bad[1], "c.md does not exist") {
		t.Errorf("brokenLinks = %q, want the c.md and #three links only", bad)
	}
}
