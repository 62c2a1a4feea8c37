// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weftnet/weft/daemon/policy"
	"github.com/weftnet/weft/daemon/status"
)

func TestParseExplainQuery(t *testing.T) {
	long := strings.Repeat("a", 64)
	for _, tc := range []struct {
		name, query string
		want        string // error substring; "" for valid
	}{
		{"pods", "from=x/a&to=x/b&proto=tcp&port=80", ""},
		{"addresses", "from=10.244.1.5&to=fd10:244::5&proto=UDP&port=65535", ""},
		{"sctp", "from=198.18.0.1&to=x/b&proto=sctp&port=1", ""},
		{"mapped v4", "from=::ffff:10.0.0.1&to=x/b&proto=tcp&port=80", ""},
		{"no query", "", "from: missing"},
		{"no to", "from=x/a&proto=tcp&port=80", "to: missing"},
		{"twice", "from=x/a&from=x/c&to=x/b&proto=tcp&port=80", "given 2 times"},
		{"unknown", "from=x/a&to=x/b&proto=tcp&port=80&node=n1", `unknown parameter "node"`},
		{"bad escape", "from=%zz&to=x/b&proto=tcp&port=80", "query"},
		{"semicolon", "from=x/a;to=x/b&proto=tcp&port=80", "query"},
		{"port 0", "from=x/a&to=x/b&proto=tcp&port=0", "want 1-65535"},
		{"port too big", "from=x/a&to=x/b&proto=tcp&port=65536", "want 1-65535"},
		{"port not a number", "from=x/a&to=x/b&proto=tcp&port=http", "want 1-65535"},
		{"no port", "from=x/a&to=x/b&proto=tcp", "want 1-65535"},
		{"icmp", "from=x/a&to=x/b&proto=icmp&port=80", "want tcp, udp or sctp"},
		{"bad namespace", "from=X_1/a&to=x/b&proto=tcp&port=80", `pod "X_1/a"`},
		{"bad pod name", "from=x/A..b&to=x/b&proto=tcp&port=80", `pod "x/A..b"`},
		{"empty pod name", "from=x/&to=x/b&proto=tcp&port=80", `pod "x/"`},
		{"two slashes", "from=x/a/b&to=x/b&proto=tcp&port=80", `pod "x/a/b"`},
		{"zone", "from=fe80::1%25eth0&to=x/b&proto=tcp&port=80", "without zone"},
		{"not an address", "from=10.244.1&to=x/b&proto=tcp&port=80", "neither a pod"},
		{"long end", "from=x/" + strings.Repeat("a", 400) + "&to=x/b&proto=tcp&port=80", "at most 317"},
		{"long query", "from=x/a&to=x/b&proto=tcp&port=80&" + strings.Repeat("x", 1100), "at most 1024"},
		{"long bad pod clipped", "from=x/" + strings.Repeat("A", 300) + "&to=x/b&proto=tcp&port=80", "…"},
		{"long bad end clipped", "from=" + strings.Repeat("1", 300) + "&to=x/b&proto=tcp&port=80", "…"},
		{"long unknown key clipped", long + long + "=1&from=x/a&to=x/b&proto=tcp&port=80", "…"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := parseExplainQuery(tc.query)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("want valid, got %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("want an error with %q, got %+v", tc.want, q)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
			if err != nil && len(err.Error()) > 400 {
				t.Errorf("error of %d bytes: untrusted input echoed without bound: %q", len(err.Error()), err)
			}
		})
	}
	q, err := parseExplainQuery("from=::ffff:10.0.0.1&to=x/b&proto=Udp&port=53")
	if err != nil || q.from.Addr != netip.MustParseAddr("10.0.0.1") || q.to.Namespace != "x" || q.to.Name != "b" || q.proto != policy.ProtoUDP || q.port != 53 {
		t.Fatalf("parsed %+v, %v", q, err)
	}
}

