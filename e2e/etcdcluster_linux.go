// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A multi-member etcd (Options.EtcdMembers = 3):
//
//	underlay br0 198.18.0.0/24
//	  ├── etcd1 198.18.0.31   each member a weft-etcd process in its own
//	  ├── etcd2 198.18.0.32   namespace: client port 2379, peer port 2380
//	  ├── etcd3 198.18.0.33
//	  └── node1 .11, node2 .12, …  weftd --etcd-endpoints <all three>
//
// Killing a member (SIGKILL) closes its sockets as a crash does; stopping
// it (SIGTERM) is a clean shutdown. Its data stays in its directory until
// [EtcdCluster.Replace] wipes it.

// etcdMemberIP is the underlay address of member i (1-based).
func etcdMemberIP(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 0, byte(30 + i)}) }

func (c *Cluster) etcdMemberEndpoints() []string {
	var eps []string
	for i := 1; i <= c.opts.EtcdMembers; i++ {
		eps = append(eps, fmt.Sprintf("http://%s:%d", etcdMemberIP(i), EtcdClientPort))
	}
	return eps
}

// EtcdCluster is a multi-member etcd: one weft-etcd process per member,
// each in its own namespace on the underlay. Its methods are safe for
// concurrent use.
type EtcdCluster struct {
	// Members in order (etcd1, etcd2, …). A member keeps its name and
	// addresses when it is replaced.
	Members []*Etcd
	// dialNS is where the harness's clients dial from (the underlay,
	// which reaches every member).
	dialNS NS
	// ports are the members' bridge ports in dialNS, by member.
	ports map[*Etcd]string

	// mu guards the following.
	mu sync.Mutex
	// cut are the members whose bridge port is down (see Partition).
	cut map[*Etcd]bool
}

// startEtcdCluster creates the member namespaces and starts every member
// (together: a new cluster is ready only once a quorum runs).
func (c *Cluster) startEtcdCluster(ctx context.Context, bin string) error {
	n := c.opts.EtcdMembers
	if n%2 == 0 {
		return fmt.Errorf("an etcd cluster of %d members: use an odd number", n)
	}
	ec := &EtcdCluster{dialNS: c.Underlay, ports: map[*Etcd]string{}, cut: map[*Etcd]bool{}}
	var initial []string
	c.mu.Lock()
	c.state.EtcdMembers = make([]*Proc, n)
	c.mu.Unlock()
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("etcd%d", i)
		ns, err := c.newNS(name)
		if err != nil {
			return err
		}
		ip := etcdMemberIP(i)
		port := fmt.Sprintf("e%d-%s", i, c.ID)
		if err := plugIn(c.Underlay, "br0", port, ns, "eth0", []netip.Prefix{netip.PrefixFrom(ip, 24)}, netip.Addr{}, netip.Addr{}); err != nil {
			return err
		}
		if c.Router != nil {
			// Nodes behind the router reach the member through it.
			err := ns.withHandle(func(h *netlink.Handle) error {
				return h.RouteAdd(&netlink.Route{Dst: prefixIPNet(segmentPrefix[1]), Gw: RouterIP.AsSlice()})
			})
			if err != nil {
				return fmt.Errorf("route to segment 1 in %s: %w", ns.Name, err)
			}
		}
		idx := i - 1
		m := &Etcd{
			NS:       ns,
			Binary:   bin,
			DataDir:  filepath.Join(c.Dir, name, "data"),
			LogFile:  filepath.Join(c.Dir, name+".log"),
			Endpoint: fmt.Sprintf("http://%s:%d", ip, EtcdClientPort),
			peerURL:  fmt.Sprintf("http://%s:%d", ip, etcdPeerPort),
			Name:     name,
			onStart: func(p *Proc) {
				c.mu.Lock()
				c.state.EtcdMembers[idx] = p
				c.mu.Unlock()
				c.saveState()
			},
		}
		initial = append(initial, name+"="+m.peerURL)
		ec.Members = append(ec.Members, m)
		ec.ports[m] = port
	}
	for _, m := range ec.Members {
		m.InitialCluster = strings.Join(initial, ",")
		m.ClusterState = "new"
	}
	c.EtcdCluster = ec
	c.state.EtcdEndpoint = c.EtcdEndpoint()
	return ec.Start(ctx, ec.Members...)
}

