// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"flag"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// briefFlags are the flag names the e2e harness, the docs and the systemd
// unit rely on (the agreed list): renaming one breaks them.
var briefFlags = []string{
	"etcd-endpoints", "etcd-prefix", "etcd-cafile", "etcd-certfile", "etcd-keyfile", "etcd-username", "etcd-password",
	"node-name", "iface", "public-ip", "public-ipv6", "subnet-file", "state-dir", "cni-data-dir", "ip-masq", "network-policy", "policy-log-drops", "http-addr",
	"resync-interval", "lease-ttl", "log-level", "log-format", "vxlan-device", "wireguard-device", "wireguard-mode",
	"wireguard-psk-file", "wireguard-offloads", "memory-limit", "gossip-bind", "gossip-advertise", "gossip-join",
	"gossip-key-file", "gossip-probe-interval", "gossip-probe-timeout", "gossip-suspicion-mult", "gossip-interval",
	"gossip-pushpull-interval", "gossip-encryption", "gossip-allowed-cidrs", "gossip-max-members",
	"kube-subnet-mgr", "kubeconfig", "net-conf-namespace", "net-conf-configmap", "net-conf", "net-config-path",
}

func TestFlagSetHasAgreedFlags(t *testing.T) {
	fs, _ := NewFlagSet("weftd")
	var got []string
	fs.VisitAll(func(f *flag.Flag) {
		got = append(got, f.Name)
		if want := "(env " + EnvName(f.Name) + ")"; !strings.Contains(f.Usage, want) {
			t.Errorf("flag --%s: usage %q does not name %s", f.Name, f.Usage, want)
		}
	})
	if diff := cmp.Diff(briefFlags, got, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("flags (-agreed +have):\n%s", diff)
	}
}

