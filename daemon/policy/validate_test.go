// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package policy

import (
	"encoding/json"
	"os"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	networkingv1 "k8s.io/api/networking/v1"
)

// validationTable is the shape of testdata/validation.json, which a test
// against a real kube-apiserver replays too.
type validationTable struct {
	Namespace string `json:"namespace"`
	Cases     []struct {
		Name   string          `json:"name"`
		Valid  bool            `json:"valid"`
		Object json.RawMessage `json:"object"`
		Errors []struct {
			Field string    `json:"field"`
			Type  ErrorType `json:"type"`
		} `json:"errors"`
	} `json:"cases"`
}

func TestValidateTable(t *testing.T) {
	raw, err := os.ReadFile("testdata/validation.json")
	if err != nil {
		t.Fatal(err)
	}
	var tab validationTable
	if err := json.Unmarshal(raw, &tab); err != nil {
		t.Fatalf("decode table: %v", err)
	}
	if len(tab.Cases) < 30 {
		t.Fatalf("table has %d cases, want the full table", len(tab.Cases))
	}
	for _, c := range tab.Cases {
		t.Run(c.Name, func(t *testing.T) {
			var np networkingv1.NetworkPolicy
			if err := json.Unmarshal(c.Object, &np); err != nil {
				t.Fatalf("decode object: %v", err)
			}
			if np.Namespace == "" {
				np.Namespace = tab.Namespace
			}
			errs := Validate(&np)
			if (len(errs) == 0) != c.Valid {
				t.Fatalf("valid = %v, want %v (errors: %v)", len(errs) == 0, c.Valid, errs)
			}
			got := map[string]bool{}
			for _, e := range errs {
				got[e.Field+" "+string(e.Type)] = true
			}
			want := map[string]bool{}
			for _, e := range c.Errors {
				want[e.Field+" "+string(e.Type)] = true
			}
			if d := cmp.Diff(keys(want), keys(got)); d != "" {
				t.Errorf("causes (-want +got):\n%s\nall: %v", d, errs)
			}
		})
	}
}

func keys(m map[string]bool) []string {
	out := []string{}
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestValidateNamespaceRequired(t *testing.T) {
	np := &networkingv1.NetworkPolicy{}
	np.Name = "x"
	errs := Validate(np)
	if len(errs) != 1 || errs[0].Field != "metadata.namespace" || errs[0].Type != ErrRequired {
		t.Fatalf("errors = %v, want metadata.namespace required", errs)
	}
}
