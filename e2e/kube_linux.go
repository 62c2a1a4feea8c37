// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/weftnet/weft/subnet"
)

// kubeRun is a Kubernetes-mode cluster's control plane; set once by
// startKube, before any node starts, and read-only after.
type kubeRun struct {
	plane     KubePlane
	tools     string
	gossipKey string // base64, the cluster's gossip key
}

// kubePodName names the stand-in pod of weftd on node.
func kubePodName(node string) string { return "weftd-" + node }

// startKube writes the control plane's credentials, starts
// kube-apiserver and kube-controller-manager in the underlay namespace on
// the cluster's etcd, applies the manifests and writes the ConfigMap with
// the network config.
func (c *Cluster) startKube(ctx context.Context) error {
	ko := c.opts.Kube
	for _, t := range []string{"kube-apiserver", "kube-controller-manager", "kubectl"} {
		if _, err := checkBinary(ko.Tools, t); err != nil {
			return fmt.Errorf("%w (make kube-tools builds it)", err)
		}
	}
	cfg, err := subnet.ParseConfig([]byte(c.NetworkConfig()))
	if err != nil {
		return fmt.Errorf("network config: %w", err)
	}
	dir := filepath.Join(c.Dir, "kube")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	svc := netip.MustParsePrefix(KubeServiceCIDR)
	pki, err := WriteKubePKI(dir, []netip.Addr{EtcdIP, FirstServiceIP(svc)})
	if err != nil {
		return err
	}
	k := &kubeRun{tools: ko.Tools, plane: KubePlane{
		Addr: EtcdIP, Port: KubeAPIServerPort, EtcdServers: c.EtcdEndpoint(), Dir: dir, PKI: pki,
		ServiceCIDR: svc, NodeMaskSize4: cfg.SubnetLen, NodeMaskSize6: cfg.IPv6SubnetLen,
		Kubeconfig: filepath.Join(dir, "admin.kubeconfig"),
	}}
	for _, p := range []netip.Prefix{cfg.Network, cfg.IPv6Network} {
		if p.IsValid() {
			k.plane.ClusterCIDRs = append(k.plane.ClusterCIDRs, p)
		}
	}
	if err := WriteKubeconfig(k.plane.Kubeconfig, k.plane.URL(), pki.CAPEM, KubeAdminUser, pki.AdminToken); err != nil {
		return err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("gossip key: %w", err)
	}
	k.gossipKey = base64.StdEncoding.EncodeToString(key)
	c.kube = k
	c.mu.Lock()
	c.state.Kube = &KubeState{URL: k.plane.URL(), Kubeconfig: k.plane.Kubeconfig, Kubectl: filepath.Join(ko.Tools, "kubectl")}
	c.mu.Unlock()
	c.saveState()

	args := k.plane.APIServerArgs()
	if ko.Audit {
		policy := filepath.Join(dir, "audit-policy.yaml")
		if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
			return fmt.Errorf("write audit policy: %w", err)
		}
		args = append(args, "--audit-policy-file="+policy, "--audit-log-path="+c.KubeAuditLog(), "--audit-log-format=json")
	}
	start := time.Now()
	if err := c.startKubeProc(ctx, "kube-apiserver", args, k.plane.URL()+"/readyz"); err != nil {
		return err
	}
	c.logf("kube-apiserver ready on %s in %.2fs", k.plane.URL(), time.Since(start).Seconds())
	start = time.Now()
	if err := c.startKubeProc(ctx, "kube-controller-manager", k.plane.ControllerManagerArgs(), KubeControllerManagerHealthz); err != nil {
		return err
	}
	c.logf("kube-controller-manager healthy in %.2fs (podCIDRs from %s)", time.Since(start).Seconds(), joinPrefixes(k.plane.ClusterCIDRs...))
	for _, m := range ko.Manifests {
		if _, err := c.kubectlIn(ctx, m.Data, "apply", "-f", "-"); err != nil {
			return fmt.Errorf("apply %s: %w", m.Name, err)
		}
		c.logf("applied %s", m.Name)
	}
	if _, err := c.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "crd/weftnodes.weft.dev"); err != nil {
		return err
	}
	_, err = c.Kubectl(ctx, "-n", KubeNamespace, "create", "configmap", "weft-config", "--from-literal=network-config.json="+c.NetworkConfig())
	return err
}

// startKubeProc starts one of the control plane's programs in the
// underlay namespace, records it in the state and polls url until it
// answers 200.
func (c *Cluster) startKubeProc(ctx context.Context, name string, args []string, url string) error {
	k := c.kube
	p, err := startProc(c.Underlay, filepath.Join(k.tools, name), args, cleanEnv(), filepath.Join(k.plane.Dir, name+".log"))
	if err != nil {
		return err
	}
	c.mu.Lock()
	if name == "kube-apiserver" {
		c.state.Kube.APIServer = p
	} else {
		c.state.Kube.ControllerManager = p
	}
	c.mu.Unlock()
	c.saveState()
	return waitHTTPS(ctx, c.Underlay, p, url, k.plane.PKI, 2*time.Minute)
}

