// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package leasesim_test

import (
	"context"
	"testing"
	"time"

	"github.com/weftnet/weft/subnet"
	subnetetcd "github.com/weftnet/weft/subnet/etcd"
	"github.com/weftnet/weft/subnet/etcd/etcdtest"
	"github.com/weftnet/weft/subnet/etcd/leasesim"
)

// TestSim: simulated leases are what weft's own store reads back as valid
// leases, beside a real claim, on free subnets; an update shows in the
// next listing; a claim afterwards gets a free subnet; Close removes them.
func TestSim(t *testing.T) {
	srv, err := etcdtest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	cli, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg, err := subnet.ParseConfig([]byte(`{"Network":"10.240.0.0/12","Backend":{"Type":"vxlan"}}`))
	if err != nil {
		t.Fatal(err)
	}
	store := subnetetcd.New(subnetetcd.Config{Client: cli, Prefix: "/sim"})
	rec := leasesim.Node(9999)
	rec.NodeName, rec.NodeID = "real", "11111111-1111-4111-8111-111111111111"
	own, err := store.Claim(ctx, subnet.ClaimRequest{Config: cfg, Record: rec})
	if err != nil {
		t.Fatal(err)
	}

	sim := leasesim.New(cli, "/sim")
	const n = 300
	written, err := sim.Add(ctx, cfg, n, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	v, err := store.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Leases) != n+1 || len(v.Rejected) != 0 {
		t.Fatalf("store lists %d leases (%d rejected: %v), want %d", len(v.Leases), len(v.Rejected), v.Rejected, n+1)
	}
	if cv := v.Check(cfg); len(cv.Rejected) != 0 {
		t.Errorf("leases rejected by the network's check: %v", cv.Rejected)
	}
	seen := map[string]bool{}
	for _, l := range v.Leases {
		if l.Subnet == own.Subnet && l.Record.NodeName != "real" {
			t.Errorf("simulated lease %s took the real node's subnet", l.Record.NodeName)
		}
		seen[l.Record.NodeName] = true
	}
	for _, l := range written {
		if !seen[l.Record.NodeName] {
			t.Errorf("%s not listed", l.Record.NodeName)
		}
	}

	up, err := sim.Update(ctx, 7, func(r *subnet.Record) { r.PublicIP = leasesim.PublicIP(50000) })
	if err != nil {
		t.Fatal(err)
	}
	v, err = store.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range v.Leases {
		if l.Subnet == up.Subnet && (l.Record.PublicIP != leasesim.PublicIP(50000) || l.Record.Version != 2) {
			t.Errorf("updated lease reads %+v", l.Record)
		}
	}

	rec.NodeName, rec.NodeID = "late", "22222222-2222-4222-8222-222222222222"
	late, err := store.Claim(ctx, subnet.ClaimRequest{Config: cfg, Record: rec})
	if err != nil {
		t.Fatalf("claim beside simulated leases: %v", err)
	}
	for _, l := range written {
		if l.Subnet == late.Subnet {
			t.Errorf("claim got simulated subnet %s", l.Subnet)
		}
	}

	if err := sim.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err = store.List(ctx); err != nil || len(v.Leases) != 2 {
		t.Errorf("after Close: %d leases, %v; want the 2 real ones", len(v.Leases), err)
	}
}
