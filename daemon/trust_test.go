// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sirupsen/logrus"

	"github.com/weftnet/weft/daemon/membership"
	"github.com/weftnet/weft/subnet"
)

// fakeGossip is a gossip member that reports fixed members and records
// what the daemon tells it.
type fakeGossip struct {
	mu      sync.Mutex
	members []membership.Member
	keep    []string
}

func (g *fakeGossip) Run(ctx context.Context) error    { <-ctx.Done(); return nil }
func (g *fakeGossip) SetMeta(membership.Meta) error    { return nil }
func (g *fakeGossip) Join([]string)                    {}
func (g *fakeGossip) ReloadKeys() error                { return nil }
func (g *fakeGossip) setMembers(m []membership.Member) { g.mu.Lock(); g.members = m; g.mu.Unlock() }

func (g *fakeGossip) Members() []membership.Member {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.members)
}

func (g *fakeGossip) Prune(keep []string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.keep = slices.Clone(keep)
	return 0
}

// lockedBuffer is a log sink safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// captureLog makes d log into the returned buffer.
func captureLog(d *daemon) *lockedBuffer {
	b := &lockedBuffer{}
	l := logrus.New()
	l.SetOutput(b)
	l.SetLevel(logrus.DebugLevel)
	d.log = l
	return b
}

func rogueMember(name, id, sn, ip string, epoch int64, version uint64) membership.Member {
	return membership.Member{
		Name: name, Addr: ip + ":7950", State: membership.StateAlive, Since: time.Now(),
		Meta: membership.Meta{NodeID: id, Subnet: pfx(sn), PublicIP: addr(ip), Epoch: epoch, Version: version,
			Data: subnet.BackendData{VTEPMAC: "02:42:00:00:00:66"}},
	}
}

