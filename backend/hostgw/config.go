// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package hostgw

import (
	"fmt"
	"io"
	"net/netip"

	"github.com/sirupsen/logrus"
)

// Config configures a host-gw [Backend].
type Config struct {
	// PublicIP is this node's underlay address. Required.
	PublicIP netip.Addr
	// Iface is the underlay link's name; empty: the link that holds
	// PublicIP. Direct routes go out of it.
	Iface string
	// Log receives the backend's log lines; nil discards them.
	Log logrus.FieldLogger
}

// withDefaults returns c with defaults applied, or an error if it is
// invalid.
func (c Config) withDefaults() (Config, error) {
	c.PublicIP = c.PublicIP.Unmap()
	if !c.PublicIP.IsValid() || c.PublicIP.IsUnspecified() || c.PublicIP.IsMulticast() {
		return Config{}, fmt.Errorf("host-gw config: public IP %q is not a unicast address", c.PublicIP)
	}
	if c.Log == nil {
		l := logrus.New()
		l.Out = io.Discard
		c.Log = l
	}
	return c, nil
}
