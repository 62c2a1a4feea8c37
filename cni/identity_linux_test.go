// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package cni_test

import (
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/go-cmp/cmp"

	"github.com/weftnet/weft/cni"
	"github.com/weftnet/weft/cni/antispoof"
	"github.com/weftnet/weft/e2e/netnstest"
	"github.com/weftnet/weft/subnet"
)

// TestPodIdentity runs the real plugin: the pod's namespace and name from
// CNI_ARGS and its labels from the config's args.cni.labels land in the
// pod record weftd reads; a pod without them gets a record without an
// identity; bad ones fail ADD with a CNI error naming them and leave
// nothing behind.
func TestPodIdentity(t *testing.T) {
	e := newEnv(t)
	labels := map[string]any{"cni": map[string]any{"labels": []map[string]string{
		{"key": "app", "value": "web"}, {"key": "example.com/tier", "value": ""},
	}}}
	l := e.confList("1.1.0", e.weftConf(map[string]any{"args": labels}))
	k8sArgs := func(ns, name string) [][2]string {
		return [][2]string{{"IgnoreUnknown", "1"}, {cni.ArgPodNamespace, ns}, {cni.ArgPodName, name}, {"K8S_POD_UID", "f00"}}
	}

	pod := netnstest.NewNS(t, "weftcni-id")
	rt := runtimeConf("id-1", pod)
	rt.Args = k8sArgs("x", "a-1.web")
	if _, err := e.add(l, rt); err != nil {
		t.Fatal(err)
	}
	rec, err := antispoof.ReadRecord(e.dataDir, cni.HostVethName("id-1", "eth0"))
	if err != nil {
		t.Fatal(err)
	}
	want := subnet.PodIdentity{Namespace: "x", Name: "a-1.web", Labels: map[string]string{"app": "web", "example.com/tier": ""}}
	if diff := cmp.Diff(want, rec.Pod); diff != "" {
		t.Errorf("pod identity in the record (-want +got):\n%s", diff)
	}
	if err := e.check(l, rt); err != nil {
		t.Errorf("CHECK: %v", err)
	}

	// No identity (a runtime that is not Kubernetes): a record without one.
	plain := e.confList("1.1.0", e.weftConf(nil))
	pod2 := netnstest.NewNS(t, "weftcni-id")
	rt2 := runtimeConf("id-2", pod2)
	if _, err := e.add(plain, rt2); err != nil {
		t.Fatal(err)
	}
	if rec, err := antispoof.ReadRecord(e.dataDir, cni.HostVethName("id-2", "eth0")); err != nil || !rec.Pod.IsZero() {
		t.Errorf("record of a pod without identity: %+v %v", rec.Pod, err)
	}
	for _, r := range []*libcni.RuntimeConf{rt, rt2} {
		if err := e.del(l, r); err != nil {
			t.Fatal(err)
		}
	}
	e.assertClean()

	long := strings.Repeat("a", 64)
	for _, c := range []struct {
		name   string
		args   [][2]string
		conf   map[string]any
		code   uint
		substr string
	}{
		{"namespace uppercase", k8sArgs("X", "a"), nil, types.ErrInvalidEnvironmentVariables, `namespace "X"`},
		{"namespace too long", k8sArgs(long, "a"), nil, types.ErrInvalidEnvironmentVariables, "no more than 63"},
		{"name with underscore", k8sArgs("x", "a_b"), nil, types.ErrInvalidEnvironmentVariables, `pod name "a_b"`},
		{"name without namespace", [][2]string{{cni.ArgPodName, "a"}}, nil, types.ErrInvalidEnvironmentVariables, "must both be given"},
		{"namespace twice", append(k8sArgs("x", "a"), [2]string{cni.ArgPodNamespace, "y"}), nil, types.ErrInvalidEnvironmentVariables, "given twice"},
		{"label value", k8sArgs("x", "a"), map[string]any{"cni": map[string]any{"labels": []map[string]string{{"key": "app", "value": "-web"}}}},
			types.ErrInvalidNetworkConfig, `cni.labels[0]: label "app" value "-web"`},
		{"label key", k8sArgs("x", "a"), map[string]any{"cni": map[string]any{"labels": []map[string]string{{"key": "a/b/c", "value": "v"}}}},
			types.ErrInvalidNetworkConfig, `label key "a/b/c"`},
		{"label twice", k8sArgs("x", "a"), map[string]any{"cni": map[string]any{"labels": []map[string]string{{"key": "app", "value": "a"}, {"key": "app", "value": "b"}}}},
			types.ErrInvalidNetworkConfig, `key "app" given twice`},
		{"labels not a list", k8sArgs("x", "a"), map[string]any{"cni": map[string]any{"labels": map[string]string{"app": "web"}}},
			types.ErrInvalidNetworkConfig, "want a list"},
		{"labels without a pod", nil, labels, types.ErrInvalidNetworkConfig, "labels need a pod"},
	} {
		t.Run(c.name, func(t *testing.T) {
			conf := e.weftConf(nil)
			if c.conf != nil {
				conf["args"] = c.conf
			}
			rt := runtimeConf("id-bad", pod)
			rt.Args = c.args
			_, err := e.add(e.confList("1.1.0", conf), rt)
			assertCode(t, err, c.code, c.substr)
			e.assertClean()
		})
	}
}
