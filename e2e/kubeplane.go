// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2e

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// KubePlane describes a test control plane: the command lines of
// kube-apiserver and kube-controller-manager, as the e2e tests
// (e2e/kubetest) and the lab (Options.Kube) run them.
type KubePlane struct {
	// Addr is the address the API server listens on and advertises, Port
	// its https port.
	Addr netip.Addr
	Port int
	// EtcdServers is the API server's --etcd-servers.
	EtcdServers string
	// Dir is the API server's --cert-dir; the controller-manager's goes
	// below it (kcm).
	Dir string
	// PKI holds the credentials (WriteKubePKI).
	PKI *KubePKI
	// ServiceCIDR is the service IP range.
	ServiceCIDR netip.Prefix
	// ClusterCIDRs are the pod networks the controller-manager assigns
	// podCIDRs from (one per family), in blocks of NodeMaskSize4 and
	// NodeMaskSize6 bits.
	ClusterCIDRs                 []netip.Prefix
	NodeMaskSize4, NodeMaskSize6 int
	// Kubeconfig is the controller-manager's kubeconfig (admin).
	Kubeconfig string
}

// URL is the API server's https URL.
func (k KubePlane) URL() string {
	return "https://" + net.JoinHostPort(k.Addr.String(), strconv.Itoa(k.Port))
}

// FirstServiceIP is the ClusterIP of the kubernetes Service, which the
// serving certificate must name for in-cluster clients.
func FirstServiceIP(p netip.Prefix) netip.Addr { return p.Masked().Addr().Next() }

// APIServerArgs is kube-apiserver's command line (without the program):
// RBAC and Node authorization, static admin token, service-account tokens
// signed by the PKI's key.
func (k KubePlane) APIServerArgs() []string {
	return []string{
		"--advertise-address=" + k.Addr.String(),
		"--bind-address=" + k.Addr.String(),
		"--secure-port=" + strconv.Itoa(k.Port),
		"--etcd-servers=" + k.EtcdServers,
		"--cert-dir=" + k.Dir,
		"--tls-cert-file=" + k.PKI.ServingCert,
		"--tls-private-key-file=" + k.PKI.ServingKey,
		"--token-auth-file=" + k.PKI.TokenFile,
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + k.PKI.ServiceAccountKey,
		"--service-account-signing-key-file=" + k.PKI.ServiceAccountKey,
		"--service-cluster-ip-range=" + k.ServiceCIDR.String(),
		"--allow-privileged=true",
		"--profiling=false",
	}
}

// KubeControllerManagerHealthz is where kube-controller-manager answers
// /healthz (from its own namespace; a self-signed certificate).
const KubeControllerManagerHealthz = "https://127.0.0.1:10257/healthz"

// ControllerManagerArgs is kube-controller-manager's command line with
// the controllers weft needs: nodeipam (podCIDRs from ClusterCIDRs, the
// flags a kubeadm cluster sets) and the garbage collector (a deleted
// Node's WeftNode).
func (k KubePlane) ControllerManagerArgs() []string {
	var cidrs []string
	for _, p := range k.ClusterCIDRs {
		cidrs = append(cidrs, p.String())
	}
	args := []string{
		"--kubeconfig=" + k.Kubeconfig,
		"--bind-address=127.0.0.1",
		"--cert-dir=" + filepath.Join(k.Dir, "kcm"),
		"--controllers=nodeipam,garbagecollector",
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--allocate-node-cidrs=true",
		"--cluster-cidr=" + strings.Join(cidrs, ","),
		"--service-cluster-ip-range=" + k.ServiceCIDR.String(),
	}
	if len(cidrs) == 1 {
		mask := k.NodeMaskSize4
		if k.ClusterCIDRs[0].Addr().Is6() {
			mask = k.NodeMaskSize6
		}
		return append(args, "--node-cidr-mask-size="+strconv.Itoa(mask))
	}
	return append(args,
		"--node-cidr-mask-size-ipv4="+strconv.Itoa(k.NodeMaskSize4),
		"--node-cidr-mask-size-ipv6="+strconv.Itoa(k.NodeMaskSize6))
}

// WriteKubeconfig writes a kubeconfig file (mode 0600) for one user with
// a bearer token on the API server at url, trusting the CA in caPEM.
func WriteKubeconfig(path, url string, caPEM []byte, user, token string) error {
	const tmpl = `apiVersion: v1
kind: Config
clusters:
- name: weft
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    token: %s
contexts:
- name: weft
  context:
    cluster: weft
    user: %s
current-context: weft
`
	data := fmt.Sprintf(tmpl, url, base64.StdEncoding.EncodeToString(caPEM), user, token, user)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}
