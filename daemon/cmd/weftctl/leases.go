// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/weftnet/weft/subnet"
	subnetetcd "github.com/weftnet/weft/subnet/etcd"
)

const leasesUsage = `usage: weftctl leases [flags]             list the leases
       weftctl leases rm <subnet|node> [flags]   evict a node's lease

'leases rm' deletes the lease of a subnet (10.244.3.0/24) or of a node
name and writes a released/ tombstone, so that the subnet is handed out
again only when no other is free for the next hour. It asks for
confirmation unless --yes is given. A node that is still running notices
and claims a subnet again.
`

func cmdLeases(ctx context.Context, args []string) error {
	return runLeases(ctx, args, stdIO())
}

func runLeases(ctx context.Context, args []string, cio *cmdIO) error {
	if len(args) > 0 {
		switch args[0] {
		case "rm":
			return leasesRm(ctx, args[1:], cio)
		case "list", "ls":
			args = args[1:]
		case "-h", "--help", "help":
			fmt.Fprint(cio.out, leasesUsage)
			return nil
		}
	}
	return leasesList(ctx, args, cio)
}

func leasesList(ctx context.Context, args []string, cio *cmdIO) error {
	fs := flag.NewFlagSet("weftctl leases", flag.ContinueOnError)
	fs.SetOutput(cio.errOut)
	conn := connFlags(fs)
	kubeconfig := kubeconfigFlag(fs)
	output := fs.String("o", "table", "output: table or json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("leases: unexpected arguments %q (did you mean weftctl leases rm?)", fs.Args())
	}
	if *output != "table" && *output != "json" {
		return fmt.Errorf("leases: -o %q: want table or json", *output)
	}
	if err := argsChecked(ctx); err != nil {
		return err
	}
	if *kubeconfig != "" {
		return kubeLeasesList(ctx, *kubeconfig, *output, cio)
	}
	st, closeStore, err := conn.store(ctx)
	if err != nil {
		return err
	}
	defer closeStore()
	view, err := st.List(ctx)
	if err != nil {
		return conn.explain(err)
	}
	if err := st.FillExpiry(ctx, view.Leases); err != nil {
		return conn.explain(err)
	}
	// Records the store rejected are no leases; say so apart from the
	// listing, so that stdout stays a table (or JSON).
	for _, r := range view.Rejected {
		fmt.Fprintf(cio.errOut, "rejected %s%s: %s\n", st.LeasesPrefix(), r.Key, r.Reason)
	}
	now := time.Now()
	if *output == "json" {
		return writeLeasesJSON(cio.out, view.Leases, now)
	}
	if len(view.Leases) == 0 {
		fmt.Fprintf(cio.out, "no leases under %s\n", st.LeasesPrefix())
		return nil
	}
	return writeLeasesTable(cio.out, view.Leases, now)
}

// leaseJSON is one lease in 'weftctl leases -o json'.
type leaseJSON struct {
	subnet.Lease
	// TTLSeconds is how long the lease lives if not renewed (0: expired
	// or unknown).
	TTLSeconds int64 `json:"ttlSeconds"`
}

