// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/sirupsen/logrus"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/daemon/membership"
	"github.com/weftnet/weft/subnet"
	subnetetcd "github.com/weftnet/weft/subnet/etcd"
)

// start runs the start sequence (see the package doc) and returns once the
// node is set up: config, backend, own data, lease, subnet file and
// masquerade. It starts no goroutine; run then runs the loops.
func (d *daemon) start(ctx context.Context) error {
	store, err := d.openStore(ctx)
	if err != nil {
		return err
	}
	d.store = store

	// 1. Network config: the store's, or the last good one saved.
	d.setPhase("getting the network config")
	nc, online, err := d.loadConfig(ctx)
	if err != nil {
		return err
	}
	d.netconf.mu.Lock()
	d.netconf.inForce = nc
	d.netconf.mu.Unlock()

	// 2. Backend, 3. own data and gossip.
	attrs, err := d.setUpBackend(ctx, nc)
	if err != nil {
		return err
	}
	if err := d.setUpOwnData(ctx, nc, attrs); err != nil {
		return err
	}

	// 4. Lease, and the peers saved at the last run.
	d.setPhase("claiming a subnet")
	lease, err := d.acquireLease(ctx, nc, online)
	if err != nil {
		return err
	}
	d.loadSnapshot()

	// 5. Forwarding, subnet file, masquerade.
	d.setPhase("writing the subnet file")
	if err := d.writeSubnetFile(nc, lease, attrs); err != nil {
		return err
	}
	d.applyMasquerade(nc, lease)
	if ok, err := sd.SdNotify(false, sd.SdNotifyReady); err != nil {
		d.log.WithError(err).Warn("systemd notify")
	} else if ok {
		d.log.Debug("notified systemd: ready")
	}
	d.setPhase("")
	d.started.Store(true)
	d.heartbeat.Store(time.Now().UnixNano())
	return nil
}

