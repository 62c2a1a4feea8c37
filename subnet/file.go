// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package subnet

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultSubnetFile is where weftd writes the subnet file by default.
const DefaultSubnetFile = "/run/weft/subnet.env"

// SubnetFile is the content of the node's subnet file. Subnet and
// IPv6Subnet hold the gateway address with the subnet's prefix length (for
// example 10.244.3.1/24), as the CNI plugin puts it on the bridge.
type SubnetFile struct {
	Network     netip.Prefix // WEFT_NETWORK
	Subnet      netip.Prefix // WEFT_SUBNET
	IPv6Network netip.Prefix // WEFT_IPV6_NETWORK
	IPv6Subnet  netip.Prefix // WEFT_IPV6_SUBNET
	MTU         int          // WEFT_MTU
	IPMasq      bool         // WEFT_IPMASQ
}

// GatewayPrefix returns the first host address of subnet with subnet's
// prefix length (10.244.3.0/24 → 10.244.3.1/24). It returns the zero prefix
// for a zero subnet.
func GatewayPrefix(subnet netip.Prefix) netip.Prefix {
	if !subnet.IsValid() {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(subnet.Masked().Addr().Next(), subnet.Bits())
}

// Marshal renders the file in KEY=value lines. Unset (zero) prefixes and
// MTU are left out.
func (f *SubnetFile) Marshal() []byte {
	var b bytes.Buffer
	put := func(k string, p netip.Prefix) {
		if p.IsValid() {
			fmt.Fprintf(&b, "%s=%s\n", k, p)
		}
	}
	put("WEFT_NETWORK", f.Network)
	put("WEFT_SUBNET", f.Subnet)
	put("WEFT_IPV6_NETWORK", f.IPv6Network)
	put("WEFT_IPV6_SUBNET", f.IPv6Subnet)
	if f.MTU != 0 {
		fmt.Fprintf(&b, "WEFT_MTU=%d\n", f.MTU)
	}
	fmt.Fprintf(&b, "WEFT_IPMASQ=%t\n", f.IPMasq)
	return b.Bytes()
}

// WriteSubnetFile writes f to path atomically (temporary file in the same
// directory, fsync, rename), creating the directory if needed. It refuses
// to write a file that [ParseSubnetFile] would reject.
func WriteSubnetFile(path string, f *SubnetFile) error {
	// Never install a file that the readers (the CNI plugin) reject.
	data := f.Marshal()
	if _, err := ParseSubnetFile(data); err != nil {
		return fmt.Errorf("refusing to write an invalid subnet file: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create subnet file directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("create temporary subnet file: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write subnet file: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("chmod subnet file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync subnet file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close subnet file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("install subnet file: %w", err)
	}
	return nil
}

// ReadSubnetFile reads and parses the subnet file at path. A missing file
// returns an error for which errors.Is(err, fs.ErrNotExist) holds.
func ReadSubnetFile(path string) (*SubnetFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := ParseSubnetFile(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// ParseSubnetFile parses the KEY=value content of a subnet file. Blank
// lines and lines starting with # are ignored; unknown WEFT_ keys are
// ignored so that older plugins read newer files. It requires WEFT_SUBNET or
// WEFT_IPV6_SUBNET, each inside its network when the network is given.
func ParseSubnetFile(data []byte) (*SubnetFile, error) {
	var f SubnetFile
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: %q is not KEY=value", line, s)
		}
		v = strings.Trim(strings.TrimSpace(v), `"'`)
		var err error
		switch strings.TrimSpace(k) {
		case "WEFT_NETWORK":
			f.Network, err = netip.ParsePrefix(v)
		case "WEFT_SUBNET":
			f.Subnet, err = netip.ParsePrefix(v)
		case "WEFT_IPV6_NETWORK":
			f.IPv6Network, err = netip.ParsePrefix(v)
		case "WEFT_IPV6_SUBNET":
			f.IPv6Subnet, err = netip.ParsePrefix(v)
		case "WEFT_MTU":
			f.MTU, err = strconv.Atoi(v)
			if err == nil && (f.MTU < 576 || f.MTU > 65535) {
				err = fmt.Errorf("MTU %d out of range 576-65535", f.MTU)
			}
		case "WEFT_IPMASQ":
			f.IPMasq, err = strconv.ParseBool(v)
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", line, k, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !f.Subnet.IsValid() && !f.IPv6Subnet.IsValid() {
		return nil, fmt.Errorf("neither WEFT_SUBNET nor WEFT_IPV6_SUBNET is set")
	}
	for _, c := range []struct {
		name        string
		net, subnet netip.Prefix
		v6          bool
	}{
		{"WEFT_SUBNET", f.Network, f.Subnet, false},
		{"WEFT_IPV6_SUBNET", f.IPv6Network, f.IPv6Subnet, true},
	} {
		if !c.subnet.IsValid() {
			continue
		}
		if c.subnet.Addr().Is6() != c.v6 || c.subnet.Addr().Is4In6() {
			return nil, fmt.Errorf("%s %s has the wrong address family", c.name, c.subnet)
		}
		if c.net.IsValid() && !(c.net.Contains(c.subnet.Addr()) && c.net.Bits() <= c.subnet.Bits()) {
			return nil, fmt.Errorf("%s %s is not inside network %s", c.name, c.subnet, c.net)
		}
	}
	if f.MTU == 0 {
		return nil, fmt.Errorf("WEFT_MTU is not set")
	}
	return &f, nil
}
