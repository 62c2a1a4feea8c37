// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package wireguard

import (
	"net/netip"
	"strings"
	"testing"
)

func TestConfigDefaults(t *testing.T) {
	c, err := Config{StateDir: "/tmp/x"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "weft-wg" || c.ListenPort != 51820 || c.Mode != ModeAuto || c.Log == nil {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

func TestConfigInvalid(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no state dir", Config{}, "state dir"},
		{"long name", Config{StateDir: "d", Name: "weft-wg-far-too-long"}, "longer than 15"},
		{"slash in name", Config{StateDir: "d", Name: "a/b"}, "contains"},
		{"dot-dot name", Config{StateDir: "d", Name: ".."}, "not allowed"},
		{"non-ASCII name", Config{StateDir: "d", Name: "wg-\u00e9"}, "contains"},
		{"port", Config{StateDir: "d", ListenPort: 70000}, "listen port"},
		{"mtu low", Config{StateDir: "d", MTU: 1000}, "mtu"},
		{"keepalive", Config{StateDir: "d", PersistentKeepalive: -1}, "keepalive"},
		{"mode", Config{StateDir: "d", Mode: "magic"}, `mode "magic"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New() error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestPodMTU(t *testing.T) {
	tests := []struct {
		name     string
		underlay int
		ip       string
		want     int
	}{
		{"ipv4", 1500, "198.18.0.1", 1440},
		{"ipv6", 1500, "2001:2::1", 1420},
		{"jumbo ipv4", 9000, "198.18.0.1", 8940},
		{"mapped ipv4", 1500, "::ffff:198.18.0.1", 1440},
		{"no ip: ipv4 overhead", 1500, "", 1440},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ip netip.Addr
			if tt.ip != "" {
				ip = netip.MustParseAddr(tt.ip)
			}
			if got := podMTU(tt.underlay, ip); got != tt.want {
				t.Fatalf("podMTU(%d, %s) = %d, want %d", tt.underlay, tt.ip, got, tt.want)
			}
		})
	}
}
