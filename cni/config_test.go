// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package cni

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/weftnet/weft/backend"
)

func TestParseConfig(t *testing.T) {
	base := func(c *Config) *Config {
		c.CNIVersion, c.Name, c.Type = "1.1.0", "weftnet", "weft"
		return c
	}
	defaults := func() *Config {
		return base(&Config{
			SubnetFile: "/run/weft/subnet.env", DataDir: DefaultDataDir, Bridge: DefaultBridge,
			HairpinMode: true, IsDefaultGateway: true, PolicyWait: DefaultPolicyWait,
		})
	}
	for _, c := range []struct {
		name    string
		in      string
		want    *Config
		wantErr string // substring; the error must be a *ConfigError
	}{
		{"defaults", `{"cniVersion":"1.1.0","name":"weftnet","type":"weft"}`, defaults(), ""},
		{"all keys", `{"cniVersion":"1.1.0","name":"weftnet","type":"weft","subnetFile":"/x/s.env","dataDir":"/d",
			"bridge":"br9","mtu":1400,"hairpinMode":false,"isDefaultGateway":false,"policyWait":"250ms","unknownKey":{"a":1}}`,
			base(&Config{SubnetFile: "/x/s.env", DataDir: "/d", Bridge: "br9", MTU: 1400, PolicyWait: 250 * time.Millisecond}), ""},
		{"policyWait 0s: no wait", `{"cniVersion":"1.1.0","name":"weftnet","type":"weft","policyWait":"0s"}`,
			func() *Config { c := defaults(); c.PolicyWait = 0; return c }(), ""},
		{"null keeps the default", `{"cniVersion":"1.1.0","name":"weftnet","type":"weft","bridge":null}`, defaults(), ""},
		{"attachments, both spellings", `{"cniVersion":"1.1.0","name":"weftnet","type":"weft",
			"cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}],"cni.dev/attachments":[{"containerID":"b","ifname":"eth1"}]}`,
			func() *Config {
				c := defaults()
				c.ValidAttachments = []types.GCAttachment{{ContainerID: "a", IfName: "eth0"}}
				c.Attachments = []types.GCAttachment{{ContainerID: "a", IfName: "eth0"}, {ContainerID: "b", IfName: "eth1"}}
				return c
			}(), ""},
		{"not an object", `[1,2]`, nil, "not a JSON object"},
		{"no name", `{"cniVersion":"1.1.0","type":"weft"}`, nil, `key "name": missing`},
		{"bad name", `{"cniVersion":"1.1.0","name":"../x","type":"weft"}`, nil, `key "name"`},
		{"mtu string", `{"name":"n","mtu":"1400"}`, nil, `key "mtu": want an integer, got "1400"`},
		{"mtu float", `{"name":"n","mtu":1400.5}`, nil, `key "mtu": want an integer`},
		{"mtu small", `{"name":"n","mtu":500}`, nil, `key "mtu": 500 is outside 576-65535`},
		{"hairpin string", `{"name":"n","hairpinMode":"true"}`, nil, `key "hairpinMode": want true or false`},
		{"gateway number", `{"name":"n","isDefaultGateway":1}`, nil, `key "isDefaultGateway": want true or false`},
		{"bridge long", `{"name":"n","bridge":"abcdefghijklmnop"}`, nil, `key "bridge": interface name "abcdefghijklmnop" is longer than 15 bytes`},
		{"bridge slash", `{"name":"n","bridge":"a/b"}`, nil, `key "bridge"`},
		{"bridge carriage return", `{"name":"n","bridge":"br\r"}`, nil, `key "bridge"`},
		{"bridge like a veth", `{"name":"n","bridge":"weft0123abcd"}`, nil, `key "bridge"`},
		{"dataDir relative", `{"name":"n","dataDir":"data"}`, nil, `key "dataDir": "data" is not an absolute path`},
		{"subnetFile number", `{"name":"n","subnetFile":3}`, nil, `key "subnetFile": want a string`},
		{"attachment incomplete", `{"name":"n","cni.dev/valid-attachments":[{"containerID":"a"}]}`, nil, `key "cni.dev/valid-attachments"`},
		{"policyWait number", `{"name":"n","policyWait":3}`, nil, `key "policyWait": want a duration such as "3s", got 3`},
		{"policyWait not a duration", `{"name":"n","policyWait":"3"}`, nil, `key "policyWait": "3" is not a duration from 0s to 1m0s`},
		{"policyWait negative", `{"name":"n","policyWait":"-1s"}`, nil, `key "policyWait": "-1s" is not a duration`},
		{"policyWait too long", `{"name":"n","policyWait":"2m"}`, nil, `key "policyWait": "2m" is not a duration from 0s to 1m0s`},
		{"attachments wrong type", `{"name":"n","cni.dev/attachments":{}}`, nil, `key "cni.dev/attachments"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseConfig([]byte(c.in))
			if c.wantErr != "" {
				var ce *ConfigError
				if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("got %v, want a ConfigError with %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHostVethName(t *testing.T) {
	seen := map[string]string{}
	for _, id := range []string{"a", "b", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"} {
		for _, ifn := range []string{"eth0", "eth1", "net1"} {
			n := HostVethName(id, ifn)
			if len(n) != 12 || !isHostVethName(n) || backend.ValidIfName(n) != nil {
				t.Errorf("HostVethName(%q, %q) = %q: not a valid weft veth name", id, ifn, n)
			}
			if o, ok := seen[n]; ok {
				t.Errorf("%q for both %s and %s/%s", n, o, id, ifn)
			}
			seen[n] = id + "/" + ifn
		}
	}
	if HostVethName("a", "eth0") != HostVethName("a", "eth0") {
		t.Error("HostVethName is not deterministic")
	}
	for _, n := range []string{"weft0", "weft0123abcg", "eth0", "weft0123abcde"} {
		if isHostVethName(n) {
			t.Errorf("isHostVethName(%q) = true", n)
		}
	}
}

// FuzzParseConfig feeds arbitrary documents to ParseConfig: it must never
// panic, and whatever it accepts must be safe to use: the store directory
// directly below dataDir, a bridge name the kernel takes and GC never
// mistakes for a pod's veth.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		`{"cniVersion":"1.1.0","name":"weftnet","type":"weft"}`,
		`{"cniVersion":"1.0.0","name":"n","type":"weft","mtu":1400,"bridge":"br0","hairpinMode":false,"isDefaultGateway":false}`,
		`{"name":"n","subnetFile":"/run/weft/subnet.env","dataDir":"/var/lib/cni/weft","dns":{"nameservers":["10.96.0.10"]}}`,
		`{"name":"n","cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}`,
		`{"name":"n","prevResult":{"cniVersion":"1.1.0","ips":[]}}`,
		`{"name":"n","mtu":"x"}`, `{}`, `null`, `[]`, `{"name":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a ConfigError", err)
			}
			return
		}
		if d := filepath.Dir(c.StoreDir()); d != filepath.Clean(c.DataDir) {
			t.Fatalf("accepted name %q: the store directory %s is not directly below dataDir %s", c.Name, c.StoreDir(), c.DataDir)
		}
		if backend.ValidIfName(c.Bridge) != nil || isHostVethName(c.Bridge) {
			t.Fatalf("accepted bridge %q", c.Bridge)
		}
	})
}
