// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/weftnet/weft/daemon/status"
)

func cmdMembers(ctx context.Context, args []string) error {
	fs, f := newStatusFlags("members")
	if err := f.parse(fs, args); err != nil {
		return err
	}
	if err := argsChecked(ctx); err != nil {
		return err
	}
	addr := f.addr
	if *f.kubeconfig != "" {
		if f.node == "" {
			return kubeMembersAll(ctx, f)
		}
		var err error
		if addr, err = kubeNodeAddr(ctx, f); err != nil {
			return err
		}
	}
	st, _, err := fetchStatus(ctx, addr)
	if err != nil {
		return err
	}
	if f.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st.Members)
	}
	return renderMembers(stdout, st, time.Now())
}

// renderMembers prints the gossip members as the node sees them.
func renderMembers(w io.Writer, st status.Report, now time.Time) error {
	if len(st.Members) == 0 {
		fmt.Fprintf(w, "node %s sees no gossip members (is gossip on? see --gossip-bind)\n", st.Node.Name)
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tSINCE\tADDRESS\tSUBNET")
	for _, m := range st.Members {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Name, orDash(m.State), since(m.Since, now), orDash(m.Addr), joinPrefixes(m.Subnet, m.IPv6Subnet))
	}
	return tw.Flush()
}
