// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"fmt"

	"github.com/sirupsen/logrus"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/hostgw"
	"github.com/weftnet/weft/backend/vxlan"
	"github.com/weftnet/weft/backend/wireguard"
	"github.com/weftnet/weft/subnet"
)

// newBackend constructs the backend the network config selects. It is an
// explicit switch: no self-registration (STYLE.md §3).
func newBackend(c *Config, nc *subnet.Config, u underlay, log logrus.FieldLogger) (backend.Backend, error) {
	b := nc.Backend
	switch b.Type {
	case subnet.BackendVXLAN:
		return vxlan.New(vxlan.Config{
			Name:          c.VXLANDevice,
			VNI:           b.VNI,
			Port:          b.Port,
			MTU:           b.MTU,
			DirectRouting: b.DirectRouting,
			PublicIP:      u.PublicIP,
			Iface:         u.Iface,
			StateDir:      c.StateDir,
			Log:           log.WithField("component", "vxlan"),
		})
	case subnet.BackendHostGW:
		return hostgw.New(hostgw.Config{
			PublicIP: u.PublicIP,
			Iface:    u.Iface,
			Log:      log.WithField("component", "host-gw"),
		})
	case subnet.BackendWireGuard:
		return wireguard.New(wireguard.Config{
			Name:                c.WireGuardDevice,
			ListenPort:          b.ListenPort,
			MTU:                 b.MTU,
			PersistentKeepalive: b.PersistentKeepalive,
			PublicIP:            u.PublicIP,
			Iface:               u.Iface,
			StateDir:            c.StateDir,
			PSKFile:             c.WireGuardPSKFile,
			Mode:                c.WireGuardMode,
			DisableOffloads:     !c.WireGuardOffloads,
			Log:                 log.WithField("component", "wireguard"),
		})
	}
	return nil, fmt.Errorf("unknown backend type %q (want %s, %s or %s)", b.Type, subnet.BackendVXLAN, subnet.BackendHostGW, subnet.BackendWireGuard)
}
