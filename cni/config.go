// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package cni

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/utils"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/cni/antispoof"
	"github.com/weftnet/weft/subnet"
)

// Defaults of the plugin's config keys.
const (
	DefaultDataDir = "/var/lib/cni/weft"
	DefaultBridge  = "weft0"
	// DefaultPolicyWait is how long ADD waits, by default, for weftd to
	// apply the network policy that includes the new pod.
	DefaultPolicyWait = 3 * time.Second
	// maxPolicyWait bounds "policyWait".
	maxPolicyWait = time.Minute
	// HostVethPrefix starts the name of every host-side veth the plugin
	// creates.
	HostVethPrefix = antispoof.PortPrefix
)

// Config is the plugin's network configuration after defaults.
type Config struct {
	types.PluginConf

	SubnetFile       string
	DataDir          string
	Bridge           string
	MTU              int // 0: take WEFT_MTU from the subnet file
	HairpinMode      bool
	IsDefaultGateway bool
	// PolicyWait bounds how long ADD waits for weftd to release the new
	// pod from the gate (package cni/gate): "policyWait", a duration such
	// as "3s"; 0 returns at once and leaves the pod held until weftd
	// releases it.
	PolicyWait time.Duration

	// Args is the config's "args" object as given (checked to be an
	// object; its cni.labels are read by [ParsePodIdentity] at ADD only).
	Args json.RawMessage

	// Attachments is the union of cni.dev/valid-attachments and the older
	// cni.dev/attachments (GC only).
	Attachments []types.GCAttachment
}

// ConfigError is an invalid network configuration (CNI code 7).
type ConfigError struct {
	Key string // the offending key, empty for the document as a whole
	Msg string
}

func (e *ConfigError) Error() string {
	if e.Key == "" {
		return "invalid network config: " + e.Msg
	}
	return fmt.Sprintf("invalid network config: key %q: %s", e.Key, e.Msg)
}

// ParseConfig decodes a network configuration as the runtime passes it on
// stdin. Unknown keys are ignored; a known key of the wrong type or with a
// bad value is a [*ConfigError] that names it.
func ParseConfig(data []byte) (*Config, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, &ConfigError{Msg: fmt.Sprintf("not a JSON object: %v", err)}
	}
	c := &Config{
		SubnetFile:       subnet.DefaultSubnetFile,
		DataDir:          DefaultDataDir,
		Bridge:           DefaultBridge,
		HairpinMode:      true,
		IsDefaultGateway: true,
		PolicyWait:       DefaultPolicyWait,
	}
	get := func(key string, dst any, what string) error {
		v, ok := raw[key]
		if !ok || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			return nil
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return &ConfigError{Key: key, Msg: fmt.Sprintf("want %s, got %s", what, shorten(v))}
		}
		return nil
	}
	var attach []types.GCAttachment
	var args map[string]json.RawMessage
	var wait *string
	for _, f := range []struct {
		key  string
		dst  any
		what string
	}{
		{"cniVersion", &c.CNIVersion, "a string"},
		{"name", &c.Name, "a string"},
		{"type", &c.Type, "a string"},
		{"dns", &c.DNS, "a DNS object"},
		{"prevResult", &c.RawPrevResult, "an object"},
		{"cni.dev/valid-attachments", &c.ValidAttachments, "a list of {containerID, ifname}"},
		{"cni.dev/attachments", &attach, "a list of {containerID, ifname}"},
		{"subnetFile", &c.SubnetFile, "a string"},
		{"dataDir", &c.DataDir, "a string"},
		{"bridge", &c.Bridge, "a string"},
		{"mtu", &c.MTU, "an integer"},
		{"hairpinMode", &c.HairpinMode, "true or false"},
		{"isDefaultGateway", &c.IsDefaultGateway, "true or false"},
		{"args", &args, "an object"},
		{"policyWait", &wait, `a duration such as "3s"`},
	} {
		if err := get(f.key, f.dst, f.what); err != nil {
			return nil, err
		}
	}
	if wait != nil {
		d, err := time.ParseDuration(*wait)
		if err != nil || d < 0 || d > maxPolicyWait {
			return nil, &ConfigError{Key: "policyWait", Msg: fmt.Sprintf("%q is not a duration from 0s to %s", *wait, maxPolicyWait)}
		}
		c.PolicyWait = d
	}
	c.Args = raw["args"]
	c.Attachments = append(append([]types.GCAttachment(nil), c.ValidAttachments...), attach...)
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) validate() error {
	if c.Name == "" {
		return &ConfigError{Key: "name", Msg: "missing"}
	}
	// skel already compiled the CNI library's name pattern; compiling our
	// own copy would cost every plugin process at start-up.
	if utils.ValidateNetworkName(c.Name) != nil || len(c.Name) > 200 {
		return &ConfigError{Key: "name", Msg: fmt.Sprintf("%q is not a valid network name (letters, digits, _ . -)", c.Name)}
	}
	if !filepath.IsAbs(c.SubnetFile) {
		return &ConfigError{Key: "subnetFile", Msg: fmt.Sprintf("%q is not an absolute path", c.SubnetFile)}
	}
	if !filepath.IsAbs(c.DataDir) {
		return &ConfigError{Key: "dataDir", Msg: fmt.Sprintf("%q is not an absolute path", c.DataDir)}
	}
	if err := backend.ValidIfName(c.Bridge); err != nil {
		return &ConfigError{Key: "bridge", Msg: err.Error()}
	}
	if strings.HasPrefix(c.Bridge, HostVethPrefix) && len(c.Bridge) == len(HostVethPrefix)+8 {
		return &ConfigError{Key: "bridge", Msg: fmt.Sprintf("%q looks like a weft pod veth name", c.Bridge)}
	}
	if c.MTU != 0 && (c.MTU < 576 || c.MTU > 65535) {
		return &ConfigError{Key: "mtu", Msg: fmt.Sprintf("%d is outside 576-65535", c.MTU)}
	}
	for _, a := range c.Attachments {
		if a.ContainerID == "" || a.IfName == "" {
			return &ConfigError{Key: "cni.dev/valid-attachments", Msg: "an entry lacks containerID or ifname"}
		}
	}
	return nil
}

// StoreDir returns the directory of the network's IPAM store.
func (c *Config) StoreDir() string {
	return filepath.Join(c.DataDir, c.Name)
}

// HostVethName returns the name of the host end of the veth of the
// attachment (containerID, ifname): [HostVethPrefix] and 8 hex digits.
func HostVethName(containerID, ifname string) string {
	sum := sha256.Sum256([]byte(containerID + "\x00" + ifname))
	return HostVethPrefix + hex.EncodeToString(sum[:4])
}

// bridgeAliasPrefix starts the alias that marks a bridge as the plugin's.
const bridgeAliasPrefix = "weft:"

// BridgeAlias returns the alias (IFLA_IFALIAS) that marks a bridge as the
// one the plugin manages for the network called network.
func BridgeAlias(network string) string {
	return bridgeAliasPrefix + network
}

// VethAlias returns the alias the host veth of (containerID, ifname) carries.
func VethAlias(containerID, ifname string) string {
	return containerID + "/" + ifname
}

func shorten(v json.RawMessage) string {
	s := string(bytes.TrimSpace(v))
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return s
}

// isHostVethName reports whether name has the form of a weft host veth.
func isHostVethName(name string) bool {
	if len(name) != len(HostVethPrefix)+8 || !strings.HasPrefix(name, HostVethPrefix) {
		return false
	}
	for _, r := range name[len(HostVethPrefix):] {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return true
}
