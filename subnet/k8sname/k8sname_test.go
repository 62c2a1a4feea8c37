// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package k8sname

import (
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The API server's rules as the regular expressions of its documentation
// (k8s.io/apimachinery/pkg/util/validation): the reference the
// expression-free checks are compared with.
var (
	refName     = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	refLabel    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	refSub      = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	refPortName = regexp.MustCompile(`^[-a-z0-9]+$`)
	refLetter   = regexp.MustCompile(`[a-z]`)
)

func refDNSLabel(s string) bool { return len(s) <= 63 && refLabel.MatchString(s) }

func refDNSSubdomain(s string) bool { return len(s) <= 253 && refSub.MatchString(s) }

func refQualifiedName(s string) bool {
	name := s
	if prefix, rest, ok := strings.Cut(s, "/"); ok {
		if prefix == "" || !refDNSSubdomain(prefix) || strings.Contains(rest, "/") {
			return false
		}
		name = rest
	}
	return name != "" && len(name) <= 63 && refName.MatchString(name)
}

func refLabelValue(s string) bool { return len(s) <= 63 && (s == "" || refName.MatchString(s)) }

func refPortNameOK(s string) bool {
	return len(s) >= 1 && len(s) <= 15 && refPortName.MatchString(s) && refLetter.MatchString(s) &&
		!strings.Contains(s, "--") && s[0] != '-' && s[len(s)-1] != '-'
}

// TestAgainstReference compares every check's verdict with the reference
// on random strings over the characters that matter, and on edge cases.
func TestAgainstReference(t *testing.T) {
	edges := []string{"", "a", "A", "-", ".", "a-", "-a", "a.b", "a..b", ".a", "a.", "a/b", "/b", "a/", "a/b/c",
		"example.com/x", "Example.com/x", "a_b", "_a", "a_", "80", "http", "h--p", "web-8080", "a1b2c3d4e5f6g7h",
		"a1b2c3d4e5f6g7h8", strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a.", 126) + "a",
		strings.Repeat("a.", 127) + "a", strings.Repeat("b", 253) + "/x"}
	const alphabet = "abzAZ09-._/"
	r := rand.New(rand.NewPCG(1, 2))
	cases := slices.Clone(edges)
	for range 50000 {
		b := make([]byte, r.IntN(20))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		cases = append(cases, string(b))
	}
	for _, s := range cases {
		for _, c := range []struct {
			name string
			got  bool
			want bool
		}{
			{"DNSLabel", DNSLabel(s) == "", refDNSLabel(s)},
			{"DNSSubdomain", DNSSubdomain(s) == "", refDNSSubdomain(s)},
			{"QualifiedName", QualifiedName(s) == "", refQualifiedName(s)},
			{"LabelValue", LabelValue(s) == "", refLabelValue(s)},
			{"PortName", len(PortName(s)) == 0, refPortNameOK(s)},
		} {
			if c.got != c.want {
				t.Errorf("%s(%q): valid %v, the reference says %v", c.name, s, c.got, c.want)
			}
		}
	}
}

// TestPortNameMessages: every rule a port name breaks is reported, as the
// API server reports them.
func TestPortNameMessages(t *testing.T) {
	for s, want := range map[string][]string{
		"":                 {"must be no more than 15 characters", "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)", "must contain at least one letter (a-z)"},
		"-8080-":           {"must contain at least one letter (a-z)", "must not begin or end with a hyphen"},
		"Web":              {"must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"},
		"a--b":             {"must not contain consecutive hyphens"},
		"abcdefghijklmnop": {"must be no more than 15 characters"},
		"web":              nil,
	} {
		if got := PortName(s); !slices.Equal(got, want) {
			t.Errorf("PortName(%q) = %q, want %q", s, got, want)
		}
	}
}
