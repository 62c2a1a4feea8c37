// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package subnet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// Defaults applied by [ParseConfig] and [Config.SetDefaults].
const (
	DefaultSubnetLen     = 24
	DefaultIPv6SubnetLen = 64
	DefaultBackend       = BackendVXLAN
	DefaultVNI           = 1
	DefaultVXLANPort     = 8472 // the Linux kernel's VXLAN port
	DefaultListenPort    = 51820
)

// Limits checked by [Config.Validate].
const (
	maxVNI     = 1<<24 - 1
	minMTU     = 576
	minMTUIPv6 = 1280
	maxMTU     = 65535
	// A subnet needs room for the gateway and at least one pod, and its
	// network address is put on devices: /30 and /126 are the longest.
	maxSubnetLen     = 30
	maxIPv6SubnetLen = 126
)

// backendKeys lists, per backend type, the Backend keys it accepts besides
// Type.
var backendKeys = map[string][]string{
	BackendVXLAN:     {"VNI", "Port", "MTU", "DirectRouting"},
	BackendWireGuard: {"ListenPort", "MTU", "PersistentKeepalive"},
	BackendHostGW:    {},
}

var configKeys = []string{"Network", "IPv6Network", "SubnetLen", "IPv6SubnetLen", "SubnetMin", "SubnetMax", "Backend"}

var allBackendKeys = []string{"Type", "VNI", "Port", "DirectRouting", "MTU", "ListenPort", "PersistentKeepalive"}

// ParseConfig parses the network config JSON strictly, applies defaults and
// validates the result. Unknown keys (including keys that differ only in
// case), keys of another backend type and trailing data are errors. Error
// messages name the key and say what is wrong.
func ParseConfig(data []byte) (*Config, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("network config is empty")
	}
	top, err := decodeObject(data, "network config")
	if err != nil {
		return nil, err
	}
	if err := checkKeys(top, configKeys, ""); err != nil {
		return nil, err
	}
	var c Config
	if err := decodePrefix(top, "Network", &c.Network); err != nil {
		return nil, err
	}
	if err := decodePrefix(top, "IPv6Network", &c.IPv6Network); err != nil {
		return nil, err
	}
	if err := decodeAddr(top, "SubnetMin", &c.SubnetMin); err != nil {
		return nil, err
	}
	if err := decodeAddr(top, "SubnetMax", &c.SubnetMax); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		key string
		dst *int
	}{{"SubnetLen", &c.SubnetLen}, {"IPv6SubnetLen", &c.IPv6SubnetLen}} {
		set, err := decodeValue(top, f.key, "an integer", f.dst)
		if err != nil {
			return nil, err
		}
		if set && *f.dst == 0 {
			return nil, fmt.Errorf("%s 0 is not a valid prefix length (leave it out for the default)", f.key)
		}
	}
	if raw, ok := top["Backend"]; ok {
		if err := parseBackend(raw, &c.Backend); err != nil {
			return nil, err
		}
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func parseBackend(raw json.RawMessage, b *BackendConfig) error {
	obj, err := decodeObject(raw, "Backend")
	if err != nil {
		return err
	}
	if err := checkKeys(obj, allBackendKeys, "Backend."); err != nil {
		return err
	}
	if _, err := decodeValue(obj, "Type", "a string", &b.Type); err != nil {
		return fmt.Errorf("Backend.%w", err)
	}
	typ := b.Type
	if typ == "" {
		typ = DefaultBackend
	}
	allowed, known := backendKeys[typ]
	if !known {
		return unknownBackendError(b.Type)
	}
	// Keys of another backend type are errors even when their value is the
	// zero value: they show a config written for another backend.
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		if k != "Type" && !slices.Contains(allowed, k) {
			return fmt.Errorf("Backend.%s is not valid for backend type %s", k, typ)
		}
	}
	ints := []struct {
		key  string
		dst  *int
		zero bool // an explicit 0 is meaningful
	}{
		{"VNI", &b.VNI, false},
		{"Port", &b.Port, false},
		{"MTU", &b.MTU, true},
		{"ListenPort", &b.ListenPort, false},
		{"PersistentKeepalive", &b.PersistentKeepalive, true},
	}
	for _, f := range ints {
		set, err := decodeValue(obj, f.key, "an integer", f.dst)
		if err != nil {
			return fmt.Errorf("Backend.%w", err)
		}
		if set && *f.dst == 0 && !f.zero {
			return fmt.Errorf("Backend.%s 0 is out of range (leave it out for the default)", f.key)
		}
	}
	if _, err := decodeValue(obj, "DirectRouting", "true or false", &b.DirectRouting); err != nil {
		return fmt.Errorf("Backend.%w", err)
	}
	return nil
}

