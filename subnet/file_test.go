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
	err := WriteSubnetFile(path, &SubnetFile{Network: netip.MustParsePrefix("10.244.0.0/16"), Subnet: netip.MustParsePrefix("10.244.3.1/24")})
	if err == nil || err.Error() != "refusing to write an invalid subnet file: WEFT_MTU: not set" {
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
		in := "# written by weftd\r\n\n  WEFT_NETWORK = \"10.244.0.0/16\"\nWEFT_SUBNET='10.244.3.1/24'\nWEFT_MTU=1450\nWEFT_FUTURE_KEY=x\nWEFT_IPMASQ=1\n"
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
		{"not key=value", good + "garbage\n", "line 4: not KEY=value"},
		{"bad subnet", "WEFT_SUBNET=10.244.3.1\nWEFT_MTU=1450\n", "line 1: WEFT_SUBNET: not an address prefix (address/length)"},
		{"bad network", "WEFT_NETWORK=ten\n" + good, "line 1: WEFT_NETWORK: not an address prefix (address/length)"},
		{"bad MTU", good + "WEFT_MTU=big\n", "line 4: WEFT_MTU: not an integer"},
		{"MTU out of range", good + "WEFT_MTU=100\n", "line 4: WEFT_MTU: out of range 576-65535"},
		{"MTU too large", good + "WEFT_MTU=65536\n", "line 4: WEFT_MTU: out of range 576-65535"},
		{"MTU below IPv6's", "WEFT_IPV6_NETWORK=fd10:244::/56\nWEFT_IPV6_SUBNET=fd10:244:0:3::1/64\nWEFT_MTU=1000\n", "WEFT_MTU: below 1280, the least IPv6 allows"},
		{"bad IPMASQ", good + "WEFT_IPMASQ=maybe\n", "line 4: WEFT_IPMASQ: not true or false"},
		{"no MTU", "WEFT_NETWORK=10.244.0.0/16\nWEFT_SUBNET=10.244.3.1/24\n", "WEFT_MTU: not set"},
		{"subnet without network", "WEFT_SUBNET=10.244.3.1/24\nWEFT_MTU=1450\n", "WEFT_SUBNET: set without WEFT_NETWORK"},
		{"IPv6 subnet without network", "WEFT_IPV6_SUBNET=fd10:244:0:3::1/64\nWEFT_MTU=1450\n", "WEFT_IPV6_SUBNET: set without WEFT_IPV6_NETWORK"},
		{"subnet outside network", "WEFT_NETWORK=10.244.0.0/16\nWEFT_SUBNET=10.245.3.1/24\nWEFT_MTU=1450\n",
			"WEFT_SUBNET: not inside WEFT_NETWORK"},
		{"subnet larger than network", "WEFT_NETWORK=10.244.0.0/16\nWEFT_SUBNET=10.244.0.1/8\nWEFT_MTU=1450\n",
			"WEFT_SUBNET: not inside WEFT_NETWORK"},
		{"IPv6 in WEFT_SUBNET", "WEFT_NETWORK=10.244.0.0/16\nWEFT_SUBNET=fd10::1/64\nWEFT_MTU=1450\n", "WEFT_SUBNET: wrong address family"},
		{"IPv6 in WEFT_NETWORK", "WEFT_NETWORK=fd10::/48\nWEFT_SUBNET=10.244.3.1/24\nWEFT_MTU=1450\n", "WEFT_NETWORK: wrong address family"},
		{"IPv4 in WEFT_IPV6_SUBNET", "WEFT_IPV6_NETWORK=fd10:244::/56\nWEFT_IPV6_SUBNET=10.0.0.1/24\nWEFT_MTU=1450\n", "WEFT_IPV6_SUBNET: wrong address family"},
		{"mapped IPv4 in WEFT_IPV6_SUBNET", "WEFT_IPV6_NETWORK=::ffff:0:0/96\nWEFT_IPV6_SUBNET=::ffff:10.0.0.1/120\nWEFT_MTU=1450\n", "WEFT_IPV6_NETWORK: wrong address family"},
		{"IPv6 subnet outside network", "WEFT_IPV6_NETWORK=fd10:244::/56\nWEFT_IPV6_SUBNET=fd10:245::1/64\nWEFT_MTU=1450\n",
			"WEFT_IPV6_SUBNET: not inside WEFT_IPV6_NETWORK"},
		// The content is never quoted: a root reader may have been pointed
		// at someone else's file.
		{"a password line", "root:$6$secretsalt$secrethash:19000:0:99999:7:::\n", "line 1: not KEY=value"},
		{"a secret value", good + "WEFT_SUBNET=s3cr3t-t0ken\n", "line 4: WEFT_SUBNET: not an address prefix (address/length)"},
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

// fileReasons are the reasons a [*FileError] may give: fixed text and the
// bounds, never the file's content.
var fileReasons = map[string]bool{
	"not KEY=value":                                   true,
	"not an address prefix (address/length)":          true,
	"not an integer":                                  true,
	"out of range 576-65535":                          true,
	"below 1280, the least IPv6 allows":               true,
	"not true or false":                               true,
	"neither WEFT_SUBNET nor WEFT_IPV6_SUBNET is set": true,
	"wrong address family":                            true,
	"set without WEFT_NETWORK":                        true,
	"set without WEFT_IPV6_NETWORK":                   true,
	"not inside WEFT_NETWORK":                         true,
	"not inside WEFT_IPV6_NETWORK":                    true,
	"not set":                                         true,
}

var fileKeys = map[string]bool{"": true, keyNetwork: true, keySubnet: true, keyIPv6Network: true, keyIPv6Subnet: true, keyMTU: true, keyIPMasq: true}

// FuzzParseSubnetFile feeds arbitrary content to the subnet file parser,
// which the root CNI plugin runs on a file an unprivileged user can write:
// it must never panic; an error names a line, one of the known keys and a
// fixed reason, never the content; what it accepts is valid (each subnet
// inside its network, the MTU in bounds) and survives Marshal and a second
// parse unchanged.
func FuzzParseSubnetFile(f *testing.F) {
	f.Add([]byte("WEFT_NETWORK=10.244.0.0/16\nWEFT_SUBNET=10.244.3.1/24\nWEFT_MTU=1450\nWEFT_IPMASQ=true\n"))
	f.Add([]byte("WEFT_NETWORK=10.244.0.0/16\nWEFT_SUBNET=10.244.3.1/24\nWEFT_IPV6_NETWORK=fd10:244::/56\nWEFT_IPV6_SUBNET=fd10:244:0:3::1/64\nWEFT_MTU=1420\nWEFT_IPMASQ=false\n"))
	f.Add([]byte("# c\n\n WEFT_IPV6_NETWORK = 'fd10:244::/56'\nWEFT_IPV6_SUBNET=\"fd10:244:0:ab::1/64\"\nWEFT_MTU=1280\nWEFT_X=y\n"))
	f.Add([]byte("root:$6$salt$hash:19000:0:99999:7:::\n"))
	f.Add([]byte("WEFT_NETWORK=10.244.0.0/16\nWEFT_SUBNET=10.245.3.1/24\nWEFT_MTU=1450\n"))
	f.Add([]byte("WEFT_SUBNET=::ffff:10.0.0.1/120\nWEFT_NETWORK=::ffff:10.0.0.0/104\nWEFT_MTU=9000\n"))
	f.Add([]byte("WEFT_IPV6_NETWORK=fe80::%eth0/10\nWEFT_IPV6_SUBNET=fe80::1%eth0/64\nWEFT_MTU=1500\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sf, err := ParseSubnetFile(data)
		if err != nil {
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T %q is not a *FileError", err, err)
			}
			if !fileReasons[fe.Reason] || !fileKeys[fe.Key] || fe.Line < 0 {
				t.Fatalf("error %q: reason %q, key %q, line %d: not a fixed reason and a known key", err, fe.Reason, fe.Key, fe.Line)
			}
			return
		}
		if sf.MTU < minMTU || sf.MTU > maxMTU {
			t.Fatalf("accepted MTU %d", sf.MTU)
		}
		for _, c := range []struct{ net, sub netip.Prefix }{{sf.Network, sf.Subnet}, {sf.IPv6Network, sf.IPv6Subnet}} {
			if c.sub.IsValid() && !(c.net.IsValid() && c.net.Contains(c.sub.Addr()) && c.net.Bits() <= c.sub.Bits()) {
				t.Fatalf("accepted subnet %s outside network %s", c.sub, c.net)
			}
		}
		again, err := ParseSubnetFile(sf.Marshal())
		if err != nil {
			t.Fatalf("Marshal of an accepted file does not parse: %v\n%s", err, sf.Marshal())
		}
		if *again != *sf {
			t.Fatalf("round trip changed %+v to %+v", sf, again)
		}
	})
}
