// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e && linux

package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/weftnet/weft/daemon/policy"
	"github.com/weftnet/weft/e2e/kubetest"
)

// validationTablePath is the table daemon/policy's TestValidateTable checks
// policy.Validate against.
var validationTablePath = filepath.Join("..", "daemon", "policy", "testdata", "validation.json")

// policyValidationCase is one entry of the validation table.
type policyValidationCase struct {
	Name   string          `json:"name"`
	Valid  bool            `json:"valid"`
	Object json.RawMessage `json:"object"`
	Errors []struct {
		Field string `json:"field"`
		Type  string `json:"type"`
	} `json:"errors"`
}

// verdict is one answer about an object: accepted or not, and the set of
// causes ("field type"), sorted and without repeats.
type verdict struct {
	valid  bool
	causes []string
}

func (v verdict) String() string {
	if v.valid {
		return "valid"
	}
	return fmt.Sprintf("invalid %q", v.causes)
}

func (v verdict) equal(o verdict) bool { return v.valid == o.valid && slices.Equal(v.causes, o.causes) }

func newVerdict(valid bool, causes []string) verdict {
	slices.Sort(causes)
	return verdict{valid: valid, causes: slices.Compact(causes)}
}

// TestPolicyValidationAgainstAPIServer replays the NetworkPolicy
// validation table on a real kube-apiserver: each object, exactly as the
// table holds it, is POSTed to namespace default with dryRun=All, and the
// server's answer (accepted, or Invalid with its StatusCause list) must be
// the one the table records and the one policy.Validate gives: the same
// verdict and the same set of (field path, cause type) pairs. The server
// is the authority; any difference fails the case, naming all three
// answers. Finally no object of the table may have been stored.
func TestPolicyValidationAgainstAPIServer(t *testing.T) {
	raw, err := os.ReadFile(validationTablePath)
	if err != nil {
		t.Fatal(err)
	}
	var tab struct {
		Namespace string                 `json:"namespace"`
		Cases     []policyValidationCase `json:"cases"`
	}
	if err := json.Unmarshal(raw, &tab); err != nil {
		t.Fatalf("%s: %v", validationTablePath, err)
	}
	if tab.Namespace != "default" || len(tab.Cases) == 0 {
		t.Fatalf("%s: namespace %q with %d cases, want namespace default and cases", validationTablePath, tab.Namespace, len(tab.Cases))
	}
	names := map[string]bool{}
	for _, c := range tab.Cases {
		if names[c.Name] {
			t.Fatalf("%s: case %q twice", validationTablePath, c.Name)
		}
		names[c.Name] = true
	}

	kc := kubetest.Start(t, kubetest.Options{})
	t.Logf("kube-apiserver: start → /readyz %s", kc.APIServerReady.Round(time.Millisecond))
	// The server's warnings (a non-canonical IPv6 CIDR is accepted with
	// one) go to the case's log, not to klog.
	warnings := &warningLog{}
	cfg := rest.CopyConfig(kc.Config)
	cfg.WarningHandler = warnings
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.CloseIdleConnections)
	cs, err := kubernetes.NewForConfigAndClient(cfg, hc)
	if err != nil {
		t.Fatal(err)
	}
	rc := cs.NetworkingV1().RESTClient()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	var failed int
	for _, c := range tab.Cases {
		ok := t.Run(c.Name, func(t *testing.T) {
			table := tableVerdict(c)
			if c.Valid != (len(c.Errors) == 0) {
				t.Fatalf("table: valid %v with %d errors listed", c.Valid, len(c.Errors))
			}
			server, err := serverVerdict(ctx, rc, tab.Namespace, c.Object)
			if err != nil {
				t.Fatalf("server: %v", err)
			}
			for _, w := range warnings.take() {
				t.Logf("server warning: %s", w)
			}
			weft, err := validateVerdict(c.Object, tab.Namespace)
			if err != nil {
				t.Fatal(err)
			}
			if !server.equal(table) {
				t.Errorf("the API server and the table disagree:\n  server: %s\n  table:  %s\n  policy.Validate: %s", server, table, weft)
			}
			if !server.equal(weft) {
				t.Errorf("the API server and policy.Validate disagree:\n  server: %s\n  policy.Validate: %s\n  table:  %s", server, weft, table)
			}
		})
		if !ok {
			failed++
		}
	}
	t.Logf("%d cases replayed on the API server, %d failed", len(tab.Cases), failed)

	// Dry run means nothing was stored, not even the valid objects.
	var list networkingv1.NetworkPolicyList
	if err := rc.Get().Namespace(tab.Namespace).Resource("networkpolicies").Do(ctx).Into(&list); err != nil {
		t.Fatalf("list networkpolicies: %v", err)
	}
	if len(list.Items) != 0 {
		t.Errorf("dry-run creates stored %d NetworkPolicies in %s", len(list.Items), tab.Namespace)
	}
}

// warningLog keeps the warnings of the server's answers until taken.
type warningLog struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warningLog) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

func (w *warningLog) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.msgs
	w.msgs = nil
	return m
}

func tableVerdict(c policyValidationCase) verdict {
	var causes []string
	for _, e := range c.Errors {
		causes = append(causes, e.Field+" "+e.Type)
	}
	return newVerdict(c.Valid, causes)
}

// serverVerdict POSTs the object's bytes unchanged (no round trip through
// Go types that could drop or normalise a field) as a dry-run create. An
// answer other than success or Invalid (a decode error, a conflict, a
// server failure) is not a verdict on the object and is returned as an
// error.
func serverVerdict(ctx context.Context, rc rest.Interface, ns string, obj json.RawMessage) (verdict, error) {
	err := rc.Post().
		Namespace(ns).
		Resource("networkpolicies").
		Param("dryRun", metav1.DryRunAll).
		SetHeader("Content-Type", "application/json").
		Body([]byte(obj)).
		Do(ctx).
		Error()
	if err == nil {
		return newVerdict(true, nil), nil
	}
	var status apierrors.APIStatus
	if !apierrors.IsInvalid(err) || !errors.As(err, &status) {
		return verdict{}, fmt.Errorf("dry-run create: %w (want success or Invalid)", err)
	}
	d := status.Status().Details
	if d == nil || len(d.Causes) == 0 {
		return verdict{}, fmt.Errorf("dry-run create: Invalid without causes: %w", err)
	}
	var causes []string
	for _, c := range d.Causes {
		causes = append(causes, c.Field+" "+string(c.Type))
	}
	return newVerdict(false, causes), nil
}

// validateVerdict decodes the object as weft does and asks policy.Validate,
// with the namespace the API server would take from the request URL.
func validateVerdict(obj json.RawMessage, ns string) (verdict, error) {
	var np networkingv1.NetworkPolicy
	if err := json.Unmarshal(obj, &np); err != nil {
		return verdict{}, fmt.Errorf("decode object: %w", err)
	}
	if np.Namespace == "" {
		np.Namespace = ns
	}
	errs := policy.Validate(&np)
	var causes []string
	for _, e := range errs {
		causes = append(causes, e.Field+" "+string(e.Type))
	}
	return newVerdict(len(errs) == 0, causes), nil
}
