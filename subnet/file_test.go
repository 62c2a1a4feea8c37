// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package subnet

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestSubnetFileRoundTrip(t *testing.T) {
	pfx := netip.MustParsePrefix
	tests := []struct {
		name string
		f    SubnetFile
		text string
	}{
		{
			name: "IPv4",
			f:    SubnetFile{Network: pfx("10.244.0.0/16"), Subnet: GatewayPrefix(pfx("10.244.3.0/24")), MTU: 1450, IPMasq: true},
			text: "WEFT_NETWORK=10.244.0.0/16\nWEFT_SUBNET=10.244.3.1/24\nWEFT_MTU=1450\nWEFT_IPMASQ=true\n",
		},
		{
			name: "dual-stack",
			f: SubnetFile{Network: pfx("10.244.0.0/16"), Subnet: pfx("10.244.3.1/24"),
				IPv6Network: pfx("fd10:244::/56"), IPv6Subnet: GatewayPrefix(pfx("fd10:244:0:3::/64")), MTU: 1420},
			text: "WEFT_NETWORK=10.244.0.0/16\nWEFT_SUBNET=10.244.3.1/24\nWEFT_IPV6_NETWORK=fd10:244::/56\n" +
				"WEFT_IPV6_SUBNET=fd10:244:0:3::1/64\nWEFT_MTU=1420\nWEFT_IPMASQ=false\n",
		},
		{
			name: "IPv6 only",
			f:    SubnetFile{IPv6Network: pfx("fd10:244::/56"), IPv6Subnet: pfx("fd10:244:0:ab::1/64"), MTU: 1280},
			text: "WEFT_IPV6_NETWORK=fd10:244::/56\nWEFT_IPV6_SUBNET=fd10:244:0:ab::1/64\nWEFT_MTU=1280\nWEFT_IPMASQ=false\n",
		},
	}
	opts := cmpopts.EquateComparable(netip.Prefix{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(tt.f.Marshal()); got != tt.text {
				t.Errorf("Marshal:\n%s\nwant:\n%s", got, tt.text)
			}
			path := filepath.Join(t.TempDir(), "run", "weft", "subnet.env")
			if err := WriteSubnetFile(path, &tt.f); err != nil {
				t.Fatal(err)
			}
			got, err := ReadSubnetFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.f, *got, opts); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
			st, err := os.Stat(path)
			if err != nil || st.Mode().Perm() != 0o644 {
				t.Errorf("file mode %v, %v; want 0644", st.Mode(), err)
			}
			// Rewriting leaves no temporary files behind.
			tt.f.MTU = 1400
			if err := WriteSubnetFile(path, &tt.f); err != nil {
				t.Fatal(err)
			}
			ents, _ := os.ReadDir(filepath.Dir(path))
			if len(ents) != 1 {
				t.Errorf("directory holds %d entries, want only the subnet file", len(ents))
			}
			if got, _ := ReadSubnetFile(path); got == nil || got.MTU != 1400 {
				t.Errorf("after rewrite: %+v", got)
			}
		})
	}
}

func TestWriteSubnetFileRefusesInvalid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "subnet.env")
	// MTU 0 would write a file that no reader accepts.
	err := WriteSubnetFile(path, &SubnetFile{Subnet: netip.MustParsePrefix("10.244.3.1/24")})
	if err == nil || err.Error() != "refusing to write an invalid subnet file: WEFT_MTU is not set" {
		t.Fatalf("WriteSubnetFile: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("an invalid file was written: %v", err)
	}
}

func TestReadSubnetFileMissing(t *testing.T) {
	_, err := ReadSubnetFile(filepath.Join(t.TempDir(), "nope.env"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadSubnetFile of a missing file: %v, want fs.ErrNotExist", err)
	}
}

func TestParseSubnetFile(t *testing.T) {
	good := "WEFT_NETWORK=10.244.0.0/16\nWEFT_SUBNET=10.244.3.1/24\nWEFT_MTU=1450\n"
	t.Run("tolerant forms", func(t *testing.T) {
		in := "# written by weftd\n\n  WEFT_NETWORK = \"10.244.0.0/16\"\nWEFT_SUBNET='10.244.3.1/24'\nWEFT_MTU=1450\nWEFT_FUTURE_KEY=x\nWEFT_IPMASQ=1\n"
		f, err := ParseSubnetFile([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		if f.Subnet.String() != "10.244.3.1/24" || f.Network.String() != "10.244.0.0/16" || f.MTU != 1450 || !f.IPMasq {
			t.Errorf("parsed %+v", f)
		}
	})
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "neither WEFT_SUBNET nor WEFT_IPV6_SUBNET is set"},
		{"not key=value", good + "garbage\n", `line 4: "garbage" is not KEY=value`},
		{"bad subnet", "WEFT_SUBNET=10.244.3.1\nWEFT_MTU=1450\n", `line 1: WEFT_SUBNET: netip.ParsePrefix("10.244.3.1"): no '/'`},
		{"bad MTU", good + "WEFT_MTU=big\n", `line 4: WEFT_MTU: strconv.Atoi: parsing "big": invalid syntax`},
		{"MTU out of range", good + "WEFT_MTU=100\n", "line 4: WEFT_MTU: MTU 100 out of range 576-65535"},
		{"bad IPMASQ", good + "WEFT_IPMASQ=maybe\n", `line 4: WEFT_IPMASQ: strconv.ParseBool: parsing "maybe": invalid syntax`},
		{"no MTU", "WEFT_SUBNET=10.244.3.1/24\n", "WEFT_MTU is not set"},
		{"subnet outside network", "WEFT_NETWORK=10.244.0.0/16\nWEFT_SUBNET=10.245.3.1/24\nWEFT_MTU=1450\n",
			"WEFT_SUBNET 10.245.3.1/24 is not inside network 10.244.0.0/16"},
		{"subnet larger than network", "WEFT_NETWORK=10.244.0.0/16\nWEFT_SUBNET=10.244.0.1/8\nWEFT_MTU=1450\n",
			"WEFT_SUBNET 10.244.0.1/8 is not inside network 10.244.0.0/16"},
		{"IPv6 in WEFT_SUBNET", "WEFT_SUBNET=fd10::1/64\nWEFT_MTU=1450\n", "WEFT_SUBNET fd10::1/64 has the wrong address family"},
		{"IPv4 in WEFT_IPV6_SUBNET", "WEFT_IPV6_SUBNET=10.0.0.1/24\nWEFT_MTU=1450\n", "WEFT_IPV6_SUBNET 10.0.0.1/24 has the wrong address family"},
		{"IPv6 subnet outside network", "WEFT_IPV6_NETWORK=fd10:244::/56\nWEFT_IPV6_SUBNET=fd10:245::1/64\nWEFT_MTU=1450\n",
			"WEFT_IPV6_SUBNET fd10:245::1/64 is not inside network fd10:244::/56"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseSubnetFile([]byte(tt.in))
			if err == nil {
				t.Fatalf("parsed %+v, want error %q", f, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error %q, want %q", err, tt.want)
			}
		})
	}
}
