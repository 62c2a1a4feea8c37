// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package subnet

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/weftnet/weft/subnet/safefile"
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
	put(keyNetwork, f.Network)
	put(keySubnet, f.Subnet)
	put(keyIPv6Network, f.IPv6Network)
	put(keyIPv6Subnet, f.IPv6Subnet)
	if f.MTU != 0 {
		fmt.Fprintf(&b, "%s=%d\n", keyMTU, f.MTU)
	}
	fmt.Fprintf(&b, "%s=%t\n", keyIPMasq, f.IPMasq)
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

// MaxSubnetFileSize bounds the subnet file a reader accepts. weftd writes
// at most six short lines (about 200 bytes; the longest line, an IPv6
// subnet, is under 64), so 4 KiB, one page read in one system call, leaves
// room for comments and newer keys while a file that is larger is not
// weftd's: the root CNI plugin never reads or parses more than this.
const MaxSubnetFileSize = 4096

// ReadSubnetFile reads and parses the subnet file at path. The CNI plugin
// runs it as root on a file in a directory that weftd's unprivileged user
// owns, so it opens the file as described in [safefile.Read]: no symbolic
// link anywhere on the path, a regular file of at most
// [MaxSubnetFileSize] bytes with one link, owned by root or by the owner of
// its directory and writable by no one else, in directories only root or
// that owner can write (or sticky). A missing file returns an error for
// which errors.Is(err, fs.ErrNotExist) holds. Errors never quote the
// file's content.
func ReadSubnetFile(path string) (*SubnetFile, error) {
	data, err := safefile.Read(path, safefile.Rules{What: "subnet file", Max: MaxSubnetFileSize, Owners: safefile.DirOwner})
	if err != nil {
		return nil, err
	}
	f, err := ParseSubnetFile(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// FileError is a problem in a subnet file's content. Its message names the
// line and the key (one of the WEFT_ keys this package knows), never the
// content: a root reader may have been pointed at someone else's file.
type FileError struct {
	Line   int    // 1-based; 0 for the file as a whole
	Key    string // the offending key, empty when the line has none
	Reason string
}

func (e *FileError) Error() string {
	switch {
	case e.Line > 0 && e.Key != "":
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Key, e.Reason)
	case e.Line > 0:
		return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
	case e.Key != "":
		return e.Key + ": " + e.Reason
	}
	return e.Reason
}

// The subnet file's keys.
const (
	keyNetwork     = "WEFT_NETWORK"
	keySubnet      = "WEFT_SUBNET"
	keyIPv6Network = "WEFT_IPV6_NETWORK"
	keyIPv6Subnet  = "WEFT_IPV6_SUBNET"
	keyMTU         = "WEFT_MTU"
	keyIPMasq      = "WEFT_IPMASQ"
)

// ParseSubnetFile parses the KEY=value content of a subnet file. Blank
// lines and lines starting with # are ignored; unknown keys are ignored so
// that older plugins read newer files. It requires WEFT_SUBNET or
// WEFT_IPV6_SUBNET, each with its network and inside it, and WEFT_MTU in
// 576-65535 (1280 and up with IPv6), the bounds of the network config. Errors are [*FileError]s.
func ParseSubnetFile(data []byte) (*SubnetFile, error) {
	var f SubnetFile
	line := 0
	for len(data) > 0 {
		var raw []byte
		raw, data, _ = bytes.Cut(data, []byte("\n"))
		line++
		s := strings.TrimSpace(string(raw))
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return nil, &FileError{Line: line, Reason: "not KEY=value"}
		}
		v = strings.Trim(strings.TrimSpace(v), `"'`)
		key := strings.TrimSpace(k)
		reason := ""
		prefix := func(dst *netip.Prefix) {
			p, err := netip.ParsePrefix(v)
			if err != nil {
				reason = "not an address prefix (address/length)"
				return
			}
			*dst = p
		}
		switch key {
		case keyNetwork:
			prefix(&f.Network)
		case keySubnet:
			prefix(&f.Subnet)
		case keyIPv6Network:
			prefix(&f.IPv6Network)
		case keyIPv6Subnet:
			prefix(&f.IPv6Subnet)
		case keyMTU:
			n, err := strconv.Atoi(v)
			switch {
			case err != nil:
				reason = "not an integer"
			case n < minMTU || n > maxMTU:
				reason = fmt.Sprintf("out of range %d-%d", minMTU, maxMTU)
			default:
				f.MTU = n
			}
		case keyIPMasq:
			b, err := strconv.ParseBool(v)
			if err != nil {
				reason = "not true or false"
			}
			f.IPMasq = b
		default:
			continue
		}
		if reason != "" {
			return nil, &FileError{Line: line, Key: key, Reason: reason}
		}
	}
	if !f.Subnet.IsValid() && !f.IPv6Subnet.IsValid() {
		return nil, &FileError{Reason: "neither " + keySubnet + " nor " + keyIPv6Subnet + " is set"}
	}
	for _, c := range []struct {
		netKey, subKey string
		net, subnet    netip.Prefix
		v6             bool
	}{
		{keyNetwork, keySubnet, f.Network, f.Subnet, false},
		{keyIPv6Network, keyIPv6Subnet, f.IPv6Network, f.IPv6Subnet, true},
	} {
		for _, p := range []struct {
			key string
			p   netip.Prefix
		}{{c.netKey, c.net}, {c.subKey, c.subnet}} {
			if p.p.IsValid() && (p.p.Addr().Is6() != c.v6 || p.p.Addr().Is4In6() || p.p.Addr().Zone() != "") {
				return nil, &FileError{Key: p.key, Reason: "wrong address family"}
			}
		}
		if !c.subnet.IsValid() {
			continue
		}
		if !c.net.IsValid() {
			return nil, &FileError{Key: c.subKey, Reason: "set without " + c.netKey}
		}
		if !(c.net.Contains(c.subnet.Addr()) && c.net.Bits() <= c.subnet.Bits()) {
			return nil, &FileError{Key: c.subKey, Reason: "not inside " + c.netKey}
		}
	}
	if f.MTU == 0 {
		return nil, &FileError{Key: keyMTU, Reason: "not set"}
	}
	if f.IPv6Subnet.IsValid() && f.MTU < minMTUIPv6 {
		return nil, &FileError{Key: keyMTU, Reason: fmt.Sprintf("below %d, the least IPv6 allows", minMTUIPv6)}
	}
	return &f, nil
}