// memberArgs are the weft-etcd flags that make e a cluster member.
func (e *Etcd) memberArgs() []string {
	if e.InitialCluster == "" {
		return nil
	}
	return []string{"--name", e.Name, "--initial-cluster", e.InitialCluster, "--initial-cluster-state", e.ClusterState}
}

// Kill kills the member with SIGKILL (by its PID) and waits until it is
// gone.
func (e *Etcd) Kill() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.proc.Kill()
}

// Running reports whether the etcd process runs.
func (e *Etcd) Running() bool { return e.Proc().Alive() }

// putConfig writes the network config to whichever etcd the cluster runs.
func (c *Cluster) putConfig(ctx context.Context, cfg string) error {
	if c.EtcdCluster != nil {
		return c.EtcdCluster.Put(ctx, EtcdPrefix+"/config", cfg)
	}
	return c.Etcd.PutConfig(ctx, cfg)
}

// Endpoints returns the members' client URLs.
func (ec *EtcdCluster) Endpoints() []string {
	var eps []string
	for _, m := range ec.Members {
		eps = append(eps, m.Endpoint)
	}
	return eps
}

// Member returns the member called name (nil if none).
func (ec *EtcdCluster) Member(name string) *Etcd {
	for _, m := range ec.Members {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// Start starts the given members together and waits until each serves
// clients (a member serves once it belongs to a cluster with a quorum).
func (ec *EtcdCluster) Start(ctx context.Context, members ...*Etcd) error {
	errs := make([]error, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.Start(ctx); err != nil {
				errs[i] = fmt.Errorf("etcd member %s: %w", m.Name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Client returns a client of every member, dialling from the underlay.
// Close it when done.
func (ec *EtcdCluster) Client() (*clientv3.Client, error) {
	return ec.client(ec.Endpoints()...)
}

func (ec *EtcdCluster) client(eps ...string) (*clientv3.Client, error) {
	return nsClient(ec.dialNS, eps...)
}

// Put writes key=value through any member.
func (ec *EtcdCluster) Put(ctx context.Context, key, value string) error {
	return put(ctx, ec.Client, key, value)
}

// MemberStatus is what one member says of itself.
type MemberStatus struct {
	Member *Etcd
	// ID is the member's etcd ID; Leader the ID of the leader it
	// follows (0: none).
	ID, Leader uint64
	// RaftTerm and RaftIndex are its raft term and applied index.
	RaftTerm, RaftIndex uint64
	// Err is why it did not answer.
	Err error
}

// Status asks every running member for its status (etcd's Maintenance
// Status), each with its own client so that one dead member cannot delay
// the others' answers.
func (ec *EtcdCluster) Status(ctx context.Context) []MemberStatus {
	out := make([]MemberStatus, len(ec.Members))
	var wg sync.WaitGroup
	for i, m := range ec.Members {
		out[i].Member = m
		if !ec.reachable(m) {
			out[i].Err = errors.New("not running or cut off")
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cli, err := ec.client(m.Endpoint)
			if err != nil {
				out[i].Err = err
				return
			}
			defer cli.Close()
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			st, err := cli.Status(cctx, m.Endpoint)
			if err != nil {
				out[i].Err = err
				return
			}
			out[i].ID, out[i].Leader = st.Header.MemberId, st.Leader
			out[i].RaftTerm, out[i].RaftIndex = st.RaftTerm, st.RaftIndex
		}()
	}
	wg.Wait()
	return out
}

// Partition cuts member m off the underlay (cut true) by setting its
// bridge port down, or plugs it back in. Nothing is closed or reset: its
// clients and peers see silence, as when a machine loses power or its
// network. The process keeps running.
func (ec *EtcdCluster) Partition(m *Etcd, cut bool) error {
	ec.mu.Lock()
	ec.cut[m] = cut
	ec.mu.Unlock()
	return ec.dialNS.withHandle(func(h *netlink.Handle) error {
		l, err := h.LinkByName(ec.ports[m])
		if err != nil {
			return fmt.Errorf("find bridge port of %s: %w", m.Name, err)
		}
		if cut {
			err = h.LinkSetDown(l)
		} else {
			err = h.LinkSetUp(l)
		}
		if err != nil {
			return fmt.Errorf("set bridge port of %s up=%v: %w", m.Name, !cut, err)
		}
		return nil
	})
}

// reachable reports whether m runs and is not cut off.
func (ec *EtcdCluster) reachable(m *Etcd) bool {
	ec.mu.Lock()
	defer ec.mu.Unlock()
	return !ec.cut[m] && m.Running()
}

// IP returns the member's underlay address.
func (e *Etcd) IP() netip.Addr {
	ap, err := netip.ParseAddrPort(strings.TrimPrefix(e.Endpoint, "http://"))
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr()
}

// Leader returns the member every running member that is not cut off
// follows, or an error when they do not agree on one (an election is going
// on, or there is no quorum).
func (ec *EtcdCluster) Leader(ctx context.Context) (*Etcd, error) {
	sts := ec.Status(ctx)
	var leader uint64
	var running int
	var errs []error
	for _, st := range sts {
		if !ec.reachable(st.Member) {
			continue
		}
		running++
		switch {
		case st.Err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", st.Member.Name, st.Err))
		case st.Leader == 0:
			errs = append(errs, fmt.Errorf("%s has no leader", st.Member.Name))
		case leader != 0 && st.Leader != leader:
			errs = append(errs, fmt.Errorf("%s follows %x, another member %x", st.Member.Name, st.Leader, leader))
		default:
			leader = st.Leader
		}
	}
	if running == 0 {
		return nil, errors.New("no etcd member runs (or all are cut off)")
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for _, st := range sts {
		if st.ID == leader && st.Err == nil {
			return st.Member, nil
		}
	}
	return nil, fmt.Errorf("leader %x is not among the running members", leader)
}

// WaitLeader polls [EtcdCluster.Leader] until the running members agree
// on a leader, and returns it.
func (ec *EtcdCluster) WaitLeader(ctx context.Context, timeout time.Duration) (*Etcd, error) {
	var l *Etcd
	err := Eventually(timeout, 50*time.Millisecond, func() error {
		var err error
		l, err = ec.Leader(ctx)
		return err
	})
	return l, err
}

// memberID returns the etcd ID of the member called name, from a member
// list.
func memberID(ml *clientv3.MemberListResponse, name, peerURL string) (uint64, bool) {
	for _, m := range ml.Members {
		if m.Name == name || slices.Contains(m.PeerURLs, peerURL) {
			return m.ID, true
		}
	}
	return 0, false
}

// Replace replaces member m as an operator replaces a failed machine: it
// stops m if it runs, removes it from the cluster (MemberRemove), wipes
// its data directory, adds it again at the same peer URL (MemberAdd,
// retried while etcd's strict reconfiguration check refuses it) and
// starts it with --initial-cluster-state existing. It returns once m
// serves clients again.
func (ec *EtcdCluster) Replace(ctx context.Context, m *Etcd) error {
	if err := m.Stop(); err != nil {
		return err
	}
	var others []string
	for _, o := range ec.Members {
		if o != m && o.Running() {
			others = append(others, o.Endpoint)
		}
	}
	cli, err := ec.client(others...)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	ml, err := cli.MemberList(ctx)
	if err != nil {
		return fmt.Errorf("list etcd members: %w", err)
	}
	if id, ok := memberID(ml, m.Name, m.peerURL); ok {
		if _, err := cli.MemberRemove(ctx, id); err != nil {
			return fmt.Errorf("remove etcd member %s (%x): %w", m.Name, id, err)
		}
	}
	if err := os.RemoveAll(m.DataDir); err != nil {
		return fmt.Errorf("wipe data of %s: %w", m.Name, err)
	}
	var added *clientv3.MemberAddResponse
	for {
		added, err = cli.MemberAdd(ctx, []string{m.peerURL})
		if err == nil {
			break
		}
		// etcd refuses a new voting member until every voting member
		// has been connected for a while (5 s).
		if !errors.Is(err, rpctypes.ErrUnhealthy) || ctx.Err() != nil {
			return fmt.Errorf("add etcd member %s: %w", m.Name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	var initial []string
	for _, am := range added.Members {
		name := am.Name
		if am.ID == added.Member.ID {
			name = m.Name // not started yet: etcd knows no name
		}
		for _, u := range am.PeerURLs {
			initial = append(initial, name+"="+u)
		}
	}
	m.InitialCluster = strings.Join(initial, ",")
	m.ClusterState = "existing"
	return m.Start(ctx)
}
