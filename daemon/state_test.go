// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/weftnet/weft/subnet"
)

func TestStateDirRoundTrips(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s, err := openStateDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode = %v, %v; want 0700", fi.Mode().Perm(), err)
	}

	t.Run("node ID is created once", func(t *testing.T) {
		id1, err := s.nodeID()
		if err != nil {
			t.Fatal(err)
		}
		s2, _ := openStateDir(dir)
		id2, err := s2.nodeID()
		if err != nil || id1 != id2 || len(id1) != 36 {
			t.Fatalf("node IDs %q %q (%v)", id1, id2, err)
		}
		if fi, _ := os.Stat(s.path(nodeIDFile)); fi.Mode().Perm() != 0o600 {
			t.Errorf("node-id mode %v, want 0600", fi.Mode().Perm())
		}
	})

	t.Run("data version grows only when data changes", func(t *testing.T) {
		d := ownData{PublicIP: addr("198.18.0.1"), BackendType: "vxlan", BackendData: subnet.BackendData{VTEPMAC: "02:00:00:00:00:01"}}
		steps := []struct {
			data ownData
			want uint64
		}{
			{d, 1}, {d, 1},
			{func() ownData { x := d; x.PublicIP = addr("198.18.0.9"); return x }(), 2},
			{func() ownData { x := d; x.PublicIP = addr("198.18.0.9"); return x }(), 2},
			{func() ownData { x := d; x.PublicIP = addr("198.18.0.9"); x.GossipAddr = "198.18.0.9:7950"; return x }(), 3},
		}
		for i, st := range steps {
			got, err := s.dataVersion(st.data)
			if err != nil || got.Version != st.want {
				t.Fatalf("step %d: version %d (%v), want %d", i, got.Version, err, st.want)
			}
		}
	})

	t.Run("config", func(t *testing.T) {
		if c, err := s.config(); c != nil || err != nil {
			t.Fatalf("no saved config: got %v, %v", c, err)
		}
		c, err := subnet.ParseConfig([]byte(`{"Network":"10.244.0.0/16","IPv6Network":"fd10:244::/56","Backend":{"Type":"vxlan","DirectRouting":true}}`))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.saveConfig(c); err != nil {
			t.Fatal(err)
		}
		got, err := s.config()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(c, got, cmpNet...); diff != "" {
			t.Errorf("config round trip (-saved +loaded):\n%s", diff)
		}
	})

	t.Run("lease", func(t *testing.T) {
		l := lease("me", "id-me", "10.244.1.0/24", "198.18.0.1", 10, 2)
		l.IPv6Subnet = pfx("fd10:244:0:1::/64")
		l.LeaseID, l.ModRevision, l.Expiry = 77, 12, time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
		if err := s.saveLease(&l); err != nil {
			t.Fatal(err)
		}
		got, err := s.lease()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(&l, got, cmpNet...); diff != "" {
			t.Errorf("lease round trip (-saved +loaded):\n%s", diff)
		}
	})

	t.Run("snapshot", func(t *testing.T) {
		v := subnet.View{Revision: 41, Leases: []subnet.Lease{
			lease("b", "id-b", "10.244.2.0/24", "198.18.0.2", 11, 3),
			lease("c", "id-c", "10.244.3.0/24", "198.18.0.3", 12, 1),
		}}
		if err := s.saveSnapshot(v); err != nil {
			t.Fatal(err)
		}
		got, err := s.snapshot()
		if err != nil {
			t.Fatal(err)
		}
		v.Complete = true
		if diff := cmp.Diff(&v, got, cmpNet...); diff != "" {
			t.Errorf("snapshot round trip (-saved +loaded):\n%s", diff)
		}
	})

	t.Run("corrupt files are errors, not silent", func(t *testing.T) {
		if err := os.WriteFile(s.path(leaseFile), []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := s.lease(); err == nil {
			t.Error("corrupt lease file accepted")
		}
		if err := os.WriteFile(s.path(nodeIDFile), []byte("not-a-uuid"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := s.nodeID(); err == nil {
			t.Error("corrupt node ID accepted")
		}
	})
}

var cmpNet = []cmp.Option{
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
}
