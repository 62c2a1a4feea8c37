// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/weftnet/weft/daemon/status"
)

// defaultStatusAddr is weftd's default --http-addr, defaultHTTPPort its
// port.
const (
	defaultStatusAddr = "127.0.0.1:9950"
	defaultHTTPPort   = 9950
)

// statusFlags are the flags of the commands that read weftd's /status.
type statusFlags struct {
	addr   string
	output string
	// Kubernetes mode: the nodes come from the cluster's WeftNode
	// records; node picks one, httpPort is where each weftd serves.
	kubeconfig *string
	node       string
	httpPort   int
	addrSet    bool
}

func newStatusFlags(name string) (*flag.FlagSet, *statusFlags) {
	f := &statusFlags{}
	fs := flag.NewFlagSet("weftctl "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := defaultStatusAddr
	if v, ok := os.LookupEnv("WEFTCTL_ADDR"); ok && v != "" {
		def = v
	}
	fs.StringVar(&f.addr, "addr", def, "weftd HTTP address host:port or URL (env WEFTCTL_ADDR)")
	fs.StringVar(&f.output, "o", "table", "output: table or json (the raw /status document)")
	f.kubeconfig = kubeconfigFlag(fs)
	fs.StringVar(&f.node, "node", "", "with --kubeconfig: the node to ask (default: every node, one line each)")
	fs.IntVar(&f.httpPort, "http-port", defaultHTTPPort, "with --kubeconfig: the port of weftd's --http-addr on each node's public IP")
	return fs, f
}

func (f *statusFlags) parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if f.output != "table" && f.output != "json" {
		return fmt.Errorf("-o %q: want table or json", f.output)
	}
	fs.Visit(func(fl *flag.Flag) {
		if fl.Name == "addr" {
			f.addrSet = true
		}
	})
	if *f.kubeconfig == "" {
		if f.node != "" {
			return errors.New("--node needs --kubeconfig (without it, --addr names the node)")
		}
		return nil
	}
	if f.addrSet {
		return errors.New("--addr and --kubeconfig: give one (--kubeconfig finds every node's address, --node picks one)")
	}
	if f.httpPort < 1 || f.httpPort > 65535 {
		return fmt.Errorf("--http-port %d: want 1-65535", f.httpPort)
	}
	return nil
}

// fetchStatus reads weftd's /status; raw is the document as served.
func fetchStatus(ctx context.Context, addr string) (st status.Report, raw []byte, err error) {
	u := addr
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	u = strings.TrimRight(u, "/") + "/status"
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return st, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, nil, fmt.Errorf("is weftd running with --http-addr %s? %w", addr, err)
	}
	defer resp.Body.Close()
	raw, err = io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return st, nil, fmt.Errorf("read %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return st, nil, fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(raw)))
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, nil, fmt.Errorf("decode %s: %w", u, err)
	}
	return st, raw, nil
}

func cmdStatus(ctx context.Context, args []string) error {
	fs, f := newStatusFlags("status")
	if err := f.parse(fs, args); err != nil {
		return err
	}
	if err := argsChecked(ctx); err != nil {
		return err
	}
	addr := f.addr
	if *f.kubeconfig != "" {
		if f.node == "" {
			return kubeStatusAll(ctx, f)
		}
		var err error
		if addr, err = kubeNodeAddr(ctx, f); err != nil {
			return err
		}
	}
	st, raw, err := fetchStatus(ctx, addr)
	if err != nil {
		return err
	}
	if f.output == "json" {
		_, err := stdout.Write(raw)
		return err
	}
	return renderStatus(stdout, st, time.Now())
}

