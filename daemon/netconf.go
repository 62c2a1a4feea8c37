// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/weftnet/weft/subnet"
)

// The network config: read at start (loadConfig), then followed by the
// config watch (onConfig). Both write d.netconf.

// loadConfig returns the network config from etcd, or the last good one
// saved in the state dir when etcd is unreachable (online false). With
// neither it keeps trying: forever while etcd answers that there is no
// (valid) config, for startWait while etcd does not answer.
func (d *daemon) loadConfig(ctx context.Context) (*subnet.Config, bool, error) {
	saved, serr := d.state.config()
	if serr != nil {
		d.log.WithError(serr).Warn("ignoring the saved network config")
	}
	d.netconf.mu.Lock()
	d.netconf.saved = saved
	d.netconf.mu.Unlock()
	deadline := time.Now().Add(startWait)
	var waitedFor string
	for attempt := 0; ; attempt++ {
		if perr := d.probe(ctx); perr != nil {
			if saved != nil {
				d.log.WithError(perr).Warn(d.cfg.storeKind() + " unreachable: starting with the last good network config saved in the state dir")
				return saved, false, nil
			}
			if time.Now().After(deadline) {
				return nil, false, fmt.Errorf("cannot start: %s is unreachable (%w) and %s has no saved network config (the first start of a node needs it)",
					d.cfg.storeName(), perr, d.cfg.StateDir)
			}
			d.log.WithError(perr).Warn(d.cfg.storeKind() + " unreachable; retrying")
		} else {
			cctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
			c, err := d.store.GetConfig(cctx)
			cancel()
			if err == nil {
				d.netconf.mu.Lock()
				d.saveConfigLocked(c)
				d.netconf.mu.Unlock()
				return c, true, nil
			}
			if ctx.Err() != nil {
				return nil, false, ctx.Err()
			}
			reason := err.Error()
			if saved != nil {
				d.log.WithError(err).Error("network config in etcd unusable: starting with the last good one saved in the state dir")
				d.setConfigErr(reason)
				return saved, true, nil
			}
			if reason != waitedFor {
				waitedFor = reason
				d.log.WithError(err).Errorf("waiting for a valid network config in %s", d.cfg.configPlace())
				d.setPhase("waiting for a valid network config: " + reason)
				d.setConfigErr(reason)
			}
			deadline = time.Now().Add(startWait)
		}
		if err := sleep(ctx, min(backoff(attempt), max(time.Until(deadline), 100*time.Millisecond))); err != nil {
			return nil, false, err
		}
	}
}

// onConfig handles a network config (or its error) from etcd.
func (d *daemon) onConfig(c *subnet.Config, err error) {
	nc := &d.netconf
	nc.mu.Lock()
	defer nc.mu.Unlock()
	if err != nil {
		var invalid *subnet.ConfigError
		if !errors.As(err, &invalid) && !errors.Is(err, subnet.ErrNoConfig) {
			// etcd did not answer: nothing is wrong with the config in
			// force, and the etcd probe reports the outage.
			d.log.WithError(err).Debug("cannot read the network config from etcd; keeping the one in force")
			return
		}
		reason := err.Error()
		if errors.Is(err, subnet.ErrNoConfig) {
			reason = "the network config was deleted from etcd"
		}
		if reason != nc.err {
			d.log.WithField("reason", reason).Error("invalid network config in etcd; keeping the last good one in force")
			d.metrics.configErrors.Inc()
		}
		nc.err = reason
		return
	}
	if nc.err != "" {
		d.log.Info("network config in etcd is valid again")
	}
	nc.err = ""
	changes := restartChanges(nc.inForce, c)
	if len(changes) > 0 {
		if strings.Join(changes, "; ") != strings.Join(nc.pendingRestart, "; ") {
			d.log.WithField("changes", strings.Join(changes, "; ")).Warn("restart weftd on every node to apply: " + strings.Join(changes, "; "))
		}
		nc.pendingRestart = changes
	} else {
		if nc.pendingRestart != nil {
			d.log.Info("network config is back to the one in force; no restart needed")
		}
		nc.pendingRestart = nil
		if c.SubnetMin != nc.inForce.SubnetMin || c.SubnetMax != nc.inForce.SubnetMax {
			d.log.WithFields(fields(logrus.Fields{"subnetMin": c.SubnetMin, "subnetMax": c.SubnetMax})).Info("network config updated (applies to future claims)")
		}
		nc.inForce = c
	}
	d.saveConfigLocked(c)
}

// saveConfigLocked writes c to the state dir unless it is the one saved
// there already (start-up reads the config from etcd, then the config
// watch delivers the same one again).
func (d *daemon) saveConfigLocked(c *subnet.Config) {
	if d.netconf.saved != nil && *d.netconf.saved == *c {
		return
	}
	if err := d.state.saveConfig(c); err != nil {
		d.log.WithError(err).Warn("save network config")
		return
	}
	d.netconf.saved = c
}

// setConfigErr records why the store's config is not used.
func (d *daemon) setConfigErr(reason string) {
	d.netconf.mu.Lock()
	d.netconf.err = reason
	d.netconf.mu.Unlock()
}

// netConfig returns the network config in force.
func (d *daemon) netConfig() *subnet.Config {
	d.netconf.mu.Lock()
	defer d.netconf.mu.Unlock()
	return d.netconf.inForce
}