// TestHandlePolicyExplain: GET /policy/explain answers from the applied
// state: allowed by a rule, denied by isolation, open; bad queries are
// 400, unknown pods 404, no applied state 503.
func TestHandlePolicyExplain(t *testing.T) {
	d := &daemon{nodeName: "n1"}
	srv := httptest.NewServer(http.HandlerFunc(d.handlePolicyExplain))
	defer srv.Close()
	get := func(q string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + status.PolicyExplainPath + "?" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	if code, body := get("from=x/a&to=x/b&proto=tcp&port=80"); code != http.StatusServiceUnavailable || !strings.Contains(body, "no policy state applied yet") {
		t.Fatalf("before any apply: %d %s", code, body)
	}

	// x/b-from-a: UDP 80 from app=a to app=b.
	udp, port := corev1.ProtocolUDP, intstr.FromInt32(80)
	pol := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "b-from-a"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "b"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &port}},
			}},
		},
	}
	in := policy.Input{Node: "n1", Policies: []*networkingv1.NetworkPolicy{pol}, Pods: []policy.Pod{
		{Namespace: "x", Name: "a", Labels: map[string]string{"app": "a"}, Node: "n2", IPs: []netip.Addr{netip.MustParseAddr("10.244.2.10"), netip.MustParseAddr("fd10:244:0:2::10")}},
		{Namespace: "x", Name: "b", Labels: map[string]string{"app": "b"}, Node: "n1", IPs: []netip.Addr{netip.MustParseAddr("10.244.1.10"), netip.MustParseAddr("fd10:244:0:1::10")}},
		{Namespace: "x", Name: "c", Labels: map[string]string{"app": "c"}, Node: "n1", IPs: []netip.Addr{netip.MustParseAddr("10.244.1.11")}},
	}}
	d.setAppliedPolicy(in, policy.Compile(in), status.Policy{LastApply: time.Now(), Revision: 7, EndpointRevision: 9})

	explain := func(q string) *status.PolicyExplanation {
		t.Helper()
		code, body := get(q)
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", q, code, body)
		}
		var out status.PolicyExplanation
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatal(err)
		}
		return &out
	}
	// a → b UDP 80: both families, ingress on n1 allowed by the rule; a
	// is not n1's, so no egress verdict.
	out := explain("from=x/a&to=x/b&proto=udp&port=80")
	if out.Node != "n1" || out.Revision != 7 || out.EndpointRevision != 9 || len(out.Packets) != 2 || out.From.Node != "n2" || out.To.Pod != "x/b" {
		t.Fatalf("a → b: %+v", out)
	}
	for _, p := range out.Packets {
		in := p.Ingress
		if p.Egress != nil || in == nil || !in.Allowed || !in.Isolated || in.Rule == nil || in.Rule.Policy != "x/b-from-a" || in.Rule.Direction != "ingress" || in.Rule.Index != 0 {
			t.Fatalf("a → b %s → %s: egress %+v ingress %+v", p.Src, p.Dst, p.Egress, in)
		}
	}
	// a → b TCP 80: denied, selected by the policy, the default deny named.
	out = explain("from=10.244.2.10&to=x/b&proto=tcp&port=80")
	if len(out.Packets) != 1 || out.From.Pod != "x/a" {
		t.Fatalf("a → b tcp: %+v", out)
	}
	if in := out.Packets[0].Ingress; in == nil || in.Allowed || !in.Isolated || in.Rule != nil || len(in.SelectedBy) != 1 || in.SelectedBy[0] != "x/b-from-a" || len(in.Rules) != 1 {
		t.Fatalf("a → b tcp: ingress %+v", in)
	}
	// c → b on one node: egress of c open, ingress of b denied.
	out = explain("from=x/c&to=x/b&proto=udp&port=80")
	if p := out.Packets[0]; len(out.Packets) != 1 || p.Egress == nil || !p.Egress.Allowed || p.Egress.Isolated || p.Ingress == nil || p.Ingress.Allowed {
		t.Fatalf("c → b: %+v", out.Packets)
	}
	// An address outside the cluster to c: c is open.
	out = explain("from=198.18.7.7&to=x/c&proto=tcp&port=22")
	if p := out.Packets[0]; out.From.Pod != "" || p.Ingress == nil || !p.Ingress.Allowed || p.Ingress.Isolated {
		t.Fatalf("outside → c: %+v", out.Packets)
	}

	for q, want := range map[string]int{
		"from=x/a&to=x/b&proto=tcp&port=0":               http.StatusBadRequest,
		"from=x/nobody&to=x/b&proto=tcp&port=80":         http.StatusNotFound,
		"from=fd10:244:0:2::10&to=x/c&proto=tcp&port=80": http.StatusUnprocessableEntity, // c has no IPv6
	} {
		if code, body := get(q); code != want {
			t.Errorf("%s: %d %s, want %d", q, code, body, want)
		}
	}
}
