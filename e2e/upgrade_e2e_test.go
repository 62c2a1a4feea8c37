// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e && linux

package e2e_test

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/cni"
	"github.com/weftnet/weft/daemon/status"
	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/e2etest"
	"github.com/weftnet/weft/subnet"
)

// previousRelease is the commit the upgrade starts from: the last release
// that gossiped in plain text by default, whose CNI plugin left its bridge
// unmarked and read the subnet file without the checks of this one.
const previousRelease = "b7b3428"

// upgradeSteps are the gossip encryption modes of docs/operations.md's
// upgrade from a release that gossiped unencrypted: every node to accept
// with the new binaries, then every node to send, then every node to on.
var upgradeSteps = []string{"accept", "send", "on"}

// TestUpgrade upgrades a running three-node VXLAN cluster of the previous
// release to this build, node by node, the way docs/operations.md says,
// under pod traffic:
//
//	node1 ── node2 ── node3      every node: weftd and the CNI plugin of
//	pod1 → node2's pod1 → node3's pod1 → node1's pod1 (ICMP, every 10 ms)
//
// Step 1 restarts each node with this build's weftd and CNI plugin and
// WEFTD_GOSSIP_ENCRYPTION=accept; steps 2 and 3 restart every node again
// with send, then on. After every restart every node must see every other
// alive (one gossip group, never a split); on each upgraded node the new
// plugin must CHECK and DEL the pods the old one added and add a new pod
// on the old plugin's bridge. At the end no packet may have been lost, no
// subnet, epoch, node ID or VTEP MAC may have changed (the new weftd read
// the old state dir, records and subnet file), and gossip is encrypted on
// every node.
func TestUpgrade(t *testing.T) {
	e2etest.RequireRoot(t)
	prevBin := previousReleaseBinaries(t, previousRelease)
	c := e2etest.NewCluster(t, e2e.Options{Nodes: -1})
	ctx := t.Context()

	var nodes []*e2e.Node
	for range 3 {
		n, err := c.AddNode(0)
		if err != nil {
			t.Fatal(err)
		}
		n.BinDir = prevBin
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		if err := n.WaitReady(ctx, 60*time.Second); err != nil {
			t.Fatal(err)
		}
		// Pod 1 carries the traffic, pod 2 is deleted by the new plugin.
		for range 2 {
			if _, err := n.AddPod(ctx); err != nil {
				t.Fatalf("old plugin: %v", err)
			}
		}
	}
	if err := waitGossipAlive(ctx, nodes, 30*time.Second); err != nil {
		t.Fatalf("the previous release's gossip never converged: %v", err)
	}
	before := upgradeSnapshot(t, c, nodes)
	for _, n := range nodes {
		st := before.status[n.Name]
		if st.Node.GossipEncryption != "" {
			t.Fatalf("%s reports gossip encryption %q: it does not run the previous release (%s)", n.Name, st.Node.GossipEncryption, n.Proc().Binary)
		}
		t.Logf("%s runs %s: subnet %s epoch %d, node ID %s, VTEP MAC %s", n.Name, n.Proc().Binary, st.Node.Subnet, st.Node.Epoch, st.Node.ID, st.Node.BackendData.VTEPMAC)
	}

	var streams []*e2e.Stream
	var names []string
	stopStreams := func() []e2e.StreamResult {
		var rs []e2e.StreamResult
		for _, s := range streams {
			rs = append(rs, s.Stop())
		}
		streams = nil
		return rs
	}
	defer stopStreams()
	for i, n := range nodes {
		from, to := n.Pods()[0], nodes[(i+1)%len(nodes)].Pods()[0]
		s, err := e2e.StartStream(from.NS, to.IP, 10*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, s)
		names = append(names, from.Name+" → "+to.Name)
	}
	for _, s := range streams {
		waitStream(s, 50)
	}

	start := time.Now()
	for step, mode := range upgradeSteps {
		for _, n := range nodes {
			if step == 0 {
				// This build's plugin first, as the DaemonSet's init
				// container installs it before the new weftd starts:
				// it works from the old weftd's subnet file.
				n.BinDir = ""
				upgradePlugin(t, n, nodes)
			}
			restartStart := time.Now()
			n.Env = []string{"WEFTD_GOSSIP_ENCRYPTION=" + mode}
			if err := n.Restart(ctx); err != nil {
				t.Fatalf("step %d (%s): %v", step+1, mode, err)
			}
			ready := time.Since(restartStart)
			if err := waitRejoined(ctx, nodes, n, restartStart, 30*time.Second); err != nil {
				t.Fatalf("step %d (%s), %s restarted: gossip split: %v", step+1, mode, n.Name, err)
			}
			alive := time.Since(restartStart)
			if err := holdGossipAlive(ctx, nodes, upgradeHold); err != nil {
				t.Fatalf("step %d (%s), %s restarted: gossip split after %.2fs: %v", step+1, mode, n.Name, time.Since(restartStart).Seconds(), err)
			}
			st, err := n.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Node.GossipEncryption != mode || st.Node.GossipKeySource != "store" {
				t.Errorf("%s after step %d: gossip encryption %q, key from %q; want %q, from the store", n.Name, step+1, st.Node.GossipEncryption, st.Node.GossipKeySource, mode)
			}
			checkSubnetsKept(t, before.status[n.Name], st, "across the upgrade restart of "+n.Name)
			// The others, of either release, read the record the new
			// weftd renewed in etcd as before.
			for _, o := range nodes {
				if o == n {
					continue
				}
				ost, err := o.Status(ctx)
				if err != nil {
					t.Fatal(err)
				}
				b := before.status[n.Name].Node
				p, _ := statusPeer(ost, n.Name)
				if p.Source != "etcd" || p.Subnet.Masked() != b.Subnet.Masked() || p.Epoch != b.Epoch || p.Problem != "" {
					t.Errorf("step %d: %s (%s) sees the restarted %s as %+v; want from etcd, %s epoch %d, no problem", step+1, o.Name, o.Proc().Binary, n.Name, p, b.Subnet.Masked(), b.Epoch)
				}
			}
			t.Logf("step %d (%s): %s ready %.2fs after the restart began, seen rejoined by every node after %.2fs; every member alive everywhere for the next %s", step+1, mode, n.Name, ready.Seconds(), alive.Seconds(), upgradeHold)
		}
	}
	took := time.Since(start)
	for _, s := range streams {
		waitStream(s, s.Sent()+100)
	}
	results := stopStreams()
	var sent, lost int
	for i, r := range results {
		t.Logf("stream %s: %s", names[i], r)
		sent += r.Sent
		lost += r.Lost()
	}
	t.Logf("upgrade of %d nodes in %d steps took %.1fs; %d echoes sent, %d lost", len(nodes), len(upgradeSteps), took.Seconds(), sent, lost)
	if lost != 0 {
		t.Errorf("%d of %d echoes lost during the upgrade", lost, sent)
	}

	after := upgradeSnapshot(t, c, nodes)
	for _, n := range nodes {
		b, a := before.status[n.Name], after.status[n.Name]
		if a.Node.ID != b.Node.ID || a.Node.Epoch != b.Node.Epoch || a.Node.BackendData.VTEPMAC != b.Node.BackendData.VTEPMAC {
			t.Errorf("%s changed across the upgrade (the old state dir not read?): node ID %s → %s, epoch %d → %d, VTEP MAC %s → %s",
				n.Name, b.Node.ID, a.Node.ID, b.Node.Epoch, a.Node.Epoch, b.Node.BackendData.VTEPMAC, a.Node.BackendData.VTEPMAC)
		}
		checkSubnetsKept(t, b, a, "across the upgrade")
		bl, al := before.leases[n.Name], after.leases[n.Name]
		if al.Subnet != bl.Subnet || al.IPv6Subnet != bl.IPv6Subnet || al.Epoch != bl.Epoch || al.Record.NodeID != bl.Record.NodeID {
			t.Errorf("%s's lease in etcd changed across the upgrade: %s epoch %d node ID %s → %s epoch %d node ID %s",
				n.Name, bl.Subnet, bl.Epoch, bl.Record.NodeID, al.Subnet, al.Epoch, al.Record.NodeID)
		}
		if a.Node.GossipEncryption != "on" || a.Node.GossipWarning != "" {
			t.Errorf("%s after the upgrade: gossip encryption %q, warning %q; want on and no warning", n.Name, a.Node.GossipEncryption, a.Node.GossipWarning)
		}
		if len(a.Rejected) > 0 || len(a.RejectedLeases) > 0 {
			t.Errorf("%s refused what the previous release wrote: peers %+v, leases %+v", n.Name, a.Rejected, a.RejectedLeases)
		}
		for _, o := range nodes {
			if o == n {
				continue
			}
			p, ok := statusPeer(a, o.Name)
			if !ok || p.Source != "etcd" || p.Provisional || p.Problem != "" {
				t.Errorf("%s's peer %s after the upgrade: %+v (want it from etcd, confirmed, no problem)", n.Name, o.Name, p)
			}
			if ms := memberState(a, o.Name); ms != "alive" {
				t.Errorf("%s sees member %s %q after the upgrade, want alive", n.Name, o.Name, ms)
			}
		}
	}
	// A pod added now, from this build's subnet file, reaches every pod,
	// old and new.
	for _, n := range nodes {
		if _, err := n.AddPod(ctx); err != nil {
			t.Fatalf("ADD after the upgrade: %v", err)
		}
	}
	allToAll(t, c.Pods(), false)
}

