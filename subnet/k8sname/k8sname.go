// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package k8sname checks the names Kubernetes objects carry (RFC 1123
// labels and subdomains, label keys and values, port names) by the API
// server's rules, with its messages. Each check returns "" for a valid
// name, else what is wrong.
//
// It is a leaf with no regular expressions: the CNI plugin runs these
// checks in every process it starts, and weftctl, weftd and the policy
// validator share them, so that a name the plugin accepts is one the
// validator (proven against a real kube-apiserver) accepts.
package k8sname

import "strings"

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func isAlnum(c byte) bool { return isLowerAlnum(c) || c >= 'A' && c <= 'Z' }

// DNSLabel checks an RFC 1123 label (a namespace's name): at most 63
// lowercase alphanumerics or '-', starting and ending with an
// alphanumeric.
func DNSLabel(s string) string {
	if len(s) > 63 {
		return "must be no more than 63 characters"
	}
	if !dnsLabelOK(s) {
		return "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
	}
	return ""
}

func dnsLabelOK(s string) bool {
	if s == "" || !isLowerAlnum(s[0]) || !isLowerAlnum(s[len(s)-1]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isLowerAlnum(s[i]) && s[i] != '-' {
			return false
		}
	}
	return true
}

// DNSSubdomain checks an RFC 1123 subdomain (most objects' names): at most
// 253 characters, dot-separated RFC 1123 labels.
func DNSSubdomain(s string) string {
	if len(s) > 253 {
		return "must be no more than 253 characters"
	}
	for part := range strings.SplitSeq(s, ".") {
		if !dnsLabelOK(part) {
			return "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
		}
	}
	return ""
}

// nameOK reports whether s is a label name or value: alphanumerics, '-',
// '_' and '.', starting and ending with an alphanumeric.
func nameOK(s string) bool {
	if s == "" || !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

// QualifiedName checks a label key: an optional DNS-subdomain prefix and
// "/", then a name of at most 63 characters.
func QualifiedName(s string) string {
	name := s
	if i := strings.IndexByte(s, '/'); i >= 0 {
		prefix := s[:i]
		name = s[i+1:]
		if strings.Contains(name, "/") {
			return "a qualified name must consist of alphanumeric characters, '-', '_' or '.', with an optional DNS subdomain prefix and '/'"
		}
		if prefix == "" {
			return "prefix part must be non-empty"
		}
		if msg := DNSSubdomain(prefix); msg != "" {
			return "prefix part " + msg
		}
	}
	switch {
	case name == "":
		return "name part must be non-empty"
	case len(name) > 63:
		return "name part must be no more than 63 characters"
	case !nameOK(name):
		return "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
	}
	return ""
}

// LabelValue checks a label value: empty, or at most 63 alphanumerics,
// '-', '_' or '.', starting and ending with an alphanumeric.
func LabelValue(s string) string {
	switch {
	case len(s) > 63:
		return "must be no more than 63 characters"
	case s != "" && !nameOK(s):
		return "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
	}
	return ""
}

// PortName checks an IANA service name (a named port) and returns every
// rule it breaks, in the API server's order and words (it reports each).
func PortName(s string) []string {
	var msgs []string
	if len(s) < 1 || len(s) > 15 {
		msgs = append(msgs, "must be no more than 15 characters")
	}
	chars, letter := true, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		chars = chars && (isLowerAlnum(c) || c == '-')
		letter = letter || c >= 'a' && c <= 'z'
	}
	if !chars || s == "" {
		msgs = append(msgs, "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
	}
	if !letter {
		msgs = append(msgs, "must contain at least one letter (a-z)")
	}
	if strings.Contains(s, "--") {
		msgs = append(msgs, "must not contain consecutive hyphens")
	}
	if len(s) > 0 && (s[0] == '-' || s[len(s)-1] == '-') {
		msgs = append(msgs, "must not begin or end with a hyphen")
	}
	return msgs
}
