// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/subnet"
)

// Pod is a namespace attached to its node's bridge, by the weft CNI plugin
// (or by the harness with Options.HarnessPods).
type Pod struct {
	// Name is "<node>-pod<j>"; NS is its namespace.
	Name string
	NS   NS
	Node *Node
	// IP and IPv6 are the pod's addresses on eth0.
	IP   netip.Addr
	IPv6 netip.Addr
	// ContainerID is the CNI container ID used for ADD and DEL.
	ContainerID string
	// Result is the CNI plugin's ADD result (JSON; empty for a pod the
	// harness attached), the prevResult of a CHECK.
	Result json.RawMessage
	// Identity is what the runtime told the plugin of the pod (CNI_ARGS
	// and args.cni.labels); zero for a pod added by AddPod.
	Identity subnet.PodIdentity
	// Added is when the plugin's ADD returned.
	Added time.Time
}

// Addr returns the pod's IPv4 address, or its IPv6 one when v6 is set.
func (p *Pod) Addr(v6 bool) netip.Addr {
	if v6 {
		return p.IPv6
	}
	return p.IP
}

// Pods returns the node's pods.
func (n *Node) Pods() []*Pod {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*Pod(nil), n.pods...)
}

// CNIConfig is the network config handed to the weft plugin on this node.
func (n *Node) CNIConfig() string {
	cfg := map[string]any{
		"cniVersion": "1.1.0",
		"name":       "weft",
		"type":       "weft",
		"subnetFile": n.SubnetFilePath,
		"dataDir":    n.CNIDataDir,
	}
	b, _ := json.Marshal(cfg)
	return string(b)
}

// AddPod creates a pod namespace and attaches it to the node.
func (n *Node) AddPod(ctx context.Context) (*Pod, error) {
	return n.AddPodAs(ctx, subnet.PodIdentity{})
}

