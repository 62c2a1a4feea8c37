// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e && linux

package e2e_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/e2etest"
	"github.com/weftnet/weft/subnet"
	subnetetcd "github.com/weftnet/weft/subnet/etcd"
	subnetkube "github.com/weftnet/weft/subnet/kube"
)

// readyPeers is how many other leases the store holds when a node joins:
// enough that programming them takes a while after the store's listing.
const readyPeers = 200

const readyNetConf = `{"Network":"10.240.0.0/12","SubnetLen":24,"Backend":{"Type":"vxlan"}}`

// TestReadyMeansProgrammed: a node joining a cluster whose store holds
// 200 other leases says ready (/status, /readyz; in Kubernetes mode the
// Node's NetworkUnavailable=False follows it) only once its kernel has a
// route to every one of them, in both store modes.
func TestReadyMeansProgrammed(t *testing.T) {
	t.Run("etcd", func(t *testing.T) {
		c := e2etest.NewCluster(t, e2e.Options{Nodes: 1, NetworkConfig: readyNetConf, Logf: func(string, ...any) {}})
		cli, err := c.Etcd.Client()
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		store := subnetetcd.New(subnetetcd.Config{Client: cli, Prefix: e2e.EtcdPrefix, LeaseTTL: time.Hour})
		nc, err := subnet.ParseConfig([]byte(readyNetConf))
		if err != nil {
			t.Fatal(err)
		}
		parallel(t, readyPeers, func(i int) error {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			_, err := store.Claim(ctx, subnet.ClaimRequest{Config: nc, Record: readyRecord(i)})
			return err
		})
		n, err := c.AddNode(0)
		if err != nil {
			t.Fatal(err)
		}
		checkReadyProgrammed(t, n, readyPeers+len(c.Nodes())-1)
	})

	t.Run("kube", func(t *testing.T) {
		c := e2etest.NewCluster(t, e2e.Options{Nodes: 1, Kube: kubeOptions(t), NetworkConfig: readyNetConf, Logf: func(string, ...any) {}})
		ctx := t.Context()
		cs, rc := kubeAdminClient(t, c)
		parallel(t, readyPeers, func(i int) error {
			_, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: readyRecord(i).NodeName}}, metav1.CreateOptions{})
			return err
		})
		if err := e2e.Eventually(3*time.Minute, time.Second, func() error {
			l, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			for _, n := range l.Items {
				if len(n.Spec.PodCIDRs) == 0 {
					return fmt.Errorf("Node %s has no podCIDR yet", n.Name)
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		store, err := subnetkube.New(rc, subnetkube.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		nc, err := subnet.ParseConfig([]byte(readyNetConf))
		if err != nil {
			t.Fatal(err)
		}
		parallel(t, readyPeers, func(i int) error {
			_, err := store.Claim(ctx, subnet.ClaimRequest{Config: nc, Record: readyRecord(i)})
			return err
		})
		n, err := c.AddNode(0)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.KubeJoin(ctx, n); err != nil {
			t.Fatal(err)
		}
		if err := e2e.Eventually(30*time.Second, 20*time.Millisecond, func() error {
			cidrs, err := c.PodCIDRs(ctx, n)
			if err == nil && len(cidrs) == 0 {
				err = fmt.Errorf("no podCIDR for %s yet", n.Name)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		checkReadyProgrammed(t, n, readyPeers+len(c.Nodes())-1)
	})
}

// readyRecord is the record of simulated peer i (a VXLAN peer on an address
// no namespace holds: its route exists all the same).
func readyRecord(i int) subnet.Record {
	mac := net.HardwareAddr{0x02, 0x5f, 0, 0, byte(i >> 8), byte(i)}
	return subnet.Record{
		NodeName: fmt.Sprintf("sim-%04d", i), NodeID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i),
		PublicIP:    netip.AddrFrom4([4]byte{198, 19, byte(i / 250), byte(1 + i%250)}),
		BackendType: subnet.BackendVXLAN, BackendData: subnet.BackendData{VTEPMAC: mac.String()}, Version: 1,
	}
}

// checkReadyProgrammed starts weftd on n, polls its /status until it says
// ready, and then requires a route to each of the want other subnets
// already in n's kernel.
func checkReadyProgrammed(t *testing.T, n *e2e.Node, want int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	for {
		st, err := n.Status(ctx)
		if err == nil && st.Node.Ready {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%s not ready after %s: %v (%s)", n.Name, time.Since(start).Round(time.Millisecond), err, n.LogTail(5))
		}
		time.Sleep(2 * time.Millisecond)
	}
	ready := time.Since(start)
	k, err := n.Kernel()
	if err != nil {
		t.Fatal(err)
	}
	if len(k.Routes) < want {
		t.Errorf("%s said ready %s after start with %d of its %d routes to other subnets", n.Name, ready.Round(time.Millisecond), len(k.Routes), want)
		return
	}
	t.Logf("%s ready %s after start, with all %d routes", n.Name, ready.Round(time.Millisecond), len(k.Routes))
}