// renderStatus prints the node's summary and a peer table.
func renderStatus(w io.Writer, st status.Report, now time.Time) error {
	n := st.Node
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s:\t%v\n", k, v) }
	row("node", fmt.Sprintf("%s (%s)", n.Name, n.ID))
	ready := "yes"
	if !n.Ready {
		ready = "no: " + n.NotReady
	}
	row("ready", ready)
	row("subnet", joinPrefixes(n.Subnet, n.IPv6Subnet))
	row("network", joinPrefixes(n.Network, n.IPv6Network))
	row("public ip", joinAddrs(n.PublicIP, n.PublicIPv6)+" on "+orDash(n.Iface))
	row("backend", fmt.Sprintf("%s %s, mtu %d", n.BackendType, backendData(n.BackendData.VTEPMAC, n.BackendData.WireGuardKey, n.BackendData.WireGuardPort), n.MTU))
	row("lease", fmt.Sprintf("epoch %d, data version %d%s", n.Epoch, n.Version, expiry(n.LeaseExpiry, now)))
	kind, reachable := n.Reachable()
	row("store", status.StoreName(kind)+" "+map[bool]string{true: "reachable", false: "UNREACHABLE"}[reachable])
	if n.GossipAddr != "" {
		g := n.GossipAddr
		if n.GossipEncryption != "" {
			g += ", encryption " + n.GossipEncryption
			if n.GossipKeySource != "" {
				g += " (key from " + n.GossipKeySource + ")"
			}
		}
		if n.GossipRefused > 0 {
			g += fmt.Sprintf(", %d member name(s) refused (table full)", n.GossipRefused)
		}
		row("gossip", g)
	}
	if bn := n.BridgeNetfilter; bn != nil {
		row("br_netfilter", bridgeNetfilter(bn))
	}
	if !n.Complete {
		row("peer view", "incomplete (reconciles only add until a full list arrives)")
	}
	for _, p := range []struct{ k, v string }{
		{"CONFIG ERROR", n.ConfigError}, {"RESTART NEEDED", strings.Join(n.PendingRestart, "; ")},
		{"FORWARDING", n.ForwardingProblem}, {"MASQUERADE", n.MasqueradeProblem},
		{"FORWARD DROP", n.ForwardDropWarning}, {"RECONCILE ERROR", n.ReconcileError},
		{"BR_NETFILTER", bridgeNetfilterProblem(n.BridgeNetfilter)},
		{"GOSSIP", n.GossipWarning},
	} {
		if p.v != "" {
			row(p.k, p.v)
		}
	}
	for _, r := range st.RejectedLeases {
		row("REJECTED LEASE", r.Key+": "+r.Reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%d peer(s)\n", len(st.Peers))
	if len(st.Peers) > 0 {
		if err := renderPeers(w, st.Peers, now); err != nil {
			return err
		}
	}
	if len(st.Rejected) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\n%d rejected peer entr(ies): none reaches the data plane\n", len(st.Rejected))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSUBNET\tPUBLIC IP\tEPOCH\tSOURCE\tREASON")
	for _, r := range st.Rejected {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", orDash(r.Name), joinPrefixes(r.Subnet, r.IPv6Subnet),
			joinAddrs(r.PublicIP, r.PublicIPv6), r.Epoch, r.Source, r.Reason)
	}
	return tw.Flush()
}

// bridgeNetfilter summarises br_netfilter's state in one line.
func bridgeNetfilter(bn *status.BridgeNetfilter) string {
	if !bn.Loaded {
		return "NOT LOADED"
	}
	onOff := map[bool]string{true: "1", false: "0"}
	return "loaded, bridge-nf-call-iptables " + onOff[bn.CallIPTables] + ", bridge-nf-call-ip6tables " + onOff[bn.CallIP6Tables]
}

// bridgeNetfilterProblem is br_netfilter's problem, if any.
func bridgeNetfilterProblem(bn *status.BridgeNetfilter) string {
	if bn == nil {
		return ""
	}
	return bn.Problem
}

// renderPeers prints the peer table.
func renderPeers(w io.Writer, peers []status.Peer, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSUBNET\tPUBLIC IP\tBACKEND DATA\tEPOCH\tVERSION\tSTATE\tSINCE\tSOURCE\tPROBLEM")
	for _, p := range peers {
		src := p.Source
		if p.Provisional {
			src += " (provisional)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n",
			p.Name, joinPrefixes(p.Subnet, p.IPv6Subnet), joinAddrs(p.PublicIP, p.PublicIPv6),
			backendData(p.BackendData.VTEPMAC, p.BackendData.WireGuardKey, p.BackendData.WireGuardPort),
			p.Epoch, p.Version, orDash(p.State), since(p.Since, now), orDash(src), orDash(p.Problem))
	}
	return tw.Flush()
}

func joinPrefixes(ps ...netip.Prefix) string {
	var s []string
	for _, p := range ps {
		if p.IsValid() {
			s = append(s, p.String())
		}
	}
	return orDash(strings.Join(s, ","))
}

func joinAddrs(as ...netip.Addr) string {
	var s []string
	for _, a := range as {
		if a.IsValid() {
			s = append(s, a.String())
		}
	}
	return orDash(strings.Join(s, ","))
}

func backendData(mac, key string, port int) string {
	switch {
	case mac != "":
		return "vtep " + mac
	case key != "":
		return fmt.Sprintf("key %s port %d", key, port)
	}
	return "-"
}

func since(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return now.Sub(t).Round(time.Second).String() + " ago"
}

func expiry(t, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	return ", expires in " + t.Sub(now).Round(time.Second).String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
