// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"io"
	"strings"
	"testing"
)

func TestKubeFlags(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
		want string // substring of the Validate error; "": valid
	}{
		{name: "etcd mode", args: nil},
		{name: "kube mode", args: []string{"--kube-subnet-mgr", "--kubeconfig=/k"}},
		{name: "kube flag without the mode", args: []string{"--kubeconfig=/k"}, want: "add --kube-subnet-mgr"},
		{name: "net-conf without the mode", args: []string{"--net-config-path=/n"}, want: "add --kube-subnet-mgr"},
		{name: "bad namespace", args: []string{"--kube-subnet-mgr", "--net-conf-namespace=Weft_System"}, want: "--net-conf-namespace"},
		{name: "bad configmap", args: []string{"--kube-subnet-mgr", "--net-conf-configmap=a/b"}, want: "--net-conf-configmap"},
		{name: "from the environment", env: map[string]string{"WEFTD_KUBE_SUBNET_MGR": "true", "WEFTD_NET_CONF": "/n"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs, c := NewFlagSet("weftd")
			fs.SetOutput(io.Discard)
			if err := ParseFlags(fs, tt.args, envOf(tt.env)); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate = %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

func TestKubeNetConfAlias(t *testing.T) {
	fs, c := NewFlagSet("weftd")
	if err := ParseFlags(fs, []string{"--kube-subnet-mgr", "--net-config-path=/etc/kube-flannel/net-conf.json"}, noEnv); err != nil {
		t.Fatal(err)
	}
	if c.Kube.NetConfFile != "/etc/kube-flannel/net-conf.json" {
		t.Errorf("--net-config-path set NetConfFile %q", c.Kube.NetConfFile)
	}
}

func TestKubeNodeName(t *testing.T) {
	t.Setenv(NodeNameEnv, "from-downward-api")
	c := &Config{}
	if got := c.nodeName(); got != "" {
		t.Errorf("etcd mode: node name %q from %s, want none (the host name)", got, NodeNameEnv)
	}
	c.Kube.SubnetMgr = true
	if got := c.nodeName(); got != "from-downward-api" {
		t.Errorf("kube mode: node name %q, want %s's", got, NodeNameEnv)
	}
	c.NodeName = "flag"
	if got := c.nodeName(); got != "flag" {
		t.Errorf("kube mode with --node-name: %q, want the flag's", got)
	}
}