func TestDefaults(t *testing.T) {
	fs, c := NewFlagSet("weftd")
	if err := ParseFlags(fs, nil, noEnv); err != nil {
		t.Fatal(err)
	}
	want := &Config{
		EtcdEndpoints: []string{"http://127.0.0.1:2379"}, EtcdPrefix: "/weft",
		SubnetFile: "/run/weft/subnet.env", StateDir: "/var/lib/weft", CNIDataDir: "/var/lib/cni/weft", IPMasq: true, NetworkPolicy: true, HTTPAddr: "127.0.0.1:9950",
		ResyncInterval: 10 * time.Second, LeaseTTL: 24 * time.Hour, LogLevel: "info", LogFormat: "text",
		WireGuardDevice: "weft-wg", WireGuardMode: "auto", WireGuardOffloads: true, MemoryLimit: 128 << 20,
		GossipBind: "0.0.0.0:7950", GossipProbeInterval: 250 * time.Millisecond, GossipProbeTimeout: 100 * time.Millisecond,
		GossipSuspicionMult: 3, GossipInterval: 50 * time.Millisecond, GossipPushPullInterval: 10 * time.Second,
		GossipEncryption: "on", GossipMaxMembers: 4096,
		Kube: KubeConfig{ConfigNamespace: "weft-system", ConfigName: "weft-config"},
	}
	if diff := cmp.Diff(want, c, cmp.AllowUnexported(Config{}), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
}

func noEnv(string) (string, bool) { return "", false }

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseFlagsEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		check   func(*Config) string
		wantErr string
	}{
		{
			name: "env sets every kind of flag",
			env: map[string]string{
				"WEFTD_ETCD_ENDPOINTS":        "http://198.18.0.1:2379, http://198.18.0.2:2379",
				"WEFTD_PUBLIC_IP":             "198.18.0.5",
				"WEFTD_IP_MASQ":               "false",
				"WEFTD_RESYNC_INTERVAL":       "3s",
				"WEFTD_MEMORY_LIMIT":          "1GiB",
				"WEFTD_GOSSIP_SUSPICION_MULT": "5",
				"WEFTD_NODE_NAME":             "node-a",
				"WEFTD_GOSSIP_ALLOWED_CIDRS":  "198.18.0.0/15, 2001:2::1/48",
				"WEFTD_GOSSIP_ENCRYPTION":     "accept",
				"WEFTD_GOSSIP_MAX_MEMBERS":    "64",
			},
			check: func(c *Config) string {
				return cmp.Diff([]any{[]string{"http://198.18.0.1:2379", "http://198.18.0.2:2379"}, "198.18.0.5", false, 3 * time.Second, int64(1 << 30), 5, "node-a",
					"198.18.0.0/15,2001:2::/48", "accept", 64},
					[]any{c.EtcdEndpoints, c.PublicIP.String(), c.IPMasq, c.ResyncInterval, c.MemoryLimit, c.GossipSuspicionMult, c.NodeName,
						(*prefixList)(&c.GossipAllowedCIDRs).String(), c.GossipEncryption, c.GossipMaxMembers})
			},
		},
		{
			name: "command line wins over env",
			env:  map[string]string{"WEFTD_NODE_NAME": "from-env", "WEFTD_IP_MASQ": "false", "WEFTD_STATE_DIR": "/tmp/env"},
			args: []string{"--node-name=from-flag", "--ip-masq=true"},
			check: func(c *Config) string {
				return cmp.Diff([]any{"from-flag", true, "/tmp/env"}, []any{c.NodeName, c.IPMasq, c.StateDir})
			},
		},
		{
			name:    "bad env value names the variable",
			env:     map[string]string{"WEFTD_RESYNC_INTERVAL": "soon"},
			wantErr: `WEFTD_RESYNC_INTERVAL="soon"`,
		},
		{
			name:    "bad public ip",
			args:    []string{"--public-ip", "198.18.0.300"},
			wantErr: "not an IP address",
		},
		{
			name:    "stray argument",
			args:    []string{"extra"},
			wantErr: "unexpected arguments",
		},
		{
			name:    "unknown flag",
			args:    []string{"--etcd-endpoint=x"},
			wantErr: "flag provided but not defined",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, c := NewFlagSet("weftd")
			fs.SetOutput(io.Discard)
			err := ParseFlags(fs, tt.args, envOf(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := tt.check(c); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string // substrings of the error; none: valid
	}{
		{name: "valid", args: []string{"--etcd-endpoints=https://198.18.0.1:2379", "--public-ip=198.18.0.2", "--gossip-bind="}},
		{name: "unix endpoint", args: []string{"--etcd-endpoints=unix:///run/etcd.sock"}},
		{name: "bad endpoint", args: []string{"--etcd-endpoints=198.18.0.1:2379"}, want: []string{"--etcd-endpoints"}},
		{name: "bad scheme", args: []string{"--etcd-endpoints=ftp://x"}, want: []string{"scheme must be"}},
		{name: "prefix", args: []string{"--etcd-prefix=weft/"}, want: []string{"--etcd-prefix"}},
		{name: "cert without key", args: []string{"--etcd-certfile=/c"}, want: []string{"--etcd-certfile and --etcd-keyfile"}},
		{name: "user without password", args: []string{"--etcd-username=u"}, want: []string{"--etcd-username and --etcd-password"}},
		{name: "password over http", args: []string{"--etcd-endpoints=http://198.18.0.1:2379", "--etcd-username=u", "--etcd-password=p"},
			want: []string{"--etcd-endpoints: etcd endpoint http://198.18.0.1:2379 does not use TLS", "use https://198.18.0.1:2379, or drop the credentials"}},
		{name: "CA over unix", args: []string{"--etcd-endpoints=unix:///run/etcd.sock", "--etcd-cafile=/ca.pem"},
			want: []string{"etcd endpoint unix:///run/etcd.sock does not use TLS", "use unixs:///run/etcd.sock"}},
		{name: "mutual TLS over https", args: []string{"--etcd-endpoints=https://198.18.0.1:2379", "--etcd-cafile=/ca.pem",
			"--etcd-certfile=/c.pem", "--etcd-keyfile=/k.pem", "--etcd-username=u", "--etcd-password=p"}},
		{name: "node name", args: []string{"--node-name=a b"}, want: []string{"--node-name"}},
		{name: "drop log rate", args: []string{"--policy-log-drops=20"}},
		{name: "negative drop log rate", args: []string{"--policy-log-drops=-1"}, want: []string{"--policy-log-drops: -1 is outside 0..10000"}},
		{name: "drop log rate too high", args: []string{"--policy-log-drops=10001"}, want: []string{"--policy-log-drops: 10001 is outside 0..10000"}},
		{name: "gossip encryption mode", args: []string{"--gossip-encryption=maybe"}, want: []string{`--gossip-encryption: "maybe" is not on, send, accept or off`}},
		{name: "gossip off with a key file", args: []string{"--gossip-encryption=off", "--gossip-key-file=/k"}, want: []string{"--gossip-encryption off with --gossip-key-file"}},
		{name: "gossip max members", args: []string{"--gossip-max-members=0"}, want: []string{"--gossip-max-members must be at least 1"}},
		{name: "gossip off without a key", args: []string{"--gossip-encryption=off"}},
		{name: "gossip accept with a key file", args: []string{"--gossip-encryption=accept", "--gossip-key-file=/k"}},
		{name: "loopback public ip", args: []string{"--public-ip=127.0.0.1"}, want: []string{"--public-ip"}},
		{name: "public ipv6 not v6", args: []string{"--public-ipv6=198.18.0.1"}, want: []string{"--public-ipv6"}},
		{name: "http addr", args: []string{"--http-addr=9950"}, want: []string{"--http-addr"}},
		{name: "resync", args: []string{"--resync-interval=1ms"}, want: []string{"--resync-interval"}},
		{name: "lease ttl", args: []string{"--lease-ttl=1s"}, want: []string{"--lease-ttl"}},
		{name: "log level", args: []string{"--log-level=loud"}, want: []string{"--log-level"}},
		{name: "log format", args: []string{"--log-format=xml"}, want: []string{"--log-format"}},
		{name: "vxlan device", args: []string{"--vxlan-device=a-name-that-is-too-long"}, want: []string{"--vxlan-device"}},
		{name: "wireguard mode", args: []string{"--wireguard-mode=fast"}, want: []string{"--wireguard-mode"}},
		{name: "memory limit", args: []string{"--memory-limit=1MiB"}, want: []string{"--memory-limit"}},
		{name: "gossip bind", args: []string{"--gossip-bind=7950"}, want: []string{"--gossip-bind"}},
		{name: "gossip timeout", args: []string{"--gossip-probe-timeout=1s"}, want: []string{"--gossip-probe-timeout"}},
		{name: "several at once", args: []string{"--log-format=xml", "--lease-ttl=1s"}, want: []string{"--log-format", "--lease-ttl"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, c := NewFlagSet("weftd")
			fs.SetOutput(io.Discard)
			if err := ParseFlags(fs, tt.args, noEnv); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate succeeded, want errors %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"0", 0, false}, {"128MiB", 128 << 20, false}, {"96mib", 96 << 20, false}, {"1GiB", 1 << 30, false},
		{"512k", 512 << 10, false}, {"1000000", 1000000, false}, {"2GB", 2e9, false},
		{"", 0, true}, {"MiB", 0, true}, {"12XB", 0, true}, {"-5", 0, true}, {"99999999999999999999", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseByteSize(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseByteSize(%q) = %d, %v; want %d, error %t", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
	b := byteSize(128 << 20)
	if b.String() != "128MiB" {
		t.Errorf("String() = %q", b.String())
	}
}

func TestNewLogger(t *testing.T) {
	for _, f := range []string{"text", "json"} {
		l, err := NewLogger(&Config{LogLevel: "debug", LogFormat: f})
		if err != nil || l.Level.String() != "debug" {
			t.Errorf("NewLogger(%s) = %v, %v", f, l, err)
		}
	}
	if _, err := NewLogger(&Config{LogLevel: "info", LogFormat: "yaml"}); err == nil {
		t.Error("NewLogger accepted format yaml")
	}
}
