// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package subnet

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseConfigValid(t *testing.T) {
	pfx := netip.MustParsePrefix
	addr := netip.MustParseAddr
	tests := []struct {
		name string
		in   string
		want Config
	}{
		{
			name: "minimal vxlan defaults",
			in:   `{"Network": "10.244.0.0/16"}`,
			want: Config{Network: pfx("10.244.0.0/16"), SubnetLen: 24,
				Backend: BackendConfig{Type: "vxlan", VNI: 1, Port: 8472}},
		},
		{
			name: "vxlan with every key",
			in: `{"Network": "10.244.0.0/16", "SubnetLen": 25, "SubnetMin": "10.244.1.0", "SubnetMax": "10.244.9.128",
			      "Backend": {"Type": "vxlan", "VNI": 4096, "Port": 4789, "MTU": 1450, "DirectRouting": true}}`,
			want: Config{Network: pfx("10.244.0.0/16"), SubnetLen: 25, SubnetMin: addr("10.244.1.0"), SubnetMax: addr("10.244.9.128"),
				Backend: BackendConfig{Type: "vxlan", VNI: 4096, Port: 4789, MTU: 1450, DirectRouting: true}},
		},
		{
			name: "dual-stack wireguard",
			in: `{"Network": "10.244.0.0/16", "IPv6Network": "fd10:244::/56",
			      "Backend": {"Type": "wireguard", "PersistentKeepalive": 25, "MTU": 1420}}`,
			want: Config{Network: pfx("10.244.0.0/16"), IPv6Network: pfx("fd10:244::/56"), SubnetLen: 24, IPv6SubnetLen: 64,
				Backend: BackendConfig{Type: "wireguard", ListenPort: 51820, PersistentKeepalive: 25, MTU: 1420}},
		},
		{
			name: "IPv6 only host-gw",
			in:   `{"IPv6Network": "fd10:244::/48", "IPv6SubnetLen": 80, "Backend": {"Type": "host-gw"}}`,
			want: Config{IPv6Network: pfx("fd10:244::/48"), IPv6SubnetLen: 80, Backend: BackendConfig{Type: "host-gw"}},
		},
		{
			name: "explicit null keys are unset",
			in:   `{"Network": "10.244.0.0/16", "SubnetLen": null, "Backend": {"Type": null, "MTU": 0}}`,
			want: Config{Network: pfx("10.244.0.0/16"), SubnetLen: 24,
				Backend: BackendConfig{Type: "vxlan", VNI: 1, Port: 8472}},
		},
		{
			name: "smallest network with two subnets",
			in:   `{"Network": "10.1.2.0/29", "SubnetLen": 30}`,
			want: Config{Network: pfx("10.1.2.0/29"), SubnetLen: 30,
				Backend: BackendConfig{Type: "vxlan", VNI: 1, Port: 8472}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseConfig([]byte(tt.in))
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			if diff := cmp.Diff(tt.want, *got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
				cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
			// The parsed config marshals to JSON that parses back to itself.
			data, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			again, err := ParseConfig(data)
			if err != nil {
				t.Fatalf("re-parse %s: %v", data, err)
			}
			if *again != *got {
				t.Errorf("round trip of %s: got %+v, want %+v", data, *again, *got)
			}
		})
	}
}

func TestParseConfigInvalid(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"empty", ``, `network config is empty`},
		{"not JSON", `{"Network": }`, `network config is not valid JSON: invalid character '}' looking for beginning of value (at byte 13)`},
		{"truncated", `{"Network": "10.244.0.0/16"`, `network config is not valid JSON: unexpected end of JSON input (at byte 27)`},
		{"duplicate key", `{"Network": "10.244.0.0/16", "Network": "10.245.0.0/16"}`, `network config has the key "Network" twice`},
		{"duplicate backend key", `{"Network": "10.244.0.0/16", "Backend": {"VNI": 1, "VNI": 2}}`, `Backend has the key "VNI" twice`},
		{"array", `[1]`, `network config must be a JSON object, not a JSON array`},
		{"null", `null`, `network config must be a JSON object, not null`},
		{"trailing data", `{"Network": "10.244.0.0/16"} {}`, `network config has data after its JSON object, which ends at byte 28`},
		{"unknown key", `{"Network": "10.244.0.0/16", "Netmask": 16}`,
			`unknown key "Netmask" in network config (known keys: Network, IPv6Network, SubnetLen, IPv6SubnetLen, SubnetMin, SubnetMax, Backend)`},
		{"key in wrong case", `{"network": "10.244.0.0/16"}`,
			`unknown key "network" in network config (did you mean "Network"? keys are case-sensitive)`},
		{"unknown backend key", `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "Vni": 2}}`,
			`unknown key "Backend.Vni" in Backend (did you mean "VNI"? keys are case-sensitive)`},
		{"unknown backend key typo", `{"Network": "10.244.0.0/16", "Backend": {"Typ": "vxlan"}}`,
			`unknown key "Backend.Typ" in Backend (known keys: Type, VNI, Port, DirectRouting, MTU, ListenPort, PersistentKeepalive)`},
		{"backend not an object", `{"Network": "10.244.0.0/16", "Backend": "vxlan"}`,
			`Backend must be a JSON object, not a JSON string`},
		{"SubnetLen without Network", `{"SubnetLen": 24, "IPv6Network": "fd10:244::/56"}`, `SubnetLen is set but Network is not (SubnetLen applies to the IPv4 network only)`},
		{"nothing", `{}`, `neither Network nor IPv6Network is set: give at least one (e.g. "Network": "10.244.0.0/16")`},
		{"malformed CIDR", `{"Network": "10.244.0/16"}`,
			`Network "10.244.0/16" is not a valid CIDR (want an address and a prefix length, such as 10.244.0.0/16 or fd10:244::/56)`},
		{"no prefix length", `{"Network": "10.244.0.0"}`,
			`Network "10.244.0.0" is not a valid CIDR (want an address and a prefix length, such as 10.244.0.0/16 or fd10:244::/56)`},
		{"network not a string", `{"Network": 10}`, `Network must be a CIDR string such as "10.244.0.0/16", not 10`},
		{"host bits set", `{"Network": "10.244.1.0/16"}`, `Network 10.244.1.0/16 has host bits set: write it as 10.244.0.0/16`},
		{"IPv6 host bits set", `{"IPv6Network": "fd10:244::1/56"}`, `IPv6Network fd10:244::1/56 has host bits set: write it as fd10:244::/56`},
		{"IPv6 in Network", `{"Network": "fd10:244::/56"}`, `Network fd10:244::/56 is an IPv6 network: put it in IPv6Network`},
		{"IPv4 in IPv6Network", `{"Network": "10.244.0.0/16", "IPv6Network": "10.245.0.0/16"}`,
			`IPv6Network 10.245.0.0/16 is an IPv4 network: put it in Network`},
		{"IPv4-mapped IPv6 network overlaps IPv4", `{"Network": "10.244.0.0/16", "IPv6Network": "::ffff:10.244.0.0/112"}`,
			`IPv6Network ::ffff:10.244.0.0/112 overlaps the reserved range holding loopback, unspecified and IPv4-mapped addresses ::/8`},
		{"overlaps loopback", `{"Network": "96.0.0.0/3"}`, `Network 96.0.0.0/3 overlaps the loopback range 127.0.0.0/8`},
		{"overlaps link-local", `{"Network": "169.254.0.0/20"}`, `Network 169.254.0.0/20 overlaps the link-local range 169.254.0.0/16`},
		{"overlaps multicast", `{"IPv6Network": "ff00::/16"}`, `IPv6Network ff00::/16 overlaps the multicast range ff00::/8`},
		{"SubnetLen not longer", `{"Network": "10.244.0.0/16", "SubnetLen": 16}`,
			`SubnetLen 16 must be longer than the prefix of 10.244.0.0/16 (/16): with /16 there is only 1 subnet`},
		{"SubnetLen shorter", `{"Network": "10.244.0.0/16", "SubnetLen": 12}`,
			`SubnetLen 12 must be longer than the prefix of 10.244.0.0/16 (/16): with /12 there is only 1 subnet`},
		{"default SubnetLen too short", `{"Network": "10.244.3.0/24"}`,
			`SubnetLen 24 must be longer than the prefix of 10.244.3.0/24 (/24): with /24 there is only 1 subnet`},
		{"SubnetLen too long", `{"Network": "10.244.0.0/16", "SubnetLen": 31}`, `SubnetLen 31 is out of range: want 17 to 30`},
		{"SubnetLen zero", `{"Network": "10.244.0.0/16", "SubnetLen": 0}`, `SubnetLen 0 is not a valid prefix length (leave it out for the default)`},
		{"SubnetLen string", `{"Network": "10.244.0.0/16", "SubnetLen": "24"}`, `SubnetLen must be an integer, not "24"`},
		{"IPv6SubnetLen not longer", `{"IPv6Network": "fd10:244::/64"}`,
			`IPv6SubnetLen 64 must be longer than the prefix of fd10:244::/64 (/64): with /64 there is only 1 subnet`},
		{"IPv6SubnetLen too long", `{"IPv6Network": "fd10:244::/64", "IPv6SubnetLen": 127}`, `IPv6SubnetLen 127 is out of range: want 65 to 126`},
		{"IPv6SubnetLen without IPv6Network", `{"Network": "10.244.0.0/16", "IPv6SubnetLen": 64}`, `IPv6SubnetLen is set but IPv6Network is not`},
		{"SubnetMin outside", `{"Network": "10.244.0.0/16", "SubnetMin": "10.245.0.0"}`, `SubnetMin 10.245.0.0 is outside Network 10.244.0.0/16`},
		{"SubnetMax outside", `{"Network": "10.244.0.0/16", "SubnetMax": "10.243.255.0"}`, `SubnetMax 10.243.255.0 is outside Network 10.244.0.0/16`},
		{"SubnetMin not aligned", `{"Network": "10.244.0.0/16", "SubnetMin": "10.244.3.5"}`,
			`SubnetMin 10.244.3.5 is not the first address of a /24 subnet (the subnet holding it starts at 10.244.3.0)`},
		{"SubnetMin with prefix", `{"Network": "10.244.0.0/16", "SubnetMin": "10.244.3.0/24"}`,
			`SubnetMin "10.244.3.0/24" is not a valid IP address (write the subnet's first address, without a prefix length)`},
		{"SubnetMin IPv6", `{"Network": "10.244.0.0/16", "SubnetMin": "fd10::"}`,
			`SubnetMin fd10:: is not an IPv4 address (SubnetMin/SubnetMax bound the IPv4 Network only)`},
		{"SubnetMin above SubnetMax", `{"Network": "10.244.0.0/16", "SubnetMin": "10.244.9.0", "SubnetMax": "10.244.8.0"}`,
			`SubnetMin 10.244.9.0 is above SubnetMax 10.244.8.0`},
		{"one subnet between min and max", `{"Network": "10.244.0.0/16", "SubnetMin": "10.244.9.0", "SubnetMax": "10.244.9.0"}`,
			`SubnetMin 10.244.9.0 to SubnetMax 10.244.9.0 holds only 1 subnet of /24: at least 2 are needed`},
		{"SubnetMin without Network", `{"IPv6Network": "fd10:244::/56", "SubnetMin": "10.244.9.0"}`,
			`SubnetMin is set but Network is not (SubnetMin applies to the IPv4 network only)`},
		{"unknown backend", `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlann"}}`,
			`unknown backend type "vxlann" (want vxlan, wireguard or host-gw)`},
		{"VNI with wireguard", `{"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard", "VNI": 1}}`,
			`Backend.VNI is not valid for backend type wireguard`},
		{"zero Port with wireguard", `{"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard", "Port": 0}}`,
			`Backend.Port is not valid for backend type wireguard`},
		{"ListenPort with default vxlan", `{"Network": "10.244.0.0/16", "Backend": {"ListenPort": 51820}}`,
			`Backend.ListenPort is not valid for backend type vxlan`},
		{"MTU with host-gw", `{"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw", "MTU": 1500}}`,
			`Backend.MTU is not valid for backend type host-gw`},
		{"DirectRouting with wireguard", `{"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard", "DirectRouting": false}}`,
			`Backend.DirectRouting is not valid for backend type wireguard`},
		{"VNI zero", `{"Network": "10.244.0.0/16", "Backend": {"VNI": 0}}`, `Backend.VNI 0 is out of range (leave it out for the default)`},
		{"VNI too big", `{"Network": "10.244.0.0/16", "Backend": {"VNI": 16777216}}`, `Backend.VNI 16777216 is out of range 1-16777215`},
		{"VNI negative", `{"Network": "10.244.0.0/16", "Backend": {"VNI": -1}}`, `Backend.VNI -1 is out of range 1-16777215`},
		{"VNI float", `{"Network": "10.244.0.0/16", "Backend": {"VNI": 1.5}}`, `Backend.VNI must be an integer, not 1.5`},
		{"Port too big", `{"Network": "10.244.0.0/16", "Backend": {"Port": 65536}}`, `Backend.Port 65536 is out of range 1-65535`},
		{"ListenPort too big", `{"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard", "ListenPort": 70000}}`,
			`Backend.ListenPort 70000 is out of range 1-65535`},
		{"PersistentKeepalive negative", `{"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard", "PersistentKeepalive": -5}}`,
			`Backend.PersistentKeepalive -5 is out of range 0-65535 seconds (0: off)`},
		{"MTU too small", `{"Network": "10.244.0.0/16", "Backend": {"MTU": 500}}`,
			`Backend.MTU 500 is out of range 576-65535; leave it out to derive it from the underlay`},
		{"MTU too small for IPv6", `{"Network": "10.244.0.0/16", "IPv6Network": "fd10:244::/56", "Backend": {"MTU": 1000}}`,
			`Backend.MTU 1000 is out of range 1280-65535 (IPv6 needs at least 1280); leave it out to derive it from the underlay`},
		{"DirectRouting not bool", `{"Network": "10.244.0.0/16", "Backend": {"DirectRouting": "yes"}}`,
			`Backend.DirectRouting must be true or false, not "yes"`},
		{"Type not string", `{"Network": "10.244.0.0/16", "Backend": {"Type": 1}}`, `Backend.Type must be a string, not 1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tt.in))
			if err == nil {
				t.Fatalf("ParseConfig(%s) = %+v, want error %q", tt.in, c, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("ParseConfig(%s):\n got error %q\nwant error %q", tt.in, err, tt.want)
			}
		})
	}
}

// TestValidateTyped checks Validate on configs built in Go (as weftctl
// config set does), where unset fields mean their defaults.
func TestValidateTyped(t *testing.T) {
	pfx := netip.MustParsePrefix
	tests := []struct {
		name string
		c    Config
		want string // "" = valid
	}{
		{"defaults only", Config{Network: pfx("10.244.0.0/16")}, ""},
		{"non-canonical", Config{Network: pfx("10.244.7.0/16")}, `Network 10.244.7.0/16 has host bits set: write it as 10.244.0.0/16`},
		{"wireguard VNI", Config{Network: pfx("10.244.0.0/16"), Backend: BackendConfig{Type: "wireguard", VNI: 3}},
			`Backend.VNI is not valid for backend type wireguard`},
		{"host-gw keepalive", Config{Network: pfx("10.244.0.0/16"), Backend: BackendConfig{Type: "host-gw", PersistentKeepalive: 3}},
			`Backend.PersistentKeepalive is not valid for backend type host-gw`},
		{"unknown type", Config{Network: pfx("10.244.0.0/16"), Backend: BackendConfig{Type: "udp"}},
			`unknown backend type "udp" (want vxlan, wireguard or host-gw)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.c
			err := tt.c.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Validate() = %q, want %q", got, tt.want)
			}
			if tt.c != before {
				t.Errorf("Validate modified the config: %+v → %+v", before, tt.c)
			}
		})
	}
}