// TestReconcileRefusesRogueEntries: with the store answering, gossip claims
// it does not confirm (another node's subnet at a higher epoch, a subnet
// outside the network, a /25 inside a peer's /24, half the internet, a
// dead node's name) and store entries that fail the checks never reach the
// backend. Each is listed in /status with its source and reason, counted in
// the metrics by reason, and logged once, not again at the next resync.
func TestReconcileRefusesRogueEntries(t *testing.T) {
	d, be, own := newReconcileDaemon(t)
	logs := captureLog(d)
	d.progress.subnetFileWritten = true
	g := &fakeGossip{}
	d.gossip = g
	d.setReachable(true)

	peerB := lease("node-b", "id-b", "10.244.2.0/24", "198.18.0.2", 11, 1)
	// node-c's record points its public IP at this node: refused by the
	// checks (and a peer whose MAC repeats node-b's would be too).
	selfIP := lease("node-c", "id-c", "10.244.3.0/24", "198.18.0.1", 12, 1)
	selfIP.Record.BackendData.VTEPMAC = "02:00:00:00:00:03"
	dead := lease("node-d", "id-d", "10.244.4.0/24", "198.18.0.4", 13, 1)
	dead.Record.BackendData.VTEPMAC = "02:00:00:00:00:04"
	d.onView(subnet.View{Complete: true, Revision: 30, Leases: []subnet.Lease{own, peerB, selfIP, dead}})
	if !slices.Equal(g.keep, []string{"node-b", "node-c", "node-d"}) {
		t.Errorf("Prune got %q, want the store's other node names", g.keep)
	}
	g.setMembers([]membership.Member{
		rogueMember("node-b", "id-b", "10.244.2.0/24", "198.18.0.2", 11, 1), // the honest node-b
		rogueMember("rogue-1", "", "10.244.2.0/24", "198.18.0.66", 99, 9),   // node-b's subnet, higher epoch
		rogueMember("rogue-2", "x", "10.99.0.0/24", "198.18.0.66", 99, 1),   // outside the network
		rogueMember("rogue-3", "x", "10.244.2.128/25", "198.18.0.66", 99, 1),
		rogueMember("rogue-4", "x", "0.0.0.0/1", "198.18.0.66", 99, 1),
		rogueMember("node-d", "", "10.244.4.0/24", "198.18.0.66", 99, 9), // the dead node's name
	})

	d.reconcileOnce(context.Background(), "change")
	got := be.last()
	if len(got.Peers) != 2 || got.Peers[0].Name != "node-b" || got.Peers[0].PublicIP != addr("198.18.0.2") || got.Peers[1].Name != "node-d" || got.Peers[1].PublicIP != addr("198.18.0.4") {
		t.Fatalf("desired peers: %+v, want node-b and node-d as the store says", got.Peers)
	}
	st := d.status()
	want := map[string]string{ // name → source and start of the reason
		"node-c":  "etcd public IP 198.18.0.1 is this node's own address",
		"rogue-1": "gossip gossip claim not confirmed by the store",
		"rogue-2": "gossip subnet 10.99.0.0/24 is not a /24 of the network",
		"rogue-3": "gossip subnet 10.244.2.128/25 is not a /24 of the network",
		"rogue-4": "gossip subnet 0.0.0.0/1 is not a /24 of the network",
		"node-d":  "gossip gossip claim not confirmed by the store",
	}
	if len(st.Rejected) != len(want) {
		t.Errorf("status rejected: %+v", st.Rejected)
	}
	for _, r := range st.Rejected {
		if w, ok := want[r.Name]; !ok || !strings.HasPrefix(r.Source+" "+r.Reason, w) {
			t.Errorf("rejected %s: %s %q, want %q", r.Name, r.Source, r.Reason, w)
		}
	}
	for _, p := range st.Peers {
		if p.Name != "node-b" && p.Name != "node-d" {
			t.Errorf("status peer %s: refused entries are not peers", p.Name)
		}
	}
	for _, c := range []struct {
		source, reason string
		n              float64
	}{
		{"etcd", reasonAddress, 1}, {"gossip", reasonUnconfirmed, 2}, {"gossip", reasonSubnet, 3}, {"etcd", reasonOverlap, 0},
	} {
		if v := metricValue(t, d.metrics.rejected.WithLabelValues(c.source, c.reason)); v != c.n {
			t.Errorf("weft_peers_rejected{source=%s,reason=%s} = %v, want %v", c.source, c.reason, v, c.n)
		}
	}

	// A resync with the same input logs nothing new and counts nothing.
	d.reconcileOnce(context.Background(), "resync")
	logged := strings.Count(logs.String(), "peer entry rejected; it does not reach the data plane")
	if logged != len(want) {
		t.Errorf("rejections logged %d times over two reconciles, want %d (once each)", logged, len(want))
	}
	if v := metricValue(t, d.metrics.rejections.WithLabelValues("gossip", reasonSubnet)); v != 3 {
		t.Errorf("weft_peer_rejections_total{gossip,subnet} = %v, want 3", v)
	}

	// The rogues go away: the rejections clear.
	g.setMembers(nil)
	d.reconcileOnce(context.Background(), "change")
	if st := d.status(); len(st.Rejected) != 1 || st.Rejected[0].Name != "node-c" {
		t.Errorf("after the rogues left: %+v", st.Rejected)
	}
	if v := metricValue(t, d.metrics.rejected.WithLabelValues("gossip", reasonSubnet)); v != 0 {
		t.Errorf("weft_peers_rejected{gossip,subnet} = %v after the rogues left, want 0", v)
	}
}

func TestReasonClass(t *testing.T) {
	for why, want := range map[string]string{
		"subnet 0.0.0.0/1 is not a /24 of the network 10.244.0.0/16":                   reasonSubnet,
		"subnet 10.244.2.0/24 overlaps 10.244.2.0/24 (peer node-b, epoch 3)":           reasonOverlap,
		"public IP 127.0.0.1 is a loopback address; VTEP MAC 01:00:00:00:00:00 is not": reasonAddress,
		"VTEP MAC 02:00:00:00:00:01 is also peer node-b's":                             reasonMAC,
		"WireGuard key is this node's":                                                 reasonWireGuard,
		"gossip claim not confirmed by the store (only the store assigns subnets)":     reasonUnconfirmed,
		"no network config to check the entry against":                                 reasonSubnet,
		"something new": reasonOther,
	} {
		if got := reasonClass(why); got != want {
			t.Errorf("reasonClass(%q) = %s, want %s", why, got, want)
		}
	}
}

