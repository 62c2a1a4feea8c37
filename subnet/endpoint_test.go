// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package subnet

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// TestPodIdentityValidate checks the Kubernetes name and label rules at
// their boundaries, and weft's bounds on labels.
func TestPodIdentityValidate(t *testing.T) {
	a := func(n int) string { return strings.Repeat("a", n) }
	many := map[string]string{}
	for i := range MaxLabels + 1 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	big := map[string]string{}
	for i := range 40 {
		big[fmt.Sprintf("%s.example/k%d", a(200), i)] = a(63)
	}
	for _, c := range []struct {
		name string
		id   PodIdentity
		err  string // "" for valid
	}{
		{"zero", PodIdentity{}, ""},
		{"plain", PodIdentity{Namespace: "x", Name: "a"}, ""},
		{"namespace 63", PodIdentity{Namespace: a(63), Name: "a"}, ""},
		{"namespace 64", PodIdentity{Namespace: a(64), Name: "a"}, "no more than 63"},
		{"namespace with dot", PodIdentity{Namespace: "a.b", Name: "a"}, "RFC 1123 label"},
		{"namespace ends in dash", PodIdentity{Namespace: "a-", Name: "a"}, "RFC 1123 label"},
		{"name subdomain 253", PodIdentity{Namespace: "x", Name: a(63) + "." + a(63) + "." + a(63) + "." + a(61)}, ""},
		{"name 254", PodIdentity{Namespace: "x", Name: a(63) + "." + a(63) + "." + a(63) + "." + a(62)}, "no more than 253"},
		{"name empty part", PodIdentity{Namespace: "x", Name: "a..b"}, "RFC 1123 subdomain"},
		{"name uppercase", PodIdentity{Namespace: "x", Name: "A"}, "RFC 1123 subdomain"},
		{"name only", PodIdentity{Name: "a"}, "both or neither"},
		{"labels only", PodIdentity{Labels: map[string]string{"a": "b"}}, "both or neither"},
		{"labels good", PodIdentity{Namespace: "x", Name: "a", Labels: map[string]string{
			"app": "Web_1.x", "kubernetes.io/metadata.name": "x", "k": "", a(63): a(63), "A-b_c.D": "v"}}, ""},
		{"key name 64", PodIdentity{Namespace: "x", Name: "a", Labels: map[string]string{a(64): ""}}, "name part must be no more than 63"},
		{"key empty", PodIdentity{Namespace: "x", Name: "a", Labels: map[string]string{"": "v"}}, "name part must be non-empty"},
		{"key empty prefix", PodIdentity{Namespace: "x", Name: "a", Labels: map[string]string{"/a": "v"}}, "prefix part must be non-empty"},
		{"key bad prefix", PodIdentity{Namespace: "x", Name: "a", Labels: map[string]string{"Ex.com/a": "v"}}, "prefix part"},
		{"key two slashes", PodIdentity{Namespace: "x", Name: "a", Labels: map[string]string{"a/b/c": "v"}}, "qualified name"},
		{"value 64", PodIdentity{Namespace: "x", Name: "a", Labels: map[string]string{"k": a(64)}}, "no more than 63"},
		{"value starts with dot", PodIdentity{Namespace: "x", Name: "a", Labels: map[string]string{"k": ".a"}}, "valid label"},
		{"value with space", PodIdentity{Namespace: "x", Name: "a", Labels: map[string]string{"k": "a b"}}, "valid label"},
		{"too many labels", PodIdentity{Namespace: "x", Name: "a", Labels: many}, "at most 64"},
		{"labels too large", PodIdentity{Namespace: "x", Name: "a", Labels: big}, "at most 8192 are allowed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.id.Validate()
			switch {
			case c.err == "" && err != nil:
				t.Errorf("valid identity refused: %v", err)
			case c.err != "" && err == nil:
				t.Errorf("invalid identity accepted, want an error with %q", c.err)
			case c.err != "" && !strings.Contains(err.Error(), c.err):
				t.Errorf("error %q, want one with %q", err, c.err)
			}
		})
	}
}

// TestCheckEndpoint: an endpoint's addresses must lie in its node's
// leased subnets; another node's subnet is refused.
func TestCheckEndpoint(t *testing.T) {
	leases := []Lease{
		{Subnet: netip.MustParsePrefix("10.244.1.0/24"), IPv6Subnet: netip.MustParsePrefix("fd10:244:0:1::/64"), Record: Record{NodeName: "n1"}},
		{Subnet: netip.MustParsePrefix("10.244.2.0/24"), Record: Record{NodeName: "n2"}},
	}
	ep := func(node, v4, v6 string) Endpoint {
		e := Endpoint{Node: node, Key: "weft0000000a", PodIdentity: PodIdentity{Namespace: "x", Name: "a"}}
		if v4 != "" {
			e.IPv4 = netip.MustParseAddr(v4)
		}
		if v6 != "" {
			e.IPv6 = netip.MustParseAddr(v6)
		}
		return e
	}
	for _, c := range []struct {
		name string
		e    Endpoint
		err  string
	}{
		{"own dual-stack", ep("n1", "10.244.1.5", "fd10:244:0:1::5"), ""},
		{"own IPv4", ep("n2", "10.244.2.5", ""), ""},
		{"another node's IPv4", ep("n2", "10.244.1.5", ""), "outside node \"n2\""},
		{"another node's IPv6", ep("n1", "10.244.1.5", "fd10:244:0:2::5"), "ipv6 fd10:244:0:2::5 is outside"},
		{"no lease", ep("n3", "10.244.3.5", ""), "holds no lease"},
		{"no address", ep("n1", "", ""), "without an address"},
		{"IPv6 in the IPv4 field", ep("n1", "fd10:244:0:1::5", ""), "not a unicast IPv4"},
		{"no pod", Endpoint{Node: "n1", Key: "k", IPv4: netip.MustParseAddr("10.244.1.5")}, "without a pod"},
		{"bad label", func() Endpoint {
			e := ep("n1", "10.244.1.5", "")
			e.Labels = map[string]string{"k": "-"}
			return e
		}(), "valid label"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// The same answer from the leases and from their index.
			for _, err := range []error{CheckEndpoint(c.e, leases), IndexLeases(leases).CheckEndpoint(c.e)} {
				switch {
				case c.err == "" && err != nil:
					t.Errorf("refused: %v", err)
				case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
					t.Errorf("error %v, want one with %q", err, c.err)
				}
			}
		})
	}
}