// decodeObject decodes data as one JSON object and nothing after it. A key
// given twice is an error (encoding/json would keep the last silently).
func decodeObject(data []byte, what string) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	syntax := func(err error) error {
		// Offsets of the streaming decoder are relative to the value it
		// was reading; the whole document's check gives the absolute one.
		var v any
		if werr := json.Unmarshal(data, &v); werr != nil {
			err = werr
		}
		var se *json.SyntaxError
		switch {
		case errors.As(err, &se):
			return fmt.Errorf("%s is not valid JSON: %w (at byte %d)", what, err, se.Offset)
		case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
			return fmt.Errorf("%s is not valid JSON: unexpected end of input", what)
		}
		return fmt.Errorf("%s: %s", what, truncate(err.Error()))
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, syntax(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("%s must be a JSON object, not %s", what, jsonKind(tok))
	}
	obj := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntax(err)
		}
		key := tok.(string) // inside an object, Token returns keys as strings
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, syntax(err)
		}
		if _, dup := obj[key]; dup {
			return nil, fmt.Errorf("%s has the key %q twice", what, truncate(key))
		}
		obj[key] = raw
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, syntax(err)
	}
	end := dec.InputOffset()
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%s has data after its JSON object, which ends at byte %d", what, end)
	}
	return obj, nil
}

// jsonKind names the kind of JSON value a first token starts.
func jsonKind(tok json.Token) string {
	switch t := tok.(type) {
	case nil:
		return "null"
	case json.Delim:
		if t == '[' {
			return "a JSON array"
		}
	case string:
		return "a JSON string"
	case float64, json.Number:
		return "a JSON number"
	case bool:
		return "a JSON boolean"
	}
	return fmt.Sprintf("%v", tok)
}

// checkKeys rejects keys not in known, suggesting the right spelling when
// only the case differs.
func checkKeys(obj map[string]json.RawMessage, known []string, path string) error {
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		if slices.Contains(known, k) {
			continue
		}
		for _, want := range known {
			if strings.EqualFold(k, want) {
				return fmt.Errorf("unknown key %q in %s (did you mean %q? keys are case-sensitive)", truncate(path+k), where(path), want)
			}
		}
		return fmt.Errorf("unknown key %q in %s (known keys: %s)", truncate(path+k), where(path), strings.Join(known, ", "))
	}
	return nil
}

func where(path string) string {
	if path == "" {
		return "network config"
	}
	return strings.TrimSuffix(path, ".")
}

// decodeValue decodes obj[key] into dst if present and not null. It reports
// whether the key was present.
func decodeValue(obj map[string]json.RawMessage, key, want string, dst any) (bool, error) {
	raw, ok := obj[key]
	if !ok || string(bytes.TrimSpace(raw)) == "null" {
		return false, nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return true, fmt.Errorf("%s must be %s, not %s", key, want, truncate(strings.TrimSpace(string(raw))))
	}
	return true, nil
}

func decodePrefix(obj map[string]json.RawMessage, key string, dst *netip.Prefix) error {
	var s string
	set, err := decodeValue(obj, key, "a CIDR string such as \"10.244.0.0/16\"", &s)
	if err != nil || !set {
		return err
	}
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%s %q is not a valid CIDR (want an address and a prefix length, such as 10.244.0.0/16 or fd10:244::/56)", key, truncate(s))
	}
	*dst = p
	return nil
}

func decodeAddr(obj map[string]json.RawMessage, key string, dst *netip.Addr) error {
	var s string
	set, err := decodeValue(obj, key, "an address string such as \"10.244.10.0\"", &s)
	if err != nil || !set {
		return err
	}
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		hint := ""
		if strings.Contains(s, "/") {
			hint = " (write the subnet's first address, without a prefix length)"
		}
		return fmt.Errorf("%s %q is not a valid IP address%s", key, truncate(s), hint)
	}
	*dst = a
	return nil
}

func unknownBackendError(t string) error {
	return fmt.Errorf("unknown backend type %q (want %s, %s or %s)", truncate(t), BackendVXLAN, BackendWireGuard, BackendHostGW)
}

