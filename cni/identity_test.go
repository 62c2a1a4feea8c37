// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package cni

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/weftnet/weft/subnet"
)

// TestParsePodIdentity covers CNI_ARGS and args.cni.labels parsing; the
// name and label rules themselves are tested in package subnet.
func TestParsePodIdentity(t *testing.T) {
	for _, c := range []struct {
		name    string
		cniArgs string
		args    string
		want    subnet.PodIdentity
		err     string
		config  bool
	}{
		{name: "none"},
		{name: "other keys only", cniArgs: "IgnoreUnknown=1;K8S_POD_UID=1"},
		{name: "kubernetes", cniArgs: "IgnoreUnknown=1;K8S_POD_NAMESPACE=x;K8S_POD_NAME=a;K8S_POD_INFRA_CONTAINER_ID=c",
			args: `{"cni":{"labels":[{"key":"app","value":"web"}],"ips":["10.0.0.1"]},"other":1}`,
			want: subnet.PodIdentity{Namespace: "x", Name: "a", Labels: map[string]string{"app": "web"}}},
		{name: "empty labels", cniArgs: "K8S_POD_NAMESPACE=x;K8S_POD_NAME=a", args: `{"cni":{"labels":[]}}`,
			want: subnet.PodIdentity{Namespace: "x", Name: "a", Labels: map[string]string{}}},
		{name: "args null", cniArgs: "K8S_POD_NAMESPACE=x;K8S_POD_NAME=a", args: `null`, want: subnet.PodIdentity{Namespace: "x", Name: "a"}},
		{name: "pair without =", cniArgs: "K8S_POD_NAMESPACE", err: "not KEY=VALUE"},
		{name: "empty name", cniArgs: "K8S_POD_NAMESPACE=x;K8S_POD_NAME=", err: "must both be given"},
		{name: "oversized", cniArgs: strings.Repeat("A=b;", 5000), err: "at most 16384"},
		{name: "args not an object", cniArgs: "K8S_POD_NAMESPACE=x;K8S_POD_NAME=a", args: `[]`, err: "want an object", config: true},
		{name: "label value not a string", cniArgs: "K8S_POD_NAMESPACE=x;K8S_POD_NAME=a", args: `{"cni":{"labels":[{"key":"a","value":1}]}}`, err: "cni.labels[0]", config: true},
		{name: "label unknown field", cniArgs: "K8S_POD_NAMESPACE=x;K8S_POD_NAME=a", args: `{"cni":{"labels":[{"key":"a","value":"b","x":1}]}}`, err: "cni.labels[0]", config: true},
		{name: "label without value", cniArgs: "K8S_POD_NAMESPACE=x;K8S_POD_NAME=a", args: `{"cni":{"labels":[{"key":"a"}]}}`, err: "cni.labels[0]", config: true},
		{name: "too many labels", cniArgs: "K8S_POD_NAMESPACE=x;K8S_POD_NAME=a",
			args: `{"cni":{"labels":[` + strings.TrimSuffix(strings.Repeat(`{"key":"a","value":"b"},`, 65), ",") + `]}}`, err: "65 labels", config: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParsePodIdentity(c.cniArgs, json.RawMessage(c.args))
			if c.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(c.want, got); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
				return
			}
			var ie *IdentityError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), c.err) || ie.Config != c.config {
				t.Errorf("error %#v, want an IdentityError (config %v) with %q", err, c.config, c.err)
			}
		})
	}
}