// openStore connects the store the flags name: the Kubernetes API with
// --kube-subnet-mgr, else etcd (the daemon reaches either only through the
// store).
func (d *daemon) openStore(ctx context.Context) (subnet.Store, error) {
	if d.cfg.Kube.SubnetMgr {
		return d.openKubeStore(ctx)
	}
	s, err := subnetetcd.Open(d.cfg.etcdClientConfig(), subnetetcd.Config{
		Prefix:   d.cfg.EtcdPrefix,
		LeaseTTL: d.cfg.LeaseTTL,
		Log:      d.log.WithField("component", "etcd"),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return s, nil
}

func (d *daemon) setPhase(p string) {
	d.progress.mu.Lock()
	d.progress.phase = p
	d.progress.mu.Unlock()
}

// setUpBackend constructs the backend nc selects and sets it up.
func (d *daemon) setUpBackend(ctx context.Context, nc *subnet.Config) (backend.Attrs, error) {
	d.setPhase("setting up the " + nc.Backend.Type + " backend")
	be, err := newBackend(d.cfg, nc, d.under, d.log)
	if err != nil {
		return backend.Attrs{}, fmt.Errorf("%s backend: %w", nc.Backend.Type, err)
	}
	d.be = be
	attrs, err := be.Setup(ctx)
	if err != nil {
		return backend.Attrs{}, fmt.Errorf("set up %s backend: %w", nc.Backend.Type, err)
	}
	d.lease.mu.Lock()
	d.lease.attrs = attrs
	d.lease.mu.Unlock()
	return attrs, nil
}

// setUpOwnData settles this node's own data and its version, and creates
// the gossip member (not yet running) when gossip is on.
func (d *daemon) setUpOwnData(ctx context.Context, nc *subnet.Config, attrs backend.Attrs) error {
	gaddr, err := d.gossipAdvertise()
	if err != nil {
		return err
	}
	data, err := d.state.dataVersion(ownData{
		PublicIP: d.under.PublicIP, PublicIPv6: d.under.PublicIPv6, GossipAddr: gaddr,
		BackendType: nc.Backend.Type, BackendData: attrs.Data,
	})
	if err != nil {
		return err
	}
	d.lease.mu.Lock()
	d.lease.data = data
	d.lease.mu.Unlock()
	if d.cfg.GossipBind == "" {
		return nil
	}
	keys, err := d.gossipKeys(ctx)
	if err != nil {
		return err
	}
	m, err := membership.New(membership.Config{
		Name:             d.nodeName,
		BindAddr:         d.cfg.GossipBind,
		AdvertiseAddr:    gaddr,
		Join:             d.cfg.GossipJoin,
		KeyFile:          d.cfg.GossipKeyFile,
		Keys:             keys,
		Encryption:       membership.Encryption(d.cfg.GossipEncryption),
		AllowedCIDRs:     d.cfg.GossipAllowedCIDRs,
		MaxMembers:       d.cfg.GossipMaxMembers,
		ProbeInterval:    d.cfg.GossipProbeInterval,
		ProbeTimeout:     d.cfg.GossipProbeTimeout,
		GossipInterval:   d.cfg.GossipInterval,
		PushPullInterval: d.cfg.GossipPushPullInterval,
		SuspicionMult:    d.cfg.GossipSuspicionMult,
		Log:              d.log.WithField("component", "membership"),
		OnChange:         d.trigger,
	})
	if err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	d.gossip = m
	refused := m.Refused
	d.metrics.refused.Store(&refused)
	if w := d.gossipWarning(); w != "" {
		d.log.WithField("encryption", d.cfg.GossipEncryption).Warn(w)
	}
	return nil
}

// storeGossipKeys is what the daemon uses of a store that keeps the
// cluster's gossip key (subnet.GossipKeys).
type storeGossipKeys interface {
	GossipKey(ctx context.Context) ([]byte, error)
}

// Where the gossip key came from (status.Node.GossipKeySource).
const (
	keySourceFile  = "file"
	keySourceStore = "store"
	keySourceSaved = "saved"
)

// gossipKeys returns the gossip keys to hand to membership directly: none
// with a key file (membership reads it) or with encryption off; otherwise
// the cluster's key from the store (created there by the first node to
// ask), which is saved in the state dir so that a start while the store is
// away still has it. The key is never logged.
func (d *daemon) gossipKeys(ctx context.Context) ([][]byte, error) {
	switch {
	case d.cfg.GossipKeyFile != "":
		d.setKeySource(keySourceFile)
		return nil, nil
	case membership.Encryption(d.cfg.GossipEncryption) == membership.EncryptionOff:
		return nil, nil
	}
	saved, serr := d.state.gossipKey()
	var err error
	if gk, ok := d.store.(storeGossipKeys); ok {
		cctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
		var key []byte
		key, err = gk.GossipKey(cctx)
		cancel()
		if err == nil {
			if !bytes.Equal(key, saved) {
				if err := d.state.saveGossipKey(key); err != nil {
					return nil, fmt.Errorf("gossip key: %w", err)
				}
			}
			d.setKeySource(keySourceStore)
			return [][]byte{key}, nil
		}
	} else {
		err = errors.New("the store does not keep a gossip key")
	}
	if saved != nil {
		d.log.WithError(err).Warn("gossip key: the store did not give it; using the copy saved in the state dir")
		d.setKeySource(keySourceSaved)
		return [][]byte{saved}, nil
	}
	if serr != nil {
		err = errors.Join(err, serr)
	}
	return nil, fmt.Errorf("gossip key: none in the state dir and the store did not give it (%w); "+
		"start once with the store reachable, give --gossip-key-file, or run unencrypted with --gossip-encryption off", err)
}

func (d *daemon) setKeySource(s string) {
	d.progress.mu.Lock()
	d.progress.gossipKeySource = s
	d.progress.mu.Unlock()
}

// gossipWarning says what an attacker on the underlay can do with the
// gossip encryption mode in force, or "" when gossip is authenticated.
func (d *daemon) gossipWarning() string {
	if d.cfg.GossipBind == "" {
		return ""
	}
	switch membership.Encryption(d.cfg.GossipEncryption) {
	case membership.EncryptionOff:
		return "gossip is NOT encrypted or authenticated (--gossip-encryption off): any host that reaches the gossip port can join and read node data"
	case membership.EncryptionAccept, membership.EncryptionSend:
		return "gossip accepts unencrypted messages (--gossip-encryption " + d.cfg.GossipEncryption + ", a step of the switch to encryption): finish it with --gossip-encryption on"
	}
	return ""
}

// loadSnapshot loads the peer view saved at the last run, the base of the
// desired state until the store's first complete view arrives.
func (d *daemon) loadSnapshot() {
	snap, err := d.state.snapshot()
	if err != nil {
		d.log.WithError(err).Warn("ignoring the saved peer snapshot")
	}
	d.lease.mu.Lock()
	d.lease.snapshot = snap
	d.lease.mu.Unlock()
	if snap != nil {
		// The reconcile loop, which owns savedSnapshot, starts later.
		d.recon.mu.Lock()
		d.recon.savedSnapshot = leasesDigest(snap.Leases)
		d.recon.mu.Unlock()
	}
}

// writeSubnetFile turns IP forwarding on (a failure is reported, not
// fatal) and writes the subnet file for the CNI plugin.
func (d *daemon) writeSubnetFile(nc *subnet.Config, lease *subnet.Lease, attrs backend.Attrs) error {
	if err := enableForwarding(nc.Network.IsValid(), nc.IPv6Network.IsValid()); err != nil {
		d.log.WithError(err).Error("IP FORWARDING IS OFF: pods on other nodes cannot reach this node's pods; enable it (sysctl) or run weftd with the privileges to do so")
		d.progress.mu.Lock()
		d.progress.forwardingProblem = err.Error()
		d.progress.mu.Unlock()
	}
	sf := &subnet.SubnetFile{
		Network: nc.Network, Subnet: subnet.GatewayPrefix(lease.Subnet),
		IPv6Network: nc.IPv6Network, IPv6Subnet: subnet.GatewayPrefix(lease.IPv6Subnet),
		MTU: attrs.MTU, IPMasq: d.cfg.IPMasq,
	}
	if err := subnet.WriteSubnetFile(d.cfg.SubnetFile, sf); err != nil {
		return err
	}
	d.progress.mu.Lock()
	d.progress.subnetFileWritten = true
	d.progress.mu.Unlock()
	d.log.WithFields(fields(logrus.Fields{"file": d.cfg.SubnetFile, "subnet": lease.Subnet, "ipv6Subnet": lease.IPv6Subnet, "mtu": attrs.MTU})).Info("subnet file written")
	return nil
}