// AddPodAs is AddPod for a pod the runtime names: the plugin is given
// id's namespace and name in CNI_ARGS and its labels in args.cni.labels,
// as a Kubernetes runtime gives them.
func (n *Node) AddPodAs(ctx context.Context, id subnet.PodIdentity) (*Pod, error) {
	n.mu.Lock()
	n.npod++
	j := n.npod
	n.mu.Unlock()
	name := fmt.Sprintf("%s-pod%d", n.Name, j)
	ns, err := n.c.newNS(name)
	if err != nil {
		return nil, err
	}
	p := &Pod{Name: name, NS: ns, Node: n, ContainerID: n.c.ID + "-" + name, Identity: id}
	if n.c.opts.HarnessPods || n.c.opts.NoDaemons {
		err = n.attachByHarness(p, j)
	} else {
		p.Result, err = n.cni(ctx, "ADD", p, n.podCNIConfig(id))
		p.Added = time.Now()
	}
	if err != nil {
		return nil, fmt.Errorf("attach pod %s: %w", name, err)
	}
	if err := p.readAddrs(); err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.pods = append(n.pods, p)
	n.mu.Unlock()
	c := n.c
	c.mu.Lock()
	c.state.Pods = append(c.state.Pods, PodState{Name: name, Node: n.Name, Namespace: ns.Name, IP: addrString(p.IP), IPv6: addrString(p.IPv6)})
	c.mu.Unlock()
	c.saveState()
	return p, nil
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// Remove detaches the pod (CNI DEL) and deletes its namespace.
func (p *Pod) Remove(ctx context.Context) error {
	n := p.Node
	var err error
	if !(n.c.opts.HarnessPods || n.c.opts.NoDaemons) {
		_, err = n.cni(ctx, "DEL", p, n.CNIConfig())
	}
	n.mu.Lock()
	for i, q := range n.pods {
		if q == p {
			n.pods = append(n.pods[:i], n.pods[i+1:]...)
			break
		}
	}
	n.mu.Unlock()
	return errors.Join(err, deleteNS(p.NS.Name))
}

// Check runs the CNI plugin's CHECK for the pod, with its ADD result as
// prevResult, and returns the plugin's error.
func (p *Pod) Check(ctx context.Context) error {
	if len(p.Result) == 0 {
		return fmt.Errorf("pod %s has no ADD result to check against (attached by the harness)", p.Name)
	}
	n := p.Node
	var cfg map[string]any
	if err := json.Unmarshal([]byte(n.CNIConfig()), &cfg); err != nil {
		return err
	}
	cfg["prevResult"] = p.Result
	conf, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	_, err = n.cni(ctx, "CHECK", p, string(conf))
	return err
}

// podCNIConfig is CNIConfig with id's labels in args.cni.labels.
func (n *Node) podCNIConfig(id subnet.PodIdentity) string {
	if len(id.Labels) == 0 {
		return n.CNIConfig()
	}
	var cfg map[string]any
	_ = json.Unmarshal([]byte(n.CNIConfig()), &cfg)
	var labels []map[string]string
	for k, v := range id.Labels {
		labels = append(labels, map[string]string{"key": k, "value": v})
	}
	cfg["args"] = map[string]any{"cni": map[string]any{"labels": labels}}
	b, _ := json.Marshal(cfg)
	return string(b)
}

// cni runs the weft plugin (the node's: see [Node.BinDir]) inside the node
// namespace with network config conf, and returns its stdout.
func (n *Node) cni(ctx context.Context, command string, p *Pod, conf string) ([]byte, error) {
	dir := n.binDir()
	bin, err := checkBinary(dir, BinCNI)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := n.NS.Command(ctx, bin)
	cmd.Env = cleanEnv(
		"CNI_COMMAND="+command,
		"CNI_CONTAINERID="+p.ContainerID,
		"CNI_NETNS="+p.NS.Path(),
		"CNI_IFNAME=eth0",
		"CNI_PATH="+dir,
	)
	if p.Identity.Name != "" {
		cmd.Env = append(cmd.Env, "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE="+p.Identity.Namespace+";K8S_POD_NAME="+p.Identity.Name)
	}
	cmd.Stdin = strings.NewReader(conf)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("weft CNI %s on %s: %w: %s %s", command, n.Name, err, strings.TrimSpace(stdout.String()), strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// readAddrs reads the pod's global addresses from eth0.
func (p *Pod) readAddrs() error {
	return p.NS.withHandle(func(h *netlink.Handle) error {
		l, err := h.LinkByName("eth0")
		if err != nil {
			return fmt.Errorf("pod %s has no eth0: %w", p.Name, err)
		}
		addrs, err := backend.AddrList(h, l, netlink.FAMILY_ALL)
		if err != nil {
			return fmt.Errorf("list addresses of pod %s: %w", p.Name, err)
		}
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok || ip.IsLinkLocalUnicast() {
				continue
			}
			ip = ip.Unmap()
			if ip.Is4() && !p.IP.IsValid() {
				p.IP = ip
			} else if ip.Is6() && !p.IPv6.IsValid() {
				p.IPv6 = ip
			}
		}
		if !p.IP.IsValid() && !p.IPv6.IsValid() {
			return fmt.Errorf("pod %s has no address on eth0", p.Name)
		}
		return nil
	})
}

// attachByHarness wires pod j to the node the way the CNI plugin would:
// bridge weft0 with the gateway address, a veth, the j-th address after
// the gateway, default routes, forwarding on in the node.
func (n *Node) attachByHarness(p *Pod, j int) error {
	sf, err := n.SubnetFile()
	if err != nil {
		return fmt.Errorf("read subnet file: %w", err)
	}
	if err := n.NS.Sysctl("net/ipv4/ip_forward", "1"); err != nil {
		return fmt.Errorf("enable forwarding: %w", err)
	}
	if sf.IPv6Subnet.IsValid() {
		n.NS.Sysctl("net/ipv6/conf/all/forwarding", "1")
		p.NS.Sysctl("net/ipv6/conf/all/accept_dad", "0")
		p.NS.Sysctl("net/ipv6/conf/default/accept_dad", "0")
	}
	err = n.NS.withHandle(func(h *netlink.Handle) error {
		if _, err := h.LinkByName("weft0"); err == nil {
			return nil
		}
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "weft0", MTU: sf.MTU}}
		if err := h.LinkAdd(br); err != nil {
			return fmt.Errorf("add bridge weft0: %w", err)
		}
		for _, gw := range []netip.Prefix{sf.Subnet, sf.IPv6Subnet} {
			if gw.IsValid() {
				if err := addAddr(h, br, gw.Addr(), gw.Bits()); err != nil {
					return err
				}
			}
		}
		return h.LinkSetUp(br)
	})
	if err != nil {
		return err
	}
	// The j-th address after the gateway (the subnet file's address).
	podAddr := func(gw netip.Prefix) netip.Prefix {
		a := gw.Addr()
		for range j {
			a = a.Next()
		}
		return netip.PrefixFrom(a, gw.Bits())
	}
	var addrs []netip.Prefix
	var gw, gw6 netip.Addr
	if sf.Subnet.IsValid() {
		addrs = append(addrs, podAddr(sf.Subnet))
		gw = sf.Subnet.Addr()
	}
	if sf.IPv6Subnet.IsValid() {
		addrs = append(addrs, podAddr(sf.IPv6Subnet))
		gw6 = sf.IPv6Subnet.Addr()
	}
	if err := plugIn(n.NS, "weft0", fmt.Sprintf("hv%d", j), p.NS, "eth0", addrs, gw, gw6); err != nil {
		return err
	}
	return p.NS.withHandle(func(h *netlink.Handle) error {
		l, err := h.LinkByName("eth0")
		if err != nil {
			return err
		}
		return h.LinkSetMTU(l, sf.MTU)
	})
}
