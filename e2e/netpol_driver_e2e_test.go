// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e && linux

package e2e_test

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/weftnet/weft/daemon/policy"
	"github.com/weftnet/weft/daemon/policy/nft"
	"github.com/weftnet/weft/daemon/status"
	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/namespace"
)

// netpolConverge bounds the wait for every node to enforce a stage.
const netpolConverge = 30 * time.Second

// weftdDriver puts the stages of the truth table in force the way an
// operator does in etcd mode: weftctl writes the policies and namespace
// labels to etcd, and every node's weftd compiles and enforces them.
type weftdDriver struct {
	c   *e2e.Cluster
	cli *clientv3.Client
	dir string
	// stored are the policies in etcd ("ns/name" → policy) and nsLabels
	// the labels the stages added to each namespace.
	stored   map[string]*networkingv1.NetworkPolicy
	nsLabels map[string]map[string]string
	// took is, per stage, the time from weftctl's last write returning to
	// every node enforcing it.
	took []time.Duration
}

func newWeftdDriver(t *testing.T, c *e2e.Cluster) *weftdDriver {
	cli, err := c.Etcd.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return &weftdDriver{c: c, cli: cli, dir: t.TempDir(), stored: map[string]*networkingv1.NetworkPolicy{}, nsLabels: map[string]map[string]string{}}
}