// SetDefaults fills unset fields with their defaults: SubnetLen 24 (when
// Network is set), IPv6SubnetLen 64 (when IPv6Network is set), backend
// vxlan with VNI 1 and port 8472, WireGuard listen port 51820.
func (c *Config) SetDefaults() {
	if c.Network.IsValid() && c.SubnetLen == 0 {
		c.SubnetLen = DefaultSubnetLen
	}
	if c.IPv6Network.IsValid() && c.IPv6SubnetLen == 0 {
		c.IPv6SubnetLen = DefaultIPv6SubnetLen
	}
	if c.Backend.Type == "" {
		c.Backend.Type = DefaultBackend
	}
	switch c.Backend.Type {
	case BackendVXLAN:
		if c.Backend.VNI == 0 {
			c.Backend.VNI = DefaultVNI
		}
		if c.Backend.Port == 0 {
			c.Backend.Port = DefaultVXLANPort
		}
	case BackendWireGuard:
		if c.Backend.ListenPort == 0 {
			c.Backend.ListenPort = DefaultListenPort
		}
	}
}

// reserved4 and reserved6 are ranges a pod network must not overlap.
var (
	reserved4 = []struct {
		p    netip.Prefix
		what string
	}{
		{netip.MustParsePrefix("0.0.0.0/8"), "the \"this network\" range"},
		{netip.MustParsePrefix("127.0.0.0/8"), "the loopback range"},
		{netip.MustParsePrefix("169.254.0.0/16"), "the link-local range"},
		{netip.MustParsePrefix("224.0.0.0/4"), "the multicast range"},
		{netip.MustParsePrefix("240.0.0.0/4"), "the reserved class E range"},
	}
	reserved6 = []struct {
		p    netip.Prefix
		what string
	}{
		{netip.MustParsePrefix("::/8"), "the reserved range holding loopback, unspecified and IPv4-mapped addresses"},
		{netip.MustParsePrefix("fe80::/10"), "the link-local range"},
		{netip.MustParsePrefix("ff00::/8"), "the multicast range"},
	}
)

// Validate checks the config. Unset fields are judged by their defaults
// (see [Config.SetDefaults]); c itself is not modified. The error names the
// key and what is wrong with it.
func (c *Config) Validate() error {
	d := *c
	d.SetDefaults()
	c = &d

	if !c.Network.IsValid() && !c.IPv6Network.IsValid() {
		return errors.New("neither Network nor IPv6Network is set: give at least one (e.g. \"Network\": \"10.244.0.0/16\")")
	}
	if c.Network.IsValid() {
		if err := checkNetwork("Network", c.Network, false); err != nil {
			return err
		}
		if err := checkSubnetLen("SubnetLen", c.SubnetLen, c.Network, maxSubnetLen); err != nil {
			return err
		}
	} else {
		for _, f := range []struct {
			key string
			set bool
		}{{"SubnetLen", c.SubnetLen != 0}, {"SubnetMin", c.SubnetMin.IsValid()}, {"SubnetMax", c.SubnetMax.IsValid()}} {
			if f.set {
				return fmt.Errorf("%s is set but Network is not (%s applies to the IPv4 network only)", f.key, f.key)
			}
		}
	}
	if c.IPv6Network.IsValid() {
		if err := checkNetwork("IPv6Network", c.IPv6Network, true); err != nil {
			return err
		}
		if err := checkSubnetLen("IPv6SubnetLen", c.IPv6SubnetLen, c.IPv6Network, maxIPv6SubnetLen); err != nil {
			return err
		}
	} else if c.IPv6SubnetLen != 0 {
		return errors.New("IPv6SubnetLen is set but IPv6Network is not")
	}
	if c.Network.IsValid() {
		if err := c.checkMinMax(); err != nil {
			return err
		}
	}
	return c.Backend.validate(c.IPv6Network.IsValid())
}

func checkNetwork(key string, p netip.Prefix, v6 bool) error {
	a := p.Addr()
	switch {
	case !v6 && a.Is6():
		return fmt.Errorf("Network %s is an IPv6 network: put it in IPv6Network", p)
	case v6 && a.Is4():
		return fmt.Errorf("IPv6Network %s is an IPv4 network: put it in Network", p)
	}
	if p != p.Masked() {
		return fmt.Errorf("%s %s has host bits set: write it as %s", key, p, p.Masked())
	}
	if v6 {
		for _, r := range reserved6 {
			if r.p.Overlaps(p) {
				return fmt.Errorf("IPv6Network %s overlaps %s %s", p, r.what, r.p)
			}
		}
		return nil
	}
	for _, r := range reserved4 {
		if r.p.Overlaps(p) {
			return fmt.Errorf("Network %s overlaps %s %s", p, r.what, r.p)
		}
	}
	return nil
}