func writeLeasesJSON(w io.Writer, leases []subnet.Lease, now time.Time) error {
	out := make([]leaseJSON, 0, len(leases))
	for _, l := range leases {
		j := leaseJSON{Lease: l}
		if !l.Expiry.IsZero() && l.Expiry.After(now) {
			j.TTLSeconds = int64(l.Expiry.Sub(now).Round(time.Second) / time.Second)
		}
		out = append(out, j)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func writeLeasesTable(w io.Writer, leases []subnet.Lease, now time.Time) error {
	dual := false
	for _, l := range leases {
		dual = dual || l.IPv6Subnet.IsValid() && l.Subnet.IsValid()
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if dual {
		fmt.Fprintln(tw, "SUBNET\tIPV6 SUBNET\tNODE\tPUBLIC IP\tBACKEND\tTTL LEFT\tEPOCH")
	} else {
		fmt.Fprintln(tw, "SUBNET\tNODE\tPUBLIC IP\tBACKEND\tTTL LEFT\tEPOCH")
	}
	for _, l := range leases {
		ip := dash(l.Record.PublicIP.String(), l.Record.PublicIP.IsValid())
		if l.Record.PublicIPv6.IsValid() {
			ip += "," + l.Record.PublicIPv6.String()
		}
		row := []string{}
		if dual {
			row = append(row, dash(l.Subnet.String(), l.Subnet.IsValid()), dash(l.IPv6Subnet.String(), l.IPv6Subnet.IsValid()))
		} else {
			row = append(row, l.Primary().String())
		}
		row = append(row, dash(l.Record.NodeName, l.Record.NodeName != ""), ip, dash(l.Record.BackendType, l.Record.BackendType != ""),
			ttlLeft(l.Expiry, now), fmt.Sprint(l.Epoch))
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

func dash(s string, ok bool) string {
	if !ok {
		return "-"
	}
	return s
}

// ttlLeft renders the time until expiry: 23h59m, 4m05s, 12s, or expired.
func ttlLeft(expiry, now time.Time) string {
	if expiry.IsZero() {
		return "-"
	}
	d := expiry.Sub(now).Round(time.Second)
	switch {
	case d <= 0:
		return "expired"
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%ds", int(d.Seconds()))
}

// leaseSubnets names a lease's subnets: 10.244.3.0/24, or
// 10.244.3.0/24+fd10:244:0:3::/64 for dual-stack.
func leaseSubnets(l subnet.Lease) string {
	switch {
	case l.Subnet.IsValid() && l.IPv6Subnet.IsValid():
		return l.Subnet.String() + "+" + l.IPv6Subnet.String()
	case l.Subnet.IsValid():
		return l.Subnet.String()
	}
	return l.IPv6Subnet.String()
}

func leasesRm(ctx context.Context, args []string, cio *cmdIO) error {
	fs := flag.NewFlagSet("weftctl leases rm", flag.ContinueOnError)
	fs.SetOutput(cio.errOut)
	conn := connFlags(fs)
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("leases rm: give exactly one subnet (10.244.3.0/24) or node name; weftctl leases lists them")
	}
	if err := argsChecked(ctx); err != nil {
		return err
	}
	target := pos[0]
	if !*yes && !cio.tty {
		return errors.New("leases rm: refusing to evict without confirmation: stdin is not a terminal; pass --yes")
	}
	st, closeStore, err := conn.store(ctx)
	if err != nil {
		return err
	}
	defer closeStore()
	view, err := st.List(ctx)
	if err != nil {
		return conn.explain(err)
	}
	victims := subnetetcd.MatchLeases(view.Leases, target)
	if len(victims) == 0 {
		return fmt.Errorf("leases rm: no lease for %q: give a subnet (10.244.3.0/24) or a node name; weftctl leases lists them", target)
	}
	if !*yes {
		if err := st.FillExpiry(ctx, victims); err != nil {
			return conn.explain(err)
		}
		fmt.Fprintf(cio.out, "About to evict %d lease(s):\n", len(victims))
		if err := writeLeasesTable(cio.out, victims, time.Now()); err != nil {
			return err
		}
		fmt.Fprint(cio.out, "A node that is still running will claim a subnet again.\nEvict? [y/N] ")
		answer, _ := bufio.NewReader(cio.in).ReadString('\n')
		switch strings.ToLower(strings.TrimSpace(answer)) {
		case "y", "yes":
		default:
			return errors.New("leases rm: not confirmed; nothing removed")
		}
	}
	evicted, err := st.Evict(ctx, target)
	if err != nil {
		return conn.explain(err)
	}
	for _, l := range evicted {
		fmt.Fprintf(cio.out, "evicted %s (node %s); released/ tombstone written\n", leaseSubnets(l), dash(l.Record.NodeName, l.Record.NodeName != ""))
	}
	return nil
}
