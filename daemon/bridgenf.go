// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/weftnet/weft/daemon/status"
)

// defaultBridgeSysctlDir holds br_netfilter's sysctls, per network
// namespace; it exists only while the module is loaded (or built in).
const defaultBridgeSysctlDir = "/proc/sys/net/bridge"

// brNetfilterFix is how to load br_netfilter now and at every boot. weftd
// cannot: its unit and its DaemonSet container may not load modules.
const brNetfilterFix = "modprobe br_netfilter, and keep it loaded at boot with a line br_netfilter in /etc/modules-load.d/weft.conf"

// bridgeNFState is br_netfilter's state as the reconcile loop last logged
// it. Written by the reconcile loop only.
type bridgeNFState struct {
	// mu guards the following.
	mu     sync.Mutex
	logged *status.BridgeNetfilter
}

// readBridgeNetfilter reads br_netfilter's state from dir (its sysctl
// directory in weftd's network namespace). v4 and v6 say which families
// the network has: a bridge-nf-call sysctl of an unused family is reported
// but is no problem.
func readBridgeNetfilter(dir string, v4, v6 bool) status.BridgeNetfilter {
	var bn status.BridgeNetfilter
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			bn.Problem = fmt.Sprintf("br_netfilter is not loaded (no %s): packets between pods on this node's bridge bypass kube-proxy's Service rules and network policy; %s", dir, brNetfilterFix)
		} else {
			bn.Problem = fmt.Sprintf("br_netfilter: %v", err)
		}
		return bn
	}
	bn.Loaded = true
	var problems, fixes []string
	for _, s := range []struct {
		key  string
		used bool
		val  *bool
	}{
		{"bridge-nf-call-iptables", v4, &bn.CallIPTables},
		{"bridge-nf-call-ip6tables", v6, &bn.CallIP6Tables},
	} {
		b, err := os.ReadFile(filepath.Join(dir, s.key))
		*s.val = err == nil && strings.TrimSpace(string(b)) == "1"
		switch {
		case !s.used || *s.val:
			continue
		case err != nil:
			problems = append(problems, fmt.Sprintf("read net.bridge.%s: %v", s.key, err))
		default:
			problems = append(problems, fmt.Sprintf("net.bridge.%s is %s, want 1", s.key, strings.TrimSpace(string(b))))
		}
		fixes = append(fixes, "net.bridge."+s.key+"=1")
	}
	if len(problems) > 0 {
		bn.Problem = fmt.Sprintf("%s: packets between pods on this node's bridge bypass kube-proxy's Service rules and network policy until the weft CNI plugin sets it at the next pod's ADD (or: sysctl -w %s)",
			strings.Join(problems, "; "), strings.Join(fixes, " "))
	}
	return bn
}

// bridgeNetfilter reads br_netfilter's state for the network in force.
func (d *daemon) bridgeNetfilter() status.BridgeNetfilter {
	v4, v6 := true, false
	if nc := d.netConfig(); nc != nil {
		v4, v6 = nc.Network.IsValid(), nc.IPv6Network.IsValid()
	}
	dir := d.cfg.bridgeSysctlDir
	if dir == "" {
		dir = defaultBridgeSysctlDir
	}
	return readBridgeNetfilter(dir, v4, v6)
}

// checkBridgeNetfilter logs br_netfilter's state when it changed since the
// last check (the first check logs only a problem).
func (d *daemon) checkBridgeNetfilter() {
	bn := d.bridgeNetfilter()
	d.bridgeNF.mu.Lock()
	prev := d.bridgeNF.logged
	d.bridgeNF.logged = &bn
	d.bridgeNF.mu.Unlock()
	if prev != nil && *prev == bn {
		return
	}
	log := d.log.WithField("bridgeNetfilter", fmt.Sprintf("loaded=%t call-iptables=%t call-ip6tables=%t", bn.Loaded, bn.CallIPTables, bn.CallIP6Tables))
	switch {
	case !bn.Loaded:
		log.Error("NOT READY: " + bn.Problem)
	case bn.Problem != "":
		log.Warn(bn.Problem)
	case prev != nil:
		log.Info("br_netfilter passes bridged pod traffic through the IP hooks")
	}
}