func checkSubnetLen(key string, n int, network netip.Prefix, max int) error {
	if n < 1 || n > max {
		return fmt.Errorf("%s %d is out of range: want %d to %d", key, n, network.Bits()+1, max)
	}
	if n <= network.Bits() {
		return fmt.Errorf("%s %d must be longer than the prefix of %s (/%d): with /%d there is only %s",
			key, n, network, network.Bits(), n, plural(subnetCount(network.Bits(), n), "subnet"))
	}
	return nil
}

func (c *Config) checkMinMax() error {
	for _, f := range []struct {
		key string
		a   netip.Addr
	}{{"SubnetMin", c.SubnetMin}, {"SubnetMax", c.SubnetMax}} {
		if !f.a.IsValid() {
			continue
		}
		if !f.a.Is4() {
			return fmt.Errorf("%s %s is not an IPv4 address (SubnetMin/SubnetMax bound the IPv4 Network only)", f.key, f.a)
		}
		if !c.Network.Contains(f.a) {
			return fmt.Errorf("%s %s is outside Network %s", f.key, f.a, c.Network)
		}
		start := netip.PrefixFrom(f.a, c.SubnetLen).Masked().Addr()
		if start != f.a {
			return fmt.Errorf("%s %s is not the first address of a /%d subnet (the subnet holding it starts at %s)", f.key, f.a, c.SubnetLen, start)
		}
	}
	if c.SubnetMin.IsValid() && c.SubnetMax.IsValid() && c.SubnetMax.Less(c.SubnetMin) {
		return fmt.Errorf("SubnetMin %s is above SubnetMax %s", c.SubnetMin, c.SubnetMax)
	}
	if n := c.IPv4Space().Size(); n < 2 {
		return fmt.Errorf("SubnetMin %s to SubnetMax %s holds only %s of /%d: at least 2 are needed",
			c.IPv4Space().First().Addr(), c.IPv4Space().Last().Addr(), plural(n, "subnet"), c.SubnetLen)
	}
	return nil
}

func (b *BackendConfig) validate(ipv6 bool) error {
	allowed, ok := backendKeys[b.Type]
	if !ok {
		return unknownBackendError(b.Type)
	}
	for _, f := range []struct {
		key string
		set bool
	}{
		{"VNI", b.VNI != 0},
		{"Port", b.Port != 0},
		{"MTU", b.MTU != 0},
		{"DirectRouting", b.DirectRouting},
		{"ListenPort", b.ListenPort != 0},
		{"PersistentKeepalive", b.PersistentKeepalive != 0},
	} {
		if f.set && !slices.Contains(allowed, f.key) {
			return fmt.Errorf("Backend.%s is not valid for backend type %s", f.key, b.Type)
		}
	}
	switch b.Type {
	case BackendVXLAN:
		if b.VNI < 1 || b.VNI > maxVNI {
			return fmt.Errorf("Backend.VNI %d is out of range 1-%d", b.VNI, maxVNI)
		}
		if b.Port < 1 || b.Port > 65535 {
			return fmt.Errorf("Backend.Port %d is out of range 1-65535", b.Port)
		}
	case BackendWireGuard:
		if b.ListenPort < 1 || b.ListenPort > 65535 {
			return fmt.Errorf("Backend.ListenPort %d is out of range 1-65535", b.ListenPort)
		}
		if b.PersistentKeepalive < 0 || b.PersistentKeepalive > 65535 {
			return fmt.Errorf("Backend.PersistentKeepalive %d is out of range 0-65535 seconds (0: off)", b.PersistentKeepalive)
		}
	}
	if b.MTU != 0 {
		lo := minMTU
		if ipv6 {
			lo = minMTUIPv6
		}
		if b.MTU < lo || b.MTU > maxMTU {
			why := ""
			if ipv6 {
				why = " (IPv6 needs at least 1280)"
			}
			return fmt.Errorf("Backend.MTU %d is out of range %d-%d%s; leave it out to derive it from the underlay", b.MTU, lo, maxMTU, why)
		}
	}
	return nil
}

// subnetCount returns 2^(sub-net), saturated at the largest uint64.
func subnetCount(netBits, subBits int) uint64 {
	n := subBits - netBits
	if n <= 0 {
		return 1
	}
	if n >= 64 {
		return ^uint64(0)
	}
	return 1 << n
}

func plural(n uint64, word string) string {
	if n == 1 {
		return "1 " + word
	}
	if n == ^uint64(0) {
		return "2^64 or more " + word + "s"
	}
	return fmt.Sprintf("%d %ss", n, word)
}
