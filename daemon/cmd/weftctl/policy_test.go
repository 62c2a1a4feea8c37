// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func (e *env) policy(stdin string, args ...string) (string, error) {
	return e.run(runPolicy, 1, args, stdin, false)
}

func (e *env) namespace(args ...string) (string, error) {
	return e.run(runNamespace, 1, args, "", false)
}

const twoPolicies = `# two objects
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web
spec:
  podSelector:
    matchLabels: {app: web}
  ingress:
  - from:
    - namespaceSelector:
        matchLabels: {team: a}
    ports:
    - port: 80
---
{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
 "metadata": {"name": "deny", "namespace": "x"}, "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}
`

func TestPolicyApplyGetListDelete(t *testing.T) {
	e := newEnv(t)
	out, err := e.policy(twoPolicies, "apply", "-f", "-")
	if err != nil || out != "networkpolicy default/web applied\nnetworkpolicy x/deny applied\n" {
		t.Fatalf("apply: %q, %v", out, err)
	}
	out, err = e.policy("", "get", "web", "-o", "json")
	if err != nil || !strings.Contains(out, `"namespace": "default"`) || !strings.Contains(out, `"team": "a"`) {
		t.Errorf("get web -o json: %q, %v", out, err)
	}
	out, err = e.policy("", "get", "deny", "-n", "x")
	if err != nil || !strings.Contains(out, "kind: NetworkPolicy") || !strings.Contains(out, "- Egress") {
		t.Errorf("get deny -n x: %q, %v", out, err)
	}
	if _, err := e.policy("", "get", "deny"); err == nil || !strings.Contains(err.Error(), "policy default/deny: not found") {
		t.Errorf("get deny in default: %v", err)
	}
	out, err = e.policy("", "list", "-A")
	if err != nil || !strings.Contains(out, "default    web   app=web       Ingress") || !strings.Contains(out, "x          deny  <none>        Egress") {
		t.Errorf("list -A:\n%s%v", out, err)
	}
	out, err = e.policy("", "list", "-n", "x")
	if err != nil || strings.Contains(out, "web") || !strings.Contains(out, "deny") {
		t.Errorf("list -n x:\n%s%v", out, err)
	}
	// A v1 List from a file, namespace from -n.
	dir := t.TempDir()
	list := filepath.Join(dir, "list.yaml")
	os.WriteFile(list, []byte("apiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.k8s.io/v1\n  kind: NetworkPolicy\n  metadata: {name: l1}\n  spec: {podSelector: {}}\n"), 0o644)
	if out, err := e.policy("", "apply", "-f", list, "-n", "y"); err != nil || out != "networkpolicy y/l1 applied\n" {
		t.Errorf("apply a List: %q, %v", out, err)
	}
	// A symbolic link to a regular file is followed, as kubectl does.
	link := filepath.Join(dir, "link.yaml")
	os.Symlink(list, link)
	if _, err := e.policy("", "apply", "-f", link, "-n", "y"); err != nil {
		t.Errorf("apply through a link: %v", err)
	}
	if out, err := e.policy("", "delete", "l1", "-n", "y"); err != nil || out != "networkpolicy y/l1 deleted\n" {
		t.Errorf("delete: %q, %v", out, err)
	}
	if _, err := e.policy("", "delete", "l1", "-n", "y"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("delete again: %v", err)
	}
	for _, sub := range []string{"get", "delete"} {
		if _, err := e.policy("", sub, "x/web"); err == nil || !strings.Contains(err.Error(), `metadata.name: FieldValueInvalid: "x/web"`) {
			t.Errorf("%s of a name that is no policy name: %v", sub, err)
		}
	}
}

