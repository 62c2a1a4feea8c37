// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"net/netip"
	"sync"

	"github.com/weftnet/weft/subnet"
)

// masqTable is the name of weft's nftables table ("inet weft"); the rules
// are described in masq_linux.go.
const masqTable = "weft"

// masqConfig is what the rules are built from.
type masqConfig struct {
	Network, IPv6Network netip.Prefix
	Subnet, IPv6Subnet   netip.Prefix
}

// masqState is the masquerade table as installed. Written by start
// (applyMasquerade); read by the reconcile loop (repairMasquerade) and
// /status.
type masqState struct {
	// mu guards the following.
	mu  sync.Mutex
	cfg masqConfig
	// on: the rules are installed (and repaired on resync).
	on bool
	// problem is why the rules could not be installed; forwardDropWarn
	// the advice about other tables' forward-drop policies.
	problem         string
	forwardDropWarn string
}

// applyMasquerade installs (or, with --ip-masq=false, removes) weft's
// table in the current network namespace and checks for forward-drop
// policies. Problems are logged and shown in /status; they are not fatal.
func (d *daemon) applyMasquerade(nc *subnet.Config, l *subnet.Lease) {
	mc := masqConfig{Network: nc.Network, IPv6Network: nc.IPv6Network, Subnet: l.Subnet, IPv6Subnet: l.IPv6Subnet}
	warn, err := installMasq(d.cfg.IPMasq, mc)
	if warn != "" {
		d.log.Warn(warn)
	}
	d.masq.mu.Lock()
	d.masq.problem = ""
	if err != nil {
		d.masq.problem = err.Error()
	}
	d.masq.cfg, d.masq.on = mc, d.cfg.IPMasq && err == nil
	d.masq.forwardDropWarn = warn
	d.masq.mu.Unlock()
	switch {
	case err != nil:
		d.log.WithError(err).Error("masquerade rules: pod traffic leaving the cluster network may not be NATed")
	case d.cfg.IPMasq:
		d.log.WithField("table", "inet "+masqTable).Info("masquerade rules installed")
	default:
		d.log.Debug("masquerade off: weft's nftables table removed")
	}
}

// repairMasquerade re-installs weft's table when it is gone or changed
// (someone ran nft flush ruleset); it reports whether it had to.
func (d *daemon) repairMasquerade() bool {
	d.masq.mu.Lock()
	mc, ok := d.masq.cfg, d.masq.on
	d.masq.mu.Unlock()
	if !ok {
		return false
	}
	repaired, err := repairMasq(mc)
	if err != nil {
		d.log.WithError(err).Error("re-install masquerade rules")
		return false
	}
	if repaired {
		d.log.WithField("table", "inet "+masqTable).Warn("masquerade table was missing or changed; re-installed (drift repaired)")
	}
	return repaired
}