// waitHTTPS GETs url from inside ns until it answers 200, failing early
// when p exits. The API server's certificate is checked against the PKI's
// CA and the admin token sent; other servers (the controller-manager's
// self-signed /healthz) are not checked.
func waitHTTPS(ctx context.Context, ns NS, p *Proc, url string, pki *KubePKI, timeout time.Duration) error {
	tc := &tls.Config{InsecureSkipVerify: true}
	if !strings.HasPrefix(url, "https://127.0.0.1") {
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pki.CAPEM)
		tc = &tls.Config{RootCAs: roots}
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: ns.DialContext, TLSClientConfig: tc}}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+pki.AdminToken)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		data, _ := os.ReadFile(p.Log)
		if !p.Alive() {
			return fmt.Errorf("%s exited before %s answered: see %s:\n%s", filepath.Base(p.Binary), url, p.Log, tail(data, 20))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s: %s not ready within %s (last: %s): see %s:\n%s", filepath.Base(p.Binary), url, timeout, last, p.Log, tail(data, 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Kubectl runs kubectl with the admin kubeconfig in the underlay
// namespace and returns its standard output. It fails when the cluster is
// not in Kubernetes mode.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	return c.kubectlIn(ctx, nil, args...)
}

// kubectlIn is Kubectl with stdin (nil: none).
func (c *Cluster) kubectlIn(ctx context.Context, stdin []byte, args ...string) (string, error) {
	if c.kube == nil {
		return "", errors.New("kubectl: the cluster is not in Kubernetes mode")
	}
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	argv := append([]string{filepath.Join(c.kube.tools, "kubectl"), "--kubeconfig", c.kube.plane.Kubeconfig}, args...)
	cmd := c.Underlay.Command(ctx, argv...)
	cmd.Env = cleanEnv()
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}

// auditPolicy logs each request once, when the API server receives it,
// with its user (weftd's node name is in the user's extra), verb and
// resource; the admin's requests (the test's own and the
// controller-manager's) are not logged.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [ResponseStarted, ResponseComplete, Panic]
rules:
- level: None
  users: [` + KubeAdminUser + `]
- level: Metadata
`

// KubeAuditLog is the API server's audit log (KubeOptions.Audit): one
// JSON event a line.
func (c *Cluster) KubeAuditLog() string { return filepath.Join(c.Dir, "kube", "audit.log") }

// KubeAdmin returns the API server's URL, its CA certificate and the
// admin token of a Kubernetes-mode cluster (ok false otherwise). The URL
// is reachable from the cluster's namespaces ([NS.DialContext] of
// Underlay).
func (c *Cluster) KubeAdmin() (url string, caPEM []byte, token string, ok bool) {
	if c.kube == nil {
		return "", nil, "", false
	}
	return c.kube.plane.URL(), c.kube.plane.PKI.CAPEM, c.kube.plane.PKI.AdminToken, true
}

// Kubeconfig is the admin kubeconfig of a Kubernetes-mode cluster (its
// server is reachable from the cluster's namespaces); empty otherwise.
func (c *Cluster) Kubeconfig() string {
	if c.kube == nil {
		return ""
	}
	return c.kube.plane.Kubeconfig
}

// KubeJoin makes what weftd on n needs in Kubernetes mode, as a DaemonSet
// pod on a kubeadm node has it: the Node (its podCIDRs come from the
// controller-manager), a pod of weftd's ServiceAccount on that Node (no
// kubelet runs it) and a token bound to that pod, which carries the node
// name the guard checks; a kubeconfig with that token, and the gossip key
// file (a Secret in a real cluster).
func (c *Cluster) KubeJoin(ctx context.Context, n *Node) error {
	objs := fmt.Sprintf(`apiVersion: v1
kind: Node
metadata:
  name: %[1]s
---
apiVersion: v1
kind: Pod
metadata:
  name: %[2]s
  namespace: %[3]s
spec:
  nodeName: %[1]s
  serviceAccountName: weftd
  automountServiceAccountToken: false
  containers:
  - name: weftd
    image: ghcr.io/weftnet/weft:lab
`, n.Name, kubePodName(n.Name), KubeNamespace)
	if _, err := c.kubectlIn(ctx, []byte(objs), "apply", "-f", "-"); err != nil {
		return fmt.Errorf("create Node %s: %w", n.Name, err)
	}
	// kubectl looks the pod's UID up; the API server adds the pod's node
	// (name and UID) to the token.
	tok, err := c.Kubectl(ctx, "-n", KubeNamespace, "create", "token", "weftd",
		"--bound-object-kind=Pod", "--bound-object-name="+kubePodName(n.Name), "--duration=8760h")
	if err != nil {
		return fmt.Errorf("token for weftd on %s: %w", n.Name, err)
	}
	if err := WriteKubeconfig(n.KubeconfigPath(), c.kube.plane.URL(), c.kube.plane.PKI.CAPEM, "weftd", strings.TrimSpace(tok)); err != nil {
		return err
	}
	if err := os.WriteFile(n.gossipKeyPath(), []byte(c.kube.gossipKey+"\n"), 0o600); err != nil {
		return fmt.Errorf("write gossip key: %w", err)
	}
	return nil
}

// KubeconfigPath is weftd's kubeconfig on the node and gossipKeyPath its
// gossip key file (Kubernetes mode).
func (n *Node) KubeconfigPath() string { return filepath.Join(n.Dir, "weftd.kubeconfig") }
func (n *Node) gossipKeyPath() string  { return filepath.Join(n.Dir, "gossip.key") }

// PodCIDRs returns the podCIDRs of n's Node (Kubernetes mode).
func (c *Cluster) PodCIDRs(ctx context.Context, n *Node) ([]string, error) {
	out, err := c.Kubectl(ctx, "get", "node", n.Name, "-o", "jsonpath={.spec.podCIDRs}")
	if err != nil {
		return nil, err
	}
	out = strings.Trim(strings.TrimSpace(out), "[]")
	var cidrs []string
	for _, f := range strings.Split(out, ",") {
		if f = strings.Trim(strings.TrimSpace(f), `"`); f != "" {
			cidrs = append(cidrs, f)
		}
	}
	return cidrs, nil
}