func (d *weftdDriver) weftctl(t *testing.T, args ...string) {
	t.Helper()
	if out, err := d.c.Weftctl(t.Context(), args...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// revision is etcd's current revision.
func (d *weftdDriver) revision(t *testing.T) int64 {
	t.Helper()
	resp, err := d.cli.Get(t.Context(), "weft-truth-table-revision", clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// lastWrite is the highest revision at which a key under prefix was
// written (0 when there is none).
func (d *weftdDriver) lastWrite(t *testing.T, prefix string) int64 {
	t.Helper()
	resp, err := d.cli.Get(t.Context(), prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var rev int64
	for _, kv := range resp.Kvs {
		rev = max(rev, kv.ModRevision)
	}
	return rev
}

// labelNamespaces gives each namespace its ns=<name> label (and the
// given extra ones) with `weftctl namespace label`, removing extra labels
// of earlier stages not in extra.
func (d *weftdDriver) labelNamespaces(t *testing.T, extra map[string]map[string]string) {
	t.Helper()
	for _, ns := range []string{"x", "y", "z"} {
		want := map[string]string{"ns": ns}
		maps.Copy(want, extra[ns])
		cur := d.nsLabels[ns]
		if cur != nil && maps.Equal(cur, want) {
			continue
		}
		args := []string{"namespace", "label", ns}
		for _, k := range slices.Sorted(maps.Keys(want)) {
			args = append(args, k+"="+want[k])
		}
		for _, k := range slices.Sorted(maps.Keys(cur)) {
			if _, ok := want[k]; !ok {
				args = append(args, k+"-")
			}
		}
		d.weftctl(t, append(args, "--overwrite")...)
		d.nsLabels[ns] = want
	}
}

// apply makes etcd hold exactly pols and the namespaces the labels of
// nsLabels (beside ns=<name>), all through weftctl, then waits until
// every node's weftd enforces that state; it returns the policies
// ("ns/name") whose parts the nodes reported as skipped.
func (d *weftdDriver) apply(t *testing.T, pols []*networkingv1.NetworkPolicy, nsLabels map[string]map[string]string) []string {
	t.Helper()
	want := map[string]*networkingv1.NetworkPolicy{}
	var docs []string
	for _, p := range pols {
		if errs := policy.Validate(p); errs != nil {
			t.Fatalf("policy %s/%s invalid: %v", p.Namespace, p.Name, errs)
		}
		want[p.Namespace+"/"+p.Name] = p
		obj := p.DeepCopy()
		obj.APIVersion, obj.Kind = "networking.k8s.io/v1", "NetworkPolicy"
		b, err := yaml.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(b))
	}
	before := d.revision(t)
	// Deletions first, then the writes: a listing that holds the last
	// write holds every deletion too.
	deleted := false
	for _, k := range slices.Sorted(maps.Keys(d.stored)) {
		if _, ok := want[k]; !ok {
			ns, name, _ := strings.Cut(k, "/")
			d.weftctl(t, "policy", "delete", name, "-n", ns)
			deleted = true
		}
	}
	if len(docs) > 0 {
		file := filepath.Join(d.dir, "policies.yaml")
		if err := os.WriteFile(file, []byte(strings.Join(docs, "---\n")), 0o644); err != nil {
			t.Fatal(err)
		}
		d.weftctl(t, "policy", "apply", "-f", file)
	}
	d.labelNamespaces(t, nsLabels)
	d.stored = want
	// Every node must have applied a listing of the policies at or after
	// the last write; a deletion-only stage has no write to read back, so
	// the count of policies tells the listing after the deletions.
	target := max(d.lastWrite(t, e2e.EtcdPrefix+"/policies/"), d.lastWrite(t, e2e.EtcdPrefix+"/namespaces/"))
	if deleted {
		target = max(target, before+1)
	}
	start := time.Now()
	sts := d.waitEnforced(t, func(p *status.Policy) bool { return p.Revision >= target && p.Policies == len(want) })
	d.took = append(d.took, time.Since(start))
	var skipped []string
	for i, st := range sts {
		if len(st.Rejected) > 0 {
			t.Fatalf("%s rejected stored entries written by weftctl: %+v", d.c.Nodes()[i].Name, st.Rejected)
		}
		for _, s := range st.Skipped {
			skipped = append(skipped, s.Policy)
		}
	}
	return skipped
}

// waitEnforced waits until every node's /status shows the policy table
// applied without error from a state done says is the one wanted, with
// all 9 pods known, and returns each node's policy status.
func (d *weftdDriver) waitEnforced(t *testing.T, done func(*status.Policy) bool) []*status.Policy {
	t.Helper()
	ctx := t.Context()
	deadline := time.Now().Add(netpolConverge)
	var out []*status.Policy
	for _, n := range d.c.Nodes() {
		for {
			st, err := n.Status(ctx)
			if err == nil && st.Policy != nil {
				p := st.Policy
				if p.Applies > 0 && p.ApplyError == "" && p.LocalPods+p.RemotePods == len(netpolPods) && done(p) {
					if !p.Enforced {
						t.Fatalf("%s: policy not enforced: %s", n.Name, p.Problem)
					}
					out = append(out, p)
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the policies were not applied within %v; /status policy: %+v (%v)\n%s", n.Name, netpolConverge, policyOf(st), err, n.LogTail(20))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return out
}

func policyOf(st *status.Report) *status.Policy {
	if st == nil {
		return nil
	}
	return st.Policy
}

// engineDriver is the policy driver of the tests etcd mode cannot
// express: it makes every node enforce exactly pols for the pods and
// namespaces of l, and returns the policies ("ns/name") whose parts the
// nodes reported they could not enforce. It validates each policy as the
// API server would, compiles each node's state with daemon/policy from
// the endpoints of all 9 pods (with upstream's container ports, named
// serve-80-tcp ... as upstream's pods declare them) and applies it with
// daemon/policy/nft inside the node's namespace. weftd must run with
// --network-policy=false (see [engineDriverTakeOver]), or its own loop
// would replace the table.
func (w *npWorld) engineDriver(t *testing.T, pols []*networkingv1.NetworkPolicy, l npLabels) []string {
	t.Helper()
	for _, p := range pols {
		if errs := policy.Validate(p); errs != nil {
			t.Fatalf("policy %s/%s invalid: %v", p.Namespace, p.Name, errs)
		}
	}
	var pods []policy.Pod
	for _, id := range netpolPods {
		p := w.pods[id]
		ns, name, _ := strings.Cut(id, "/")
		pods = append(pods, policy.Pod{Namespace: ns, Name: name, Labels: l.pods[id], IPs: []netip.Addr{p.IP, p.IPv6}, Node: p.Node.Name, Ports: upstreamPorts()})
	}
	var nss []policy.Namespace
	for _, ns := range []string{"x", "y", "z"} {
		nss = append(nss, policy.Namespace{Name: ns, Labels: l.namespaces[ns]})
	}
	var skipped []string
	for _, n := range w.c.Nodes() {
		st := policy.Compile(policy.Input{Node: n.Name, Policies: pols, Pods: pods, Namespaces: nss})
		for _, p := range st.Problems {
			skipped = append(skipped, p.Policy)
		}
		if err := withPolicyConn(n, func(c *nftables.Conn) error { return nft.Apply(c, st) }); err != nil {
			t.Fatalf("apply on %s: %v", n.Name, err)
		}
	}
	return skipped
}

// engineDriverTakeOver restarts every node's weftd with
// --network-policy=false and waits until it has removed its policy
// table, so that the engine driver's table is the only one.
func (w *npWorld) engineDriverTakeOver(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	for _, n := range w.c.Nodes() {
		n.ExtraArgs = append(n.ExtraArgs, "--network-policy=false")
		rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err := n.Restart(rctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(netpolConverge)
		for {
			st, err := n.Status(ctx)
			present := true
			if err == nil && st.Policy != nil && st.Policy.Mode == "off" {
				err = withPolicyConn(n, func(c *nftables.Conn) error {
					tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
					present = slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == nft.Table })
					return err
				})
			}
			if err == nil && !present {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: weftd with --network-policy=false did not remove its policy table within %v (%v)", n.Name, netpolConverge, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// withPolicyConn runs fn with an nftables connection into n's namespace.
func withPolicyConn(n *e2e.Node, fn func(*nftables.Conn) error) error {
	h, err := namespace.Open(n.NS.Name)
	if err != nil {
		return err
	}
	defer h.Close()
	c, err := nft.NewConn(nftables.WithNetNSFd(int(h)))
	if err != nil {
		return err
	}
	return fn(c)
}

// upstreamPorts are the container ports of upstream's pods: serve-80-tcp,
// serve-81-udp ... for ports 80 and 81 over TCP, UDP and SCTP.
func upstreamPorts() []policy.NamedPort {
	var ports []policy.NamedPort
	for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP} {
		for _, port := range []uint16{80, 81} {
			ports = append(ports, policy.NamedPort{Name: fmt.Sprintf("serve-%d-%s", port, strings.ToLower(string(proto))), Protocol: proto, Port: port})
		}
	}
	return ports
}
