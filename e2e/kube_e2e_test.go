// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build e2e && linux

package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/weftnet/weft/e2e"
	"github.com/weftnet/weft/e2e/kubetest"
)

// TestKubeMode runs real weftd processes in Kubernetes mode (VXLAN,
// dual-stack) on a real kube-apiserver and kube-controller-manager, which
// run in the cluster's underlay namespace on 198.18.0.2:6443 (see
// [kubeEnv]). weftd holds a token of
// its own ServiceAccount, bound by etc/kubernetes/weft-rbac.yaml (never
// admin credentials), and reads the network config from the ConfigMap.
// Each node's subnet is the podCIDR the controller-manager assigned to its
// Node; pods on different nodes reach each other. A third node started
// before its Node exists waits, not ready, saying why, and joins once the
// Node is created. [TestKubeMatrix] runs the rest of the scenarios (API
// server outage, Node deletions, restarts, kernel tables) on three nodes.
func TestKubeMode(t *testing.T) {
	e := newKubeEnv(t, e2e.Options{Nodes: 2, DualStack: true})
	c, kc, cs := e.c, e.kc, e.cs
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Without the CRD weftd refuses to start, saying how to install it
	// (admin credentials here: weftd's ServiceAccount comes with the RBAC
	// manifest, applied below).
	t.Run("crd-missing", func(t *testing.T) {
		n := c.Nodes()[0]
		writeGossipKeyFile(t, n, newGossipKey(t))
		n.ExtraArgs = []string{"--kube-subnet-mgr", "--kubeconfig", kc.Kubeconfig, "--gossip-key-file", gossipKeyFile(n)}
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		if err := e2e.Eventually(30*time.Second, 100*time.Millisecond, func() error {
			if n.Running() {
				return fmt.Errorf("weftd still running")
			}
			return nil
		}); err != nil {
			n.Stop()
			t.Fatalf("weftd without the CRD: %v", err)
		}
		if log := n.LogTail(5); !strings.Contains(log, "kubectl apply -f etc/kubernetes/weft-crd.yaml") {
			t.Errorf("weftd without the CRD exited; its log does not say how to install it:\n%s", log)
		}
	})

	e.install(t, ctx)
	kubeconfig := e.kubeconfig
	kubeArgs := func(n *e2e.Node) []string { return e.args(t, n) }

	nodes := c.Nodes()
	e.startNodes(t, ctx, nodes, 1)
	if t.Failed() {
		return
	}
	for _, n := range nodes {
		checkNetworkAvailable(t, ctx, cs, n)
	}
	pods := c.Pods()
	for _, from := range pods {
		for _, to := range pods {
			if from == to {
				continue
			}
			for _, dst := range []netip.Addr{to.IP, to.IPv6} {
				if err := e2e.Eventually(20*time.Second, 100*time.Millisecond, func() error {
					_, err := e2e.Ping(from.NS, dst, time.Second)
					return err
				}); err != nil {
					t.Errorf("pod %s → pod %s (%s): %v", from.Name, to.Name, dst, err)
				}
			}
		}
	}

	t.Run("weftctl-leases", func(t *testing.T) {
		out, err := c.Weftctl(ctx, "leases", "--kubeconfig", kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("weftctl leases --kubeconfig:\n%s", out)
		for _, n := range nodes {
			sf, err := n.SubnetFile()
			if err != nil {
				t.Fatal(err)
			}
			want := []string{sf.Subnet.Masked().String(), sf.IPv6Subnet.Masked().String(), n.Name, n.IP.String() + "," + n.IPv6.String()}
			if !slices.ContainsFunc(strings.Split(out, "\n"), func(line string) bool {
				f := strings.Fields(line)
				return len(f) >= 4 && slices.Equal(f[:4], want)
			}) {
				t.Errorf("weftctl leases: no line starting %v", want)
			}
		}
	})

	t.Run("node-before-its-Node", func(t *testing.T) {
		n, err := c.AddNode(0)
		if err != nil {
			t.Fatal(err)
		}
		n.ExtraArgs = kubeArgs(n)
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		var last string
		err = e2e.Eventually(30*time.Second, 100*time.Millisecond, func() error {
			code, body, err := n.Get(ctx, "/readyz")
			if err != nil {
				return err
			}
			last = fmt.Sprintf("HTTP %d: %s", code, body)
			if code == 200 || !strings.Contains(string(body), "there is no Node "+n.Name) {
				return fmt.Errorf("/readyz: %s", last)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("weftd without its Node: want not ready naming the missing Node: %v", err)
		}
		t.Logf("before its Node: %s", strings.TrimSpace(last))
		joined := time.Now()
		if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := n.WaitReady(ctx, 60*time.Second); err != nil {
			t.Fatal(err)
		}
		t.Logf("Node %s created → weftd ready: %s", n.Name, time.Since(joined).Round(time.Millisecond))
		checkSubnetIsPodCIDR(t, ctx, cs, n)
		p, err := n.AddPod(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := e2e.Eventually(20*time.Second, 100*time.Millisecond, func() error {
			_, err := e2e.Ping(pods[0].NS, p.IP, time.Second)
			return err
		}); err != nil {
			t.Errorf("pod %s → new pod %s (%s): %v", pods[0].Name, p.Name, p.IP, err)
		}
	})

	t.Run("invalid-config-keeps-the-last-good", func(t *testing.T) {
		cms := cs.CoreV1().ConfigMaps("weft-system")
		cm, err := cms.Get(ctx, "weft-config", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		good := cm.Data["network-config.json"]
		cm.Data["network-config.json"] = `{"Network": "10.244.0.0/16", "SubnetLen": 33}`
		if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		n := nodes[0]
		if err := e2e.Eventually(20*time.Second, 100*time.Millisecond, func() error {
			st, err := n.Status(ctx)
			if err != nil {
				return err
			}
			if !strings.Contains(st.Node.ConfigError, "ConfigMap weft-system/weft-config") || !strings.Contains(st.Node.ConfigError, "SubnetLen 33") {
				return fmt.Errorf("configError %q", st.Node.ConfigError)
			}
			return nil
		}); err != nil {
			t.Fatalf("%s after an invalid ConfigMap: %v", n.Name, err)
		}
		if _, err := e2e.Ping(pods[0].NS, pods[1].IP, 5*time.Second); err != nil {
			t.Errorf("pods with an invalid config in the ConfigMap: %v", err)
		}
		cm.Data["network-config.json"] = good
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := e2e.Eventually(20*time.Second, 100*time.Millisecond, func() error {
			st, err := n.Status(ctx)
			if err == nil && st.Node.ConfigError != "" {
				err = fmt.Errorf("configError %q", st.Node.ConfigError)
			}
			return err
		}); err != nil {
			t.Fatalf("%s after the config was fixed: %v", n.Name, err)
		}
	})
}

// weftdKubeconfig writes a kubeconfig holding a token of the weftd
// ServiceAccount and returns its path.
func weftdKubeconfig(t *testing.T, ctx context.Context, cs kubernetes.Interface, kc *kubetest.Cluster) string {
	t.Helper()
	exp := int64(3600)
	tok, err := cs.CoreV1().ServiceAccounts("weft-system").CreateToken(ctx, "weftd",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for weft-system/weftd: %v", err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: kc.URL, CertificateAuthorityData: kc.CAPEM}
	cfg.AuthInfos["weftd"] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "weftd"}
	cfg.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "weftd.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkSubnetIsPodCIDR checks that the node's subnet file holds its Node's
// podCIDR, and that its WeftNode names the node's public IP.
func checkSubnetIsPodCIDR(t *testing.T, ctx context.Context, cs kubernetes.Interface, n *e2e.Node) {
	t.Helper()
	node, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sf, err := n.SubnetFile()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range []netip.Prefix{sf.Subnet, sf.IPv6Subnet} {
		if p.IsValid() {
			got = append(got, p.Masked().String())
		}
	}
	if strings.Join(got, ",") != strings.Join(node.Spec.PodCIDRs, ",") {
		t.Errorf("%s: subnet file %v, Node podCIDRs %v", n.Name, got, node.Spec.PodCIDRs)
	}
	var rec struct {
		Metadata struct {
			OwnerReferences []metav1.OwnerReference `json:"ownerReferences"`
		} `json:"metadata"`
		Spec struct {
			PublicIP string `json:"publicIP"`
			Epoch    int64  `json:"epoch"`
		} `json:"spec"`
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/apis/weft.dev/v1alpha1/weftnodes", n.Name).DoRaw(ctx)
		if err != nil {
			return false, nil
		}
		return true, json.Unmarshal(raw, &rec)
	})
	if err != nil {
		t.Fatalf("WeftNode %s: %v", n.Name, err)
	}
	if rec.Spec.PublicIP != n.IP.String() || rec.Spec.Epoch <= 0 || len(rec.Metadata.OwnerReferences) != 1 || rec.Metadata.OwnerReferences[0].UID != node.UID {
		t.Errorf("WeftNode %s: %+v, want public IP %s, an epoch, owned by Node UID %s", n.Name, rec, n.IP, node.UID)
	}
}

// checkNetworkAvailable waits for weftd to set its Node's
// NetworkUnavailable condition to False.
func checkNetworkAvailable(t *testing.T, ctx context.Context, cs kubernetes.Interface, n *e2e.Node) {
	t.Helper()
	err := e2e.Eventually(20*time.Second, 100*time.Millisecond, func() error {
		node, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeNetworkUnavailable && c.Status == corev1.ConditionFalse {
				return nil
			}
		}
		return fmt.Errorf("conditions %+v", node.Status.Conditions)
	})
	if err != nil {
		t.Errorf("Node %s: no NetworkUnavailable=False: %v", n.Name, err)
	}
}

// peerEpochs returns each node's peers with their subnets and epochs, as
// /status shows them, in one comparable string.
func peerEpochs(t *testing.T, ctx context.Context, nodes []*e2e.Node) string {
	t.Helper()
	var b strings.Builder
	for _, n := range nodes {
		st, err := n.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:", n.Name)
		for _, p := range st.Peers {
			fmt.Fprintf(&b, " %s=%s/%s@%d", p.Name, p.Subnet, p.IPv6Subnet, p.Epoch)
		}
		b.WriteString("; ")
	}
	return b.String()
}