// upgradeHold is how long after each restart every node must keep seeing
// every other alive: a gossip split shows within it, as members that stop
// answering are suspected and then declared dead within gossipDeadBound.
const upgradeHold = gossipDeadBound + time.Second

// waitRejoined waits until every node sees every other alive and the
// others saw the restarted node come back after since: an alive state from
// before the restart would prove nothing about the new process's gossip.
func waitRejoined(ctx context.Context, nodes []*e2e.Node, restarted *e2e.Node, since time.Time, timeout time.Duration) error {
	return e2e.Eventually(timeout, 50*time.Millisecond, func() error {
		for _, o := range nodes {
			st, err := o.Status(ctx)
			if err != nil {
				return err
			}
			for _, n := range nodes {
				if n == o {
					continue
				}
				p, ok := statusPeer(st, n.Name)
				switch {
				case !ok:
					return fmt.Errorf("%s lists no peer %s (peers: %s)", o.Name, n.Name, peerStates(st))
				case p.State != "alive":
					return fmt.Errorf("%s sees %s %s, want alive", o.Name, n.Name, p.State)
				case n == restarted && !p.Since.After(since):
					return fmt.Errorf("%s has seen %s alive since %s, before its restart at %s: not rejoined yet", o.Name, n.Name, p.Since.Format(time.StampMilli), since.Format(time.StampMilli))
				}
			}
		}
		return nil
	})
}

