// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package wireguard

import (
	"fmt"
	"net/netip"

	"github.com/sirupsen/logrus"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/subnet"
)

// Device modes accepted in [Config.Mode].
const (
	// ModeAuto uses the kernel module when the kernel supports WireGuard
	// and the embedded userspace device otherwise.
	ModeAuto = "auto"
	// ModeKernel requires kernel WireGuard; Setup fails without it.
	ModeKernel = "kernel"
	// ModeUserspace always runs the embedded userspace device.
	ModeUserspace = "userspace"
)

// Defaults applied by [New].
const (
	DefaultName = "weft-wg"
)

// Overhead of WireGuard encapsulation in bytes: outer IP header, UDP header,
// WireGuard data header (16) and authentication tag (16).
const (
	overheadIPv4 = 60
	overheadIPv6 = 80
)

// Config configures a [Backend].
type Config struct {
	// Name is the WireGuard interface name (default "weft-wg"). With the
	// userspace device it also names the UAPI socket
	// /var/run/wireguard/<Name>.sock, which is shared by all network
	// namespaces of the host: nodes sharing a host need distinct names.
	Name string
	// ListenPort is the UDP port the device listens on (default 51820).
	ListenPort int
	// MTU of the WireGuard interface and the pod network; 0 derives it
	// from the underlay interface (minus 60 bytes over IPv4, 80 over IPv6).
	MTU int
	// PersistentKeepalive, in seconds, sent to every peer (0: off).
	PersistentKeepalive int
	// PublicIP is this node's underlay address; its family decides the
	// encapsulation overhead.
	PublicIP netip.Addr
	// Iface is the underlay interface name, used to derive the MTU. When
	// empty the interface that carries PublicIP is used.
	Iface string
	// StateDir holds the private key file (created 0700 if missing).
	StateDir string
	// PSKFile, when set, names a file holding a base64 pre-shared key used
	// with every peer. It must not be readable by group or others.
	PSKFile string
	// Mode is "auto" (default), "kernel" or "userspace".
	Mode string
	// DisableOffloads opens the userspace device's TUN interface without
	// offloads: no virtio-net header, so the kernel segments every TCP/UDP
	// stream and the device reads and writes one packet per system call
	// (several times slower). It is for kernels that reject the coalesced
	// packets the device writes with offloads on. The device's UDP sockets
	// keep their segmentation offload, which the library probes and turns
	// off by itself when the kernel refuses it. No effect on a kernel
	// device.
	DisableOffloads bool
	// Log receives the backend's logs; nil discards them.
	Log logrus.FieldLogger
}

// withDefaults returns c with defaults applied, or an error if c is
// invalid.
func (c Config) withDefaults() (Config, error) {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.ListenPort == 0 {
		c.ListenPort = subnet.DefaultListenPort
	}
	if c.Mode == "" {
		c.Mode = ModeAuto
	}
	if c.Log == nil {
		l := logrus.New()
		l.Out = discard{}
		c.Log = l
	}
	if err := backend.ValidIfName(c.Name); err != nil {
		return c, err
	}
	// It also names the UAPI socket file: printable ASCII only.
	for _, r := range c.Name {
		if r < 0x21 || r > 0x7e {
			return c, fmt.Errorf("interface name %q contains %q", c.Name, r)
		}
	}
	if c.ListenPort < 1 || c.ListenPort > 65535 {
		return c, fmt.Errorf("listen port %d out of range 1-65535", c.ListenPort)
	}
	if c.MTU != 0 && (c.MTU < 1280 || c.MTU > 65535-overheadIPv6) {
		return c, fmt.Errorf("mtu %d out of range 1280-%d", c.MTU, 65535-overheadIPv6)
	}
	if c.PersistentKeepalive < 0 || c.PersistentKeepalive > 65535 {
		return c, fmt.Errorf("persistent keepalive %d out of range 0-65535", c.PersistentKeepalive)
	}
	if c.StateDir == "" {
		return c, fmt.Errorf("state dir is required (it holds the private key)")
	}
	switch c.Mode {
	case ModeAuto, ModeKernel, ModeUserspace:
	default:
		return c, fmt.Errorf("mode %q is not one of %s, %s, %s", c.Mode, ModeAuto, ModeKernel, ModeUserspace)
	}
	return c, nil
}

// podMTU derives the pod MTU from the underlay MTU and the family of the
// public IP.
func podMTU(underlayMTU int, publicIP netip.Addr) int {
	if publicIP.Is6() && !publicIP.Is4In6() {
		return underlayMTU - overheadIPv6
	}
	return underlayMTU - overheadIPv4
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
