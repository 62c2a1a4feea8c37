// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/weftnet/weft/daemon/status"
	"github.com/weftnet/weft/subnet"
)

// kubeTarget is one node of a Kubernetes-mode cluster as weftctl finds it:
// its lease (Node podCIDRs and WeftNode record) and the address of its
// weftd's HTTP API, on the record's public IP.
type kubeTarget struct {
	name string
	addr string
}

// kubeTargets lists the nodes of the cluster behind f's kubeconfig, by
// name, each with weftd's HTTP address (public IP, --http-port).
func kubeTargets(ctx context.Context, f *statusFlags) ([]kubeTarget, error) {
	view, err := kubeView(ctx, *f.kubeconfig)
	if err != nil {
		return nil, err
	}
	return targetsOf(view.Leases, f.httpPort), nil
}

// targetsOf turns leases into targets, sorted by node name. A node with
// no IPv4 public IP is asked on its IPv6 one.
func targetsOf(leases []subnet.Lease, port int) []kubeTarget {
	var ts []kubeTarget
	for _, l := range leases {
		ip := l.Record.PublicIP
		if !ip.IsValid() {
			ip = l.Record.PublicIPv6
		}
		t := kubeTarget{name: l.Record.NodeName}
		if ip.IsValid() {
			t.addr = net.JoinHostPort(ip.String(), strconv.Itoa(port))
		}
		ts = append(ts, t)
	}
	slices.SortFunc(ts, func(a, b kubeTarget) int { return strings.Compare(a.name, b.name) })
	return ts
}

// kubeNodeAddr returns the HTTP address of weftd on f.node.
func kubeNodeAddr(ctx context.Context, f *statusFlags) (string, error) {
	ts, err := kubeTargets(ctx, f)
	if err != nil {
		return "", err
	}
	var names []string
	for _, t := range ts {
		if t.name == f.node {
			if t.addr == "" {
				return "", fmt.Errorf("node %s: its WeftNode record has no public IP", t.name)
			}
			return t.addr, nil
		}
		names = append(names, t.name)
	}
	return "", fmt.Errorf("no node %q with podCIDRs and a WeftNode record (nodes: %s)", f.node, orDash(strings.Join(names, ", ")))
}

// kubeAnswer is one node's /status, or why there is none.
type kubeAnswer struct {
	Node   string         `json:"node"`
	Addr   string         `json:"addr"`
	Status *status.Report `json:"status,omitempty"`
	Error  string         `json:"error,omitempty"`
}

// askAll reads every target's /status, at most 16 at a time, in the
// targets' order.
func askAll(ctx context.Context, ts []kubeTarget, fetch func(context.Context, string) (status.Report, error)) []kubeAnswer {
	out := make([]kubeAnswer, len(ts))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i, t := range ts {
		out[i] = kubeAnswer{Node: t.name, Addr: t.addr}
		if t.addr == "" {
			out[i].Error = "its WeftNode record has no public IP"
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			st, err := fetch(ctx, t.addr)
			if err != nil {
				out[i].Error = err.Error()
				return
			}
			out[i].Status = &st
		}()
	}
	wg.Wait()
	return out
}

func fetchReport(ctx context.Context, addr string) (status.Report, error) {
	st, _, err := fetchStatus(ctx, addr)
	return st, err
}

// kubeStatusAll prints one line per node of the cluster: what its weftd
// reports. It fails when a node is not ready or does not answer.
func kubeStatusAll(ctx context.Context, f *statusFlags) error {
	ts, err := kubeTargets(ctx, f)
	if err != nil {
		return err
	}
	answers := askAll(ctx, ts, fetchReport)
	if f.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(answers); err != nil {
			return err
		}
	} else if err := renderNodes(stdout, answers); err != nil {
		return err
	}
	return notReady(answers)
}

// renderNodes prints the one-line-per-node summary.
func renderNodes(w io.Writer, answers []kubeAnswer) error {
	if len(answers) == 0 {
		fmt.Fprintln(w, "no nodes: no Node with podCIDRs has a WeftNode record")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tSUBNET\tBACKEND\tPEERS\tMEMBERS ALIVE\tREADY")
	for _, a := range answers {
		if a.Status == nil {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\tUNREACHABLE: %s\n", a.Node, orDash(a.Addr), a.Error)
			continue
		}
		n := a.Status.Node
		ready := "yes"
		if !n.Ready {
			ready = "no: " + n.NotReady
		}
		alive := 0
		for _, m := range a.Status.Members {
			if m.State == "alive" {
				alive++
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d/%d\t%s\n", a.Node, a.Addr, joinPrefixes(n.Subnet, n.IPv6Subnet),
			orDash(n.BackendType), len(a.Status.Peers), alive, len(a.Status.Members), ready)
	}
	return tw.Flush()
}

// notReady returns an error naming the nodes that did not answer or are
// not ready, nil when every node is ready.
func notReady(answers []kubeAnswer) error {
	var bad []string
	for _, a := range answers {
		if a.Status == nil || !a.Status.Node.Ready {
			bad = append(bad, a.Node)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d nodes not ready or not answering: %s (weftctl status --node <name> shows one; weftd must serve --http-addr on its public IP, port --http-port)",
		len(bad), len(answers), strings.Join(bad, ", "))
}

// kubeMembersAll prints every node's gossip members, as each node sees
// them. It fails when a node does not answer.
func kubeMembersAll(ctx context.Context, f *statusFlags) error {
	ts, err := kubeTargets(ctx, f)
	if err != nil {
		return err
	}
	answers := askAll(ctx, ts, fetchReport)
	if f.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(answers); err != nil {
			return err
		}
	} else if err := renderMembersAll(stdout, answers, time.Now()); err != nil {
		return err
	}
	var gone []string
	for _, a := range answers {
		if a.Status == nil {
			gone = append(gone, a.Node)
		}
	}
	if len(gone) > 0 {
		return fmt.Errorf("%d of %d nodes not answering: %s", len(gone), len(answers), strings.Join(gone, ", "))
	}
	return nil
}

// renderMembersAll prints one table of every node's view of the members.
func renderMembersAll(w io.Writer, answers []kubeAnswer, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEEN BY\tNAME\tSTATE\tSINCE\tADDRESS\tSUBNET")
	for _, a := range answers {
		if a.Status == nil {
			fmt.Fprintf(tw, "%s\t-\tUNREACHABLE: %s\t-\t-\t-\n", a.Node, a.Error)
			continue
		}
		if len(a.Status.Members) == 0 {
			fmt.Fprintf(tw, "%s\t-\tno members (gossip off?)\t-\t-\t-\n", a.Node)
		}
		for _, m := range a.Status.Members {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.Node, m.Name, orDash(m.State), since(m.Since, now), orDash(m.Addr), joinPrefixes(m.Subnet, m.IPv6Subnet))
		}
	}
	return tw.Flush()
}