// Refused input names the field path (or what is wrong) and writes
// nothing, not even the valid objects of the same input.
func TestPolicyApplyRefused(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte(strings.Repeat("#", maxPolicyFile+1)), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	valid := "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: ok}\nspec: {podSelector: {}}\n---\n"
	for _, c := range []struct {
		name, stdin string
		args        []string
		want        string
	}{
		{"invalid cidr", valid + "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad}\nspec:\n  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.0/33}\n",
			nil, "object 2, NetworkPolicy default/bad is invalid, nothing written:\n  spec.ingress[0].from[0].ipBlock.cidr: FieldValueInvalid"},
		{"bad port", valid + `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"p"},"spec":{"podSelector":{},"ingress":[{"ports":[{"port":70000}]}]}}`,
			nil, "spec.ingress[0].ports[0].port: FieldValueInvalid"},
		{"unknown kind", valid + "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n", nil, `document 2: kind "Pod" of apiVersion "v1" is not something weftctl policy applies`},
		{"old apiVersion", "apiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata: {name: p}\n", nil, `kind "NetworkPolicy" of apiVersion "extensions/v1beta1"`},
		{"no kind", "metadata: {name: p}\n", nil, "apiVersion and kind are required"},
		{"unknown field", valid + "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {podSelector: {}, ingres: []}\n", nil, `strict decoding error`},
		{"duplicate field", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nmetadata: {name: q}\nspec: {podSelector: {}}\n", nil, `strict decoding error`},
		{"namespace mismatch", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}}\n", []string{"-n", "y"}, "does not match the namespace given with -n (y)"},
		{"empty", "# nothing\n---\n", nil, "no objects in the input"},
		{"not yaml", "{[", nil, "document 1:"},
		{"oversize file", "", []string{"-f", big}, "more than 16777216"},
		{"fifo", "", []string{"-f", fifo}, "is not a regular file"},
		{"missing file", "", []string{"-f", filepath.Join(dir, "none")}, "no such file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"apply"}
			if !slices.Contains(c.args, "-f") {
				args = append(args, "-f", "-")
			}
			_, err := e.policy(c.stdin, append(args, c.args...)...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v\nwant an error containing %q", err, c.want)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := e.cli.Get(ctx, e.prefix+"/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 0 {
		t.Errorf("refused input wrote %d keys: %v", len(resp.Kvs), err)
	}
}

func TestNamespaceLabelList(t *testing.T) {
	e := newEnv(t)
	if out, err := e.namespace("list"); err != nil || !strings.Contains(out, "no namespace labels") {
		t.Errorf("empty list: %q, %v", out, err)
	}
	out, err := e.namespace("label", "x", "team=a", "env=prod")
	if err != nil || out != "namespace x labeled: env=prod,kubernetes.io/metadata.name=x,team=a\n" {
		t.Fatalf("label: %q, %v", out, err)
	}
	if _, err := e.namespace("label", "x", "team=b"); err == nil || !strings.Contains(err.Error(), "give --overwrite") {
		t.Errorf("changed a value without --overwrite: %v", err)
	}
	out, err = e.namespace("label", "x", "env-", "team=b", "--overwrite")
	if err != nil || out != "namespace x labeled: kubernetes.io/metadata.name=x,team=b\n" {
		t.Errorf("relabel: %q, %v", out, err)
	}
	out, err = e.namespace("list")
	if err != nil || out != "NAME  LABELS\nx     kubernetes.io/metadata.name=x,team=b\n" {
		t.Errorf("list:\n%s%v", out, err)
	}
	for args, want := range map[string]string{
		"x kubernetes.io/metadata.name=y": "must be the namespace's name",
		"x kubernetes.io/metadata.name-":  "cannot be removed",
		"x bad!key=v":                     "metadata.labels: FieldValueInvalid",
		"X_Y a=b":                         `namespace "X_Y"`,
		"x team":                          "neither KEY=VALUE nor KEY-",
		"x":                               "give the namespace and at least one",
		"x a=b a-":                        "both set and removed",
	} {
		if _, err := e.namespace(append([]string{"label"}, strings.Fields(args)...)...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("label %s: %v, want %q", args, err, want)
		}
	}
}