// holdGossipAlive checks, every 100 ms for d, that every node sees every
// other alive, and returns the first view that differs.
func holdGossipAlive(ctx context.Context, nodes []*e2e.Node, d time.Duration) error {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		for _, o := range nodes {
			for _, n := range nodes {
				if o == n {
					continue
				}
				if err := checkGossipPeerState(ctx, o, n, "alive"); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// upgradeState is what the cluster looks like at one moment: each node's
// /status and its lease as this build reads it from etcd.
type upgradeState struct {
	status map[string]*status.Report
	leases map[string]subnet.Lease
}

// upgradeSnapshot reads every node's /status, its lease from etcd and its
// subnet file, with this build's code, and checks that the three agree.
func upgradeSnapshot(t *testing.T, c *e2e.Cluster, nodes []*e2e.Node) upgradeState {
	t.Helper()
	ctx := t.Context()
	leases, err := gossipLeasesByNode(ctx, c)
	if err != nil {
		t.Fatalf("read the leases with this build's store: %v", err)
	}
	s := upgradeState{status: map[string]*status.Report{}, leases: leases}
	for _, n := range nodes {
		st, err := n.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s.status[n.Name] = st
		l, ok := leases[n.Name]
		if !ok {
			t.Fatalf("this build finds no lease of %s in etcd (it finds %d leases)", n.Name, len(leases))
		}
		if l.Subnet != st.Node.Subnet.Masked() || l.Epoch != st.Node.Epoch || l.Record.NodeID != st.Node.ID {
			t.Errorf("%s: etcd read by this build says %s epoch %d node ID %s, its /status %s epoch %d node ID %s",
				n.Name, l.Subnet, l.Epoch, l.Record.NodeID, st.Node.Subnet, st.Node.Epoch, st.Node.ID)
		}
		sf, err := n.SubnetFile()
		if err != nil {
			t.Fatalf("this build cannot read %s's subnet file: %v", n.Name, err)
		}
		if sf.Subnet.Masked() != st.Node.Subnet.Masked() || sf.MTU != st.Node.MTU {
			t.Errorf("%s's subnet file says %s MTU %d, its /status %s MTU %d", n.Name, sf.Subnet, sf.MTU, st.Node.Subnet, st.Node.MTU)
		}
	}
	return s
}

// upgradePlugin checks this build's CNI plugin on node n, whose weftd is
// still the previous release's (so is its subnet file), against the pods
// and bridge the previous release's plugin made: CHECK of the old pods passes on the unmarked bridge, a new pod is
// added on that bridge (which the plugin then marks as the network's) and
// reaches every other node's pods both ways, DEL of an old pod removes its
// veth.
func upgradePlugin(t *testing.T, n *e2e.Node, nodes []*e2e.Node) {
	t.Helper()
	ctx := t.Context()
	old := n.Pods()
	if len(old) != 2 {
		t.Fatalf("%s has %d pods, want the 2 of the old plugin", n.Name, len(old))
	}
	if alias := bridgeAlias(t, n); alias != "" {
		t.Fatalf("%s's bridge %s has alias %q before the new plugin ran: the old plugin set none", n.Name, cni.DefaultBridge, alias)
	}
	for _, p := range old {
		if err := p.Check(ctx); err != nil {
			t.Errorf("this build's CHECK of %s (added by the previous release): %v", p.Name, err)
		}
	}
	p3, err := n.AddPod(ctx)
	if err != nil {
		t.Fatalf("this build's ADD on %s's old bridge: %v", n.Name, err)
	}
	if alias, want := bridgeAlias(t, n), cni.BridgeAlias("weft"); alias != want {
		t.Errorf("%s's bridge after this build's ADD has alias %q, want %q (adopted)", n.Name, alias, want)
	}
	if err := p3.Check(ctx); err != nil {
		t.Errorf("CHECK of the new pod %s: %v", p3.Name, err)
	}
	for _, o := range nodes {
		if o == n {
			continue
		}
		q := o.Pods()[0]
		if _, err := e2e.Ping(p3.NS, q.IP, 5*time.Second); err != nil {
			t.Errorf("new pod %s → %s: %v", p3.Name, q.Name, err)
		}
		if _, err := e2e.Ping(q.NS, p3.IP, 5*time.Second); err != nil {
			t.Errorf("%s → new pod %s: %v", q.Name, p3.Name, err)
		}
	}
	gone := old[1]
	if err := gone.Remove(ctx); err != nil {
		t.Errorf("this build's DEL of %s (added by the previous release): %v", gone.Name, err)
	}
	alias := cni.VethAlias(gone.ContainerID, "eth0")
	err = n.NS.WithHandle(func(h *netlink.Handle) error {
		links, err := backend.LinkList(h)
		if err != nil {
			return err
		}
		for _, l := range links {
			if l.Attrs().Alias == alias {
				return fmt.Errorf("host veth %s of the deleted pod %s is still there", l.Attrs().Name, gone.Name)
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	// The old pod that stays is still checked and reachable from the new one.
	if err := old[0].Check(ctx); err != nil {
		t.Errorf("CHECK of %s after the new plugin marked the bridge: %v", old[0].Name, err)
	}
	if _, err := e2e.Ping(p3.NS, old[0].IP, 5*time.Second); err != nil {
		t.Errorf("new pod %s → old pod %s on the same bridge: %v", p3.Name, old[0].Name, err)
	}
	t.Logf("%s: this build's plugin checked the 2 old pods, added %s (%s) on the old bridge (now %q), deleted %s", n.Name, p3.Name, p3.IP, cni.BridgeAlias("weft"), gone.Name)
}

// bridgeAlias returns the alias of the node's CNI bridge.
func bridgeAlias(t *testing.T, n *e2e.Node) string {
	t.Helper()
	var alias string
	err := n.NS.WithHandle(func(h *netlink.Handle) error {
		l, err := h.LinkByName(cni.DefaultBridge)
		if err != nil {
			return fmt.Errorf("%s has no bridge %s: %w", n.Name, cni.DefaultBridge, err)
		}
		alias = l.Attrs().Alias
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return alias
}

// previousReleaseBinaries returns a directory holding weftd and the weft
// CNI plugin built from commit rev of this repository. They are built once
// per commit and Go version into the user's cache directory
// (~/.cache/weft/previous-release/<commit>-<go version>): the source comes
// from `git archive` into a temporary directory that is removed after the
// build. A missing commit (a shallow clone) skips the test, and fails it
// when CI is set.
func previousReleaseBinaries(t *testing.T, rev string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	root, err := exec.CommandContext(ctx, "git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatalf("git rev-parse --show-toplevel: %v (the upgrade test builds the previous release from this repository's history)", err)
	}
	repo := strings.TrimSpace(string(root))
	out, err := exec.CommandContext(ctx, "git", "-C", repo, "rev-parse", "--verify", "--quiet", rev+"^{commit}").Output()
	if err != nil {
		msg := fmt.Sprintf("the previous release %s is not in the history of %s (a shallow clone? fetch it with `git fetch --unshallow`)", rev, repo)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip("skipping: " + msg)
	}
	commit := strings.TrimSpace(string(out))
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatalf("no cache directory for the previous release's binaries: %v", err)
	}
	dir := filepath.Join(cache, "weft", "previous-release", commit+"-"+runtime.Version())
	if previousReleaseBuilt(dir) {
		t.Logf("previous release %s: binaries from %s", rev, dir)
		return dir
	}
	start := time.Now()
	tmp, err := os.MkdirTemp("", "weft-previous-release-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	src := filepath.Join(tmp, "src")
	if err := gitArchive(ctx, repo, commit, src); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(tmp, "bin")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-X main.version="+rev, "-o", bin+"/", "./daemon/cmd/weftd", "./cni/cmd/weft")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=readonly")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the previous release %s: %v\n%s", rev, err, b)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	// A rename publishes the directory whole; another process that won
	// the race leaves an equal one in place.
	if err := os.Rename(bin, dir); err != nil && !previousReleaseBuilt(dir) {
		t.Fatalf("cache the previous release's binaries: %v", err)
	}
	t.Logf("previous release %s: built weftd and weft into %s in %.1fs", rev, dir, time.Since(start).Seconds())
	return dir
}

// previousReleaseBuilt reports whether dir holds both binaries.
func previousReleaseBuilt(dir string) bool {
	for _, name := range []string{e2e.BinWeftd, e2e.BinCNI} {
		if _, err := e2e.CheckBinary(dir, name); err != nil {
			return false
		}
	}
	return true
}

// gitArchive writes the tree of commit in repo into dir (regular files,
// directories and symlinks of `git archive`'s tar output).
func gitArchive(ctx context.Context, repo, commit, dir string) error {
	cmd := exec.CommandContext(ctx, "git", "-C", repo, "archive", "--format=tar", commit)
	r, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("git archive %s: %w", commit, err)
	}
	extractErr := extractTar(r, dir)
	io.Copy(io.Discard, r)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git archive %s: %w: %s", commit, err, strings.TrimSpace(stderr.String()))
	}
	return extractErr
}

func extractTar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read git archive: %w", err)
		}
		name := filepath.Clean(h.Name)
		if !filepath.IsLocal(name) {
			if h.Typeflag == tar.TypeXGlobalHeader {
				continue
			}
			return fmt.Errorf("git archive holds %q, outside the tree", h.Name)
		}
		p := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, os.FileMode(h.Mode)&0o755|0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("write %s: %w", p, err)
			}
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		case tar.TypeXGlobalHeader:
			// git's commit ID comment
		default:
			return fmt.Errorf("git archive holds %q of an unexpected type %c", h.Name, h.Typeflag)
		}
	}
}
