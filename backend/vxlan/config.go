// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package vxlan

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/subnet/safefile"
)

// Encapsulation overhead: outer Ethernet is not counted by the MTU, so an
// IPv4 underlay costs 20 (IP) + 8 (UDP) + 8 (VXLAN) + 14 (inner Ethernet),
// an IPv6 underlay 20 more.
const (
	overheadIPv4 = 50
	overheadIPv6 = 70
)

// Config configures a VXLAN [Backend].
type Config struct {
	// Name of the device; default "weft.<VNI>".
	Name string
	// VNI (default 1) and UDP Port (default 8472) must be the same on
	// every node; they come from the network config.
	VNI, Port int
	// MTU of the device and the pods; 0: the underlay's MTU minus 50
	// (IPv4 underlay) or 70 (IPv6 underlay).
	MTU int
	// DirectRouting routes to peers on the same L2 segment directly,
	// without encapsulation.
	DirectRouting bool
	// PublicIP is this node's underlay address: the tunnel's local
	// address. Required.
	PublicIP netip.Addr
	// Iface is the underlay link's name; empty: the link that holds
	// PublicIP.
	Iface string
	// StateDir is where the VTEP MAC is kept (file vtep-mac-<Name>). Empty:
	// the MAC is not persisted (the device's own MAC is kept while the
	// device exists).
	StateDir string
	// Log receives the backend's log lines; nil discards them.
	Log logrus.FieldLogger
}

// withDefaults returns c with defaults applied, or an error if it is
// invalid.
func (c Config) withDefaults() (Config, error) {
	if c.VNI == 0 {
		c.VNI = subnet.DefaultVNI
	}
	if c.Port == 0 {
		c.Port = subnet.DefaultVXLANPort
	}
	if c.Name == "" {
		c.Name = fmt.Sprintf("weft.%d", c.VNI)
	}
	if c.Log == nil {
		l := logrus.New()
		l.Out = io.Discard
		c.Log = l
	}
	c.PublicIP = c.PublicIP.Unmap()
	var errs []error
	if c.VNI < 1 || c.VNI > 1<<24-1 {
		errs = append(errs, fmt.Errorf("VNI %d out of range 1-16777215", c.VNI))
	}
	if c.Port < 1 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d out of range 1-65535", c.Port))
	}
	if c.MTU != 0 && (c.MTU < 576 || c.MTU > 65535) {
		errs = append(errs, fmt.Errorf("MTU %d out of range 576-65535", c.MTU))
	}
	if err := backend.ValidIfName(c.Name); err != nil {
		errs = append(errs, fmt.Errorf("device name: %w", err))
	}
	if !c.PublicIP.IsValid() || c.PublicIP.IsUnspecified() || c.PublicIP.IsMulticast() {
		errs = append(errs, fmt.Errorf("public IP %q is not a unicast address", c.PublicIP))
	}
	return c, errors.Join(errs...)
}

// macFile is where the VTEP MAC of device name is kept.
func macFile(stateDir, name string) string {
	return filepath.Join(stateDir, "vtep-mac-"+name)
}

// loadMAC reads the persisted VTEP MAC; (nil, nil) when there is none.
func loadMAC(stateDir, name string) (net.HardwareAddr, error) {
	if stateDir == "" {
		return nil, nil
	}
	// The state dir's rules (see [safefile.Read]): owned by root, weftd's
	// user or the state dir's owner; no link, no FIFO; a MAC is 18 bytes.
	data, err := safefile.Read(macFile(stateDir, name), safefile.Rules{What: "VTEP MAC file", Max: 4 << 10, Owners: safefile.Self | safefile.DirOwner})
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read VTEP MAC: %w", err)
	}
	mac, err := net.ParseMAC(strings.TrimSpace(string(data)))
	if err != nil || len(mac) != 6 || mac[0]&1 != 0 {
		return nil, fmt.Errorf("%s does not hold a unicast Ethernet MAC (remove it: a new MAC is made)", macFile(stateDir, name))
	}
	return mac, nil
}

// saveMAC persists mac atomically (temporary file, fsync, rename).
func saveMAC(stateDir, name string, mac net.HardwareAddr) error {
	if stateDir == "" {
		return nil
	}
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	path := macFile(stateDir, name)
	tmp, err := os.CreateTemp(stateDir, ".vtep-mac-*")
	if err != nil {
		return fmt.Errorf("save VTEP MAC: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	_, err = fmt.Fprintln(tmp, mac.String())
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("save VTEP MAC to %s: %w", path, err)
	}
	return nil
}

// randomMAC returns a random locally administered unicast MAC.
func randomMAC() net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	if _, err := rand.Read(mac); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	mac[0] = mac[0]&^0x01 | 0x02
	return mac
}