// TestGossipKeyFromStore: without a key file the cluster's key comes from
// the store and is saved in the state dir (0600, base64); with the store
// away the saved copy is used; with neither, start fails saying what to
// do; a key file or encryption off takes no key from the store.
func TestGossipKeyFromStore(t *testing.T) {
	h := newLeaseHarness(t)
	d := h.d
	d.cfg.GossipBind, d.cfg.GossipEncryption = "198.18.0.1:7950", "on"
	logs := captureLog(d)
	ctx := context.Background()

	keys, err := d.gossipKeys(ctx)
	if err != nil || len(keys) != 1 || len(keys[0]) != 32 {
		t.Fatalf("gossipKeys: %d keys, %v", len(keys), err)
	}
	stored, _ := h.store.GossipKey(ctx)
	if string(stored) != string(keys[0]) {
		t.Error("the key is not the store's")
	}
	path := filepath.Join(d.state.dir, gossipKeyFile)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("saved key: %v, mode %v", err, fi.Mode())
	}
	raw, _ := os.ReadFile(path)
	if strings.TrimSpace(string(raw)) != base64.StdEncoding.EncodeToString(keys[0]) {
		t.Error("saved key differs from the store's")
	}
	if st := d.status(); st.Node.GossipKeySource != keySourceStore || st.Node.GossipEncryption != "on" || st.Node.GossipWarning != "" {
		t.Errorf("status: source %q encryption %q warning %q", st.Node.GossipKeySource, st.Node.GossipEncryption, st.Node.GossipWarning)
	}

	// The store away (a cancelled call fails like a timeout): the saved
	// copy.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	again, err := d.gossipKeys(cctx)
	if err != nil || len(again) != 1 || string(again[0]) != string(keys[0]) {
		t.Fatalf("gossipKeys with the store away: %v", err)
	}
	if d.status().Node.GossipKeySource != keySourceSaved {
		t.Errorf("key source %q, want saved", d.status().Node.GossipKeySource)
	}
	// No copy either: a clear error.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	_, err = d.gossipKeys(cctx)
	if err == nil || !strings.Contains(err.Error(), "--gossip-key-file") || !strings.Contains(err.Error(), "--gossip-encryption off") {
		t.Errorf("gossipKeys with no store and no saved key: %v", err)
	}
	// The key never appears in a log line.
	enc := base64.StdEncoding.EncodeToString(keys[0])
	if strings.Contains(logs.String(), enc) {
		t.Errorf("the log holds the key:\n%s", logs.String())
	}

	// A key file, or encryption off: nothing from the store.
	d.cfg.GossipKeyFile = "/etc/weft/gossip.key"
	if k, err := d.gossipKeys(cctx); k != nil || err != nil {
		t.Errorf("with a key file: %d keys, %v", len(k), err)
	}
	d.cfg.GossipKeyFile, d.cfg.GossipEncryption = "", "off"
	if k, err := d.gossipKeys(cctx); k != nil || err != nil {
		t.Errorf("with encryption off: %d keys, %v", len(k), err)
	}
	if w := d.status().Node.GossipWarning; !strings.Contains(w, "NOT encrypted") {
		t.Errorf("status warning with encryption off: %q", w)
	}
	// A corrupt saved copy is an error that does not quote it.
	if err := os.WriteFile(path, []byte("bm90LWEta2V5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.state.gossipKey(); err == nil || strings.Contains(err.Error(), "bm90LWEt") {
		t.Errorf("corrupt saved key: %v", err)
	}
}

// metricValue reads a gauge's or counter's value.
func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	if g := out.GetGauge(); g != nil {
		return g.GetValue()
	}
	return out.GetCounter().GetValue()
}
