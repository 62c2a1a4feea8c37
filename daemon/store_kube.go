// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/weftnet/weft/subnet"
	subnetkube "github.com/weftnet/weft/subnet/kube"
)

// Kubernetes mode (--kube-subnet-mgr): the store is the Kubernetes API
// (subnet/kube) instead of etcd. These are its flags and the opening of
// its store; everything after the store is the same in both modes.

// NodeNameEnv is the environment variable the node name is read from in
// Kubernetes mode when --node-name is not given (the DaemonSet sets it
// from spec.nodeName through the downward API).
const NodeNameEnv = "NODE_NAME"

// KubeConfig holds the Kubernetes-mode flags.
type KubeConfig struct {
	// SubnetMgr selects Kubernetes mode.
	SubnetMgr bool
	// Kubeconfig is a kubeconfig file; empty: the in-cluster config.
	Kubeconfig string
	// ConfigNamespace and ConfigName name the ConfigMap holding the
	// network config (key network-config.json).
	ConfigNamespace string
	ConfigName      string
	// NetConfFile, when set, is read for the network config instead of
	// the ConfigMap.
	NetConfFile string
}

// addKubeFlags adds the Kubernetes-mode flags to fs, bound to c.
func addKubeFlags(fs *flag.FlagSet, c *KubeConfig) {
	env := func(name string) string { return " (env " + EnvName(name) + ")" }
	fs.BoolVar(&c.SubnetMgr, "kube-subnet-mgr", false, "Kubernetes mode: subnets from Nodes' podCIDRs, peer records and network config in the Kubernetes API instead of etcd"+env("kube-subnet-mgr"))
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig file for --kube-subnet-mgr (default: the in-cluster config of the pod's service account)"+env("kubeconfig"))
	fs.StringVar(&c.ConfigNamespace, "net-conf-namespace", subnetkube.DefaultConfigNamespace, "namespace of the network config's ConfigMap (--kube-subnet-mgr)"+env("net-conf-namespace"))
	fs.StringVar(&c.ConfigName, "net-conf-configmap", subnetkube.DefaultConfigName, "name of the ConfigMap whose key "+subnetkube.ConfigKey+" holds the network config (--kube-subnet-mgr)"+env("net-conf-configmap"))
	fs.StringVar(&c.NetConfFile, "net-conf", "", "file holding the network config, followed for changes, instead of the ConfigMap (--kube-subnet-mgr)"+env("net-conf"))
	fs.StringVar(&c.NetConfFile, "net-config-path", "", "alias of --net-conf (flannel's name)"+env("net-config-path"))
}

// dnsName is a Kubernetes object or namespace name (RFC 1123 subdomain).
var dnsName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// validateKube checks the Kubernetes-mode flags.
func (c *Config) validateKube(bad func(format string, a ...any)) {
	k := &c.Kube
	if !k.SubnetMgr {
		if k.Kubeconfig != "" || k.NetConfFile != "" {
			bad("--kubeconfig and --net-conf are for Kubernetes mode: add --kube-subnet-mgr")
		}
		return
	}
	if len(k.ConfigNamespace) > 63 || !dnsName.MatchString(k.ConfigNamespace) {
		bad("--net-conf-namespace: %q is not a namespace name", k.ConfigNamespace)
	}
	if len(k.ConfigName) > 253 || !dnsName.MatchString(k.ConfigName) {
		bad("--net-conf-configmap: %q is not a ConfigMap name", k.ConfigName)
	}
}

// nodeName returns the node name the flags give: --node-name, or in
// Kubernetes mode the NODE_NAME variable; empty when neither is set.
func (c *Config) nodeName() string {
	if c.NodeName == "" && c.Kube.SubnetMgr {
		return os.Getenv(NodeNameEnv)
	}
	return c.NodeName
}

// openKubeStore makes the Kubernetes-API store and checks that the WeftNode
// resource is installed. An API server that does not answer is not fatal
// here (weftd may start from its state dir); a missing resource is.
func (d *daemon) openKubeStore(ctx context.Context) (subnet.Store, error) {
	rc, err := subnetkube.RESTConfig(d.cfg.Kube.Kubeconfig)
	if err != nil {
		return nil, err
	}
	s, err := subnetkube.New(rc, subnetkube.Config{
		ConfigNamespace: d.cfg.Kube.ConfigNamespace,
		ConfigName:      d.cfg.Kube.ConfigName,
		NetConfFile:     d.cfg.Kube.NetConfFile,
		CallTimeout:     storeCallTimeout,
		Log:             d.log.WithField("component", "kube"),
	})
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
	defer cancel()
	switch err := s.CheckCRD(cctx); {
	case errors.Is(err, subnetkube.ErrCRDMissing):
		return nil, fmt.Errorf("cannot start in Kubernetes mode: %w", err)
	case err != nil:
		d.log.WithError(err).Warn("cannot check for the WeftNode resource now; going on")
	}
	d.log.WithField("host", rc.Host).Info("Kubernetes mode: subnets from Nodes' podCIDRs")
	return s, nil
}

// storeName names the store for messages: etcd and its endpoints, or the
// Kubernetes API.
func (c *Config) storeName() string {
	if c.Kube.SubnetMgr {
		return "the Kubernetes API server"
	}
	return "etcd (" + strings.Join(c.EtcdEndpoints, ",") + ")"
}

// storeKind names the store in log messages, each constant within a mode
// so that alerts can match it: "etcd", or "Kubernetes API server".
func (c *Config) storeKind() string {
	if c.Kube.SubnetMgr {
		return "Kubernetes API server"
	}
	return "etcd"
}

// configPlace says where the network config is read and how to write it.
func (c *Config) configPlace() string {
	switch {
	case c.Kube.SubnetMgr && c.Kube.NetConfFile != "":
		return "file " + c.Kube.NetConfFile
	case c.Kube.SubnetMgr:
		return fmt.Sprintf("ConfigMap %s/%s, key %s", c.Kube.ConfigNamespace, c.Kube.ConfigName, subnetkube.ConfigKey)
	}
	return c.EtcdPrefix + "/config (write one with 'weftctl config set')"
}

// networkMarker is what the daemon uses of a store that reports a ready
// data plane on the node's object (subnet/kube: the Node's
// NetworkUnavailable condition).
type networkMarker interface {
	SetNetworkAvailable(ctx context.Context, nodeName string) error
}

// markNetworkAvailable waits until the node is ready, then tells a store
// that wants to know (networkMarker), retrying with back-off until it took
// the report; it never reports the network unavailable.
func (d *daemon) markNetworkAvailable(ctx context.Context) error {
	m, ok := d.store.(networkMarker)
	if !ok {
		return nil
	}
	for d.notReady() != "" {
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return nil
		}
	}
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
		err := m.SetNetworkAvailable(cctx, d.nodeName)
		cancel()
		if err == nil {
			d.log.Info("Node condition NetworkUnavailable set to False")
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		d.log.WithError(err).Warn("set the Node's NetworkUnavailable condition; retrying")
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return nil
		}
	}
}
