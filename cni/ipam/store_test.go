// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func alloc(t *testing.T, s *Store, id string, p Pools) Record {
	t.Helper()
	r, created, err := s.Allocate(id, "eth0", p)
	if err != nil {
		t.Fatalf("allocate %s: %v", id, err)
	}
	if !created {
		t.Fatalf("allocate %s: existing record returned", id)
	}
	return r
}

var (
	v4 = netip.MustParsePrefix("10.244.3.1/29") // hosts .1-.6, .1 gateway, .7 broadcast
	v6 = netip.MustParsePrefix("fd10:244:0:3::1/125")
)

func TestAllocateRoundRobin(t *testing.T) {
	s := open(t, t.TempDir())
	p := Pools{V4: v4}
	var got []string
	for i := range 5 {
		got = append(got, alloc(t, s, fmt.Sprint("c", i), p).IPv4.String())
	}
	want := []string{"10.244.3.2", "10.244.3.3", "10.244.3.4", "10.244.3.5", "10.244.3.6"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("addresses (-want +got):\n%s", diff)
	}
	// Full: gateway, network and broadcast are never handed out.
	if _, _, err := s.Allocate("c5", "eth0", p); !errors.Is(err, ErrExhausted) {
		t.Fatalf("allocate in a full pool: %v, want ErrExhausted", err)
	}
	// Round robin: a released address is not reused before the others.
	if _, ok, err := s.Release("c1", "eth0"); err != nil || !ok {
		t.Fatalf("release: %v %v", ok, err)
	}
	if _, ok, err := s.Release("c1", "eth0"); err != nil || ok {
		t.Fatalf("second release: %v %v, want not found", ok, err)
	}
	if _, ok, _ := s.Release("c3", "eth0"); !ok {
		t.Fatal("release c3")
	}
	if r := alloc(t, s, "c6", p); r.IPv4.String() != "10.244.3.3" {
		t.Errorf("after release got %s, want 10.244.3.3 (first free after the last handed out)", r.IPv4)
	}
	if r := alloc(t, s, "c7", p); r.IPv4.String() != "10.244.3.5" {
		t.Errorf("got %s, want 10.244.3.5", r.IPv4)
	}
}

func TestAllocateExistingAndDualStack(t *testing.T) {
	s := open(t, t.TempDir())
	p := Pools{V4: v4, V6: v6}
	r := alloc(t, s, "c", p)
	if r.IPv4.String() != "10.244.3.2" || r.IPv6.String() != "fd10:244:0:3::2" {
		t.Errorf("got %v %v", r.IPv4, r.IPv6)
	}
	again, created, err := s.Allocate("c", "eth0", p)
	if err != nil || created || again != r {
		t.Errorf("re-allocate: %+v %v %v, want the existing record", again, created, err)
	}
	other, _, err := s.Allocate("c", "eth1", p)
	if err != nil || other.IPv4 == r.IPv4 {
		t.Errorf("second interface: %+v %v", other, err)
	}
	got, ok, err := s.Get("c", "eth0")
	if err != nil || !ok || got != r {
		t.Errorf("get: %+v %v %v", got, ok, err)
	}
	// IPv6 pool: the subnet-router anycast (network) address and the
	// gateway are skipped; there is no broadcast: ::2 to ::7.
	s6 := open(t, t.TempDir())
	for i := range 6 {
		alloc(t, s6, fmt.Sprint("v6-", i), Pools{V6: v6})
	}
	if _, _, err := s6.Allocate("v6-x", "eth0", Pools{V6: v6}); !errors.Is(err, ErrExhausted) {
		t.Errorf("full IPv6 pool: %v", err)
	}
}

// TestPoolChangeKeepsRecords changes the pools under live records: a new
// subnet, a family added, a family dropped and added back. No record is
// ever removed by an allocation, and no address a record holds is handed
// out again.
func TestPoolChangeKeepsRecords(t *testing.T) {
	v4b := netip.MustParsePrefix("10.244.3.1/28") // hosts .2-.14
	type step struct {
		pools Pools
		n     int
	}
	for _, c := range []struct {
		name  string
		steps []step
	}{
		{"IPv6 added", []step{{Pools{V4: v4b}, 5}, {Pools{V4: v4b, V6: v6}, 5}}},
		{"IPv6 dropped and added back", []step{{Pools{V4: v4b, V6: v6}, 3}, {Pools{V4: v4b}, 3}, {Pools{V4: v4b, V6: v6}, 3}}},
		{"IPv4 dropped", []step{{Pools{V4: v4b, V6: v6}, 3}, {Pools{V6: v6}, 3}}},
		{"new subnet", []step{{Pools{V4: v4b, V6: v6}, 3}, {Pools{V4: netip.MustParsePrefix("10.244.9.1/29"), V6: v6}, 3}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := open(t, t.TempDir())
			var all []Record
			for i, st := range c.steps {
				for j := range st.n {
					r := alloc(t, s, fmt.Sprintf("c%d-%d", i, j), st.pools)
					if r.IPv4.IsValid() != st.pools.V4.IsValid() || r.IPv6.IsValid() != st.pools.V6.IsValid() {
						t.Errorf("%s got %v %v from pools %+v", r.ContainerID, r.IPv4, r.IPv6, st.pools)
					}
					all = append(all, r)
				}
				// Every record made so far is still there, unchanged.
				for _, r := range all {
					got, ok, err := s.Get(r.ContainerID, r.IfName)
					if err != nil || !ok || got != r {
						t.Errorf("after step %d: record of %s is %+v %v %v, want %+v", i, r.ContainerID, got, ok, err, r)
					}
				}
			}
			held := map[netip.Addr]string{}
			for _, r := range all {
				for _, ip := range []netip.Addr{r.IPv4, r.IPv6} {
					if !ip.IsValid() {
						continue
					}
					if o, ok := held[ip]; ok {
						t.Errorf("%s handed to %s while %s holds it", ip, r.ContainerID, o)
					}
					held[ip] = r.ContainerID
				}
			}
		})
	}
}

// TestAllocateHeldElsewhere re-adds an attachment whose record no longer
// fits the pools: the allocation fails, saying what it holds, and the
// record stays (its pod may still run with those addresses).
func TestAllocateHeldElsewhere(t *testing.T) {
	s := open(t, t.TempDir())
	r := alloc(t, s, "c", Pools{V4: v4})
	_, _, err := s.Allocate("c", "eth0", Pools{V4: v4, V6: v6})
	var he *HeldError
	if !errors.As(err, &he) || he.Record != r {
		t.Fatalf("allocate with a family added: %v, want a HeldError for %+v", err, r)
	}
	if want := "container c interface eth0 already holds 10.244.3.2, which does not fit the node's current subnets"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if got, ok, _ := s.Get("c", "eth0"); !ok || got != r {
		t.Errorf("record after the refused allocation: %+v %v, want %+v", got, ok, r)
	}
	// Once released, the attachment gets addresses from the new pools.
	if _, ok, err := s.Release("c", "eth0"); !ok || err != nil {
		t.Fatalf("release: %v %v", ok, err)
	}
	if r2 := alloc(t, s, "c", Pools{V4: v4, V6: v6}); !r2.IPv6.IsValid() {
		t.Errorf("after release: %+v", r2)
	}
}

func TestGatewayAsNetworkAddress(t *testing.T) {
	s := open(t, t.TempDir())
	p := Pools{V4: netip.MustParsePrefix("10.244.3.0/30")} // gateway .1
	if r := alloc(t, s, "c", p); r.IPv4.String() != "10.244.3.2" {
		t.Errorf("got %s, want 10.244.3.2", r.IPv4)
	}
	if _, _, err := s.Allocate("d", "eth0", p); !errors.Is(err, ErrExhausted) {
		t.Errorf("want exhausted, got %v", err)
	}
}

func TestDamagedFiles(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	p := Pools{V4: v4}
	r := alloc(t, s, "c", p)
	// A corrupt record keeps its address reserved and can be released;
	// a torn round-robin pointer and a leftover temporary file are harmless.
	if err := os.WriteFile(filepath.Join(dir, r.FileName()), []byte("{torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "last4"), []byte("10.2"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, tmpPrefix+"123"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "junk_file"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r2 := alloc(t, s, "d", p); r2.IPv4 == r.IPv4 {
		t.Errorf("address %s of the corrupt record handed out again", r.IPv4)
	}
	if _, err := os.Stat(filepath.Join(dir, tmpPrefix+"123")); !os.IsNotExist(err) {
		t.Errorf("leftover temporary file not removed: %v", err)
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var bad int
	for _, st := range list {
		if st.Err != nil {
			bad++
		}
	}
	if len(list) != 2 || bad != 1 {
		t.Errorf("list: %d records, %d damaged; want 2 and 1", len(list), bad)
	}
	if _, ok, err := s.Release("c", "eth0"); err != nil || !ok {
		t.Errorf("release of a corrupt record: %v %v", ok, err)
	}
}

// TestRoundRobinPointer checks the pointer file through damage: a short or
// an overlong pointer only restarts the round robin, and the next
// allocation leaves a pointer that reads back as its address.
func TestRoundRobinPointer(t *testing.T) {
	for name, damage := range map[string]string{
		"short":    "10.2",
		"overlong": "10.244.3.200" + strings.Repeat(" x", 60) + "\n",
		"garbage":  strings.Repeat("\xff", 100),
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir)
			p := Pools{V4: netip.MustParsePrefix("10.244.3.1/24"), V6: v6}
			alloc(t, s, "a", p)
			if err := os.WriteFile(filepath.Join(dir, "last4"), []byte(damage), 0o600); err != nil {
				t.Fatal(err)
			}
			r := alloc(t, s, "b", p)
			if got := s.readLast("last4"); got != r.IPv4 {
				t.Errorf("pointer reads %v after allocating %s", got, r.IPv4)
			}
			if got := s.readLast("last6"); got != r.IPv6 {
				t.Errorf("IPv6 pointer reads %v after allocating %s", got, r.IPv6)
			}
			b, err := os.ReadFile(filepath.Join(dir, "last4"))
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != lastWidth {
				t.Errorf("pointer file is %d bytes, want %d: %q", len(b), lastWidth, b)
			}
			// The round robin goes on from there.
			if r2 := alloc(t, s, "c", p); r2.IPv4 != r.IPv4.Next() {
				t.Errorf("next allocation %s, want %s", r2.IPv4, r.IPv4.Next())
			}
		})
	}
}

// TestConcurrentStores allocates from many goroutines, each with its own
// Open (the flock serialises them as it does separate processes).
func TestConcurrentStores(t *testing.T) {
	dir := t.TempDir()
	p := Pools{V4: netip.MustParsePrefix("10.244.3.1/24")}
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[netip.Addr]string{}
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				s, err := Open(dir)
				if err != nil {
					t.Error(err)
					return
				}
				id := fmt.Sprintf("w%d-%d", w, i)
				r, _, err := s.Allocate(id, "eth0", p)
				s.Close()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if o, ok := got[r.IPv4]; ok {
					t.Errorf("%s handed to %s and %s", r.IPv4, o, id)
				}
				got[r.IPv4] = id
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(got) != 200 {
		t.Errorf("%d distinct addresses, want 200", len(got))
	}
}

func TestRecordRoundTrip(t *testing.T) {
	r := Record{ContainerID: "abc", IfName: "eth0", IPv4: netip.MustParseAddr("10.0.0.5"), IPv6: netip.MustParseAddr("fd00:1::5")}
	got, err := ParseRecord(r.FileName(), r.Marshal())
	if err != nil || got != r {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for name, data := range map[string]string{
		r.FileName():       `{"containerID":"abd","ifname":"eth0","ipv4":"10.0.0.5","ipv6":"fd00:1::5"}`,
		r.FileName() + "x": string(r.Marshal()),
		strings.Replace(r.FileName(), "10.0.0.5", "10.0.0.6", 1): string(r.Marshal()),
		r.FileName() + " ": string(r.Marshal()),
	} {
		if _, err := ParseRecord(name, []byte(data)); err == nil {
			t.Errorf("ParseRecord(%q, %q) accepted a mismatch", name, data)
		}
	}
}

// FuzzIPAMRecord feeds arbitrary file names and contents to the store's
// reader: it must never panic, and whatever it accepts must round-trip.
func FuzzIPAMRecord(f *testing.F) {
	r := Record{ContainerID: "abc", IfName: "eth0", IPv4: netip.MustParseAddr("10.244.3.2"), IPv6: netip.MustParseAddr("fd10:244:0:3::2")}
	r4 := Record{ContainerID: "x", IfName: "net1", IPv4: netip.MustParseAddr("10.1.2.3")}
	f.Add(r.FileName(), r.Marshal())
	f.Add(r4.FileName(), r4.Marshal())
	f.Add(r.FileName(), []byte(`{"containerID":"abc"`))
	f.Add("lock", []byte{})
	f.Add(Key("a", "b")+"_-_-", []byte(`{}`))
	f.Add(Key("a", "b")+"_::ffff:1.2.3.4_-", []byte(`{"containerID":"a","ifname":"b","ipv4":"::ffff:1.2.3.4"}`))
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		got, err := ParseRecord(name, data)
		if err != nil {
			return
		}
		if got.FileName() != name {
			t.Fatalf("accepted %q but the record's name is %q", name, got.FileName())
		}
		again, err := ParseRecord(name, got.Marshal())
		if err != nil || again != got {
			t.Fatalf("re-encoded record does not parse back: %+v %v", again, err)
		}
		if KeyOfName(name) != Key(got.ContainerID, got.IfName) {
			t.Fatalf("KeyOfName disagrees")
		}
	})
}

// TestRecordHandedOver writes a record and releases the lock: the next
// holder sees it, does not hand its address out again, and its file holds
// the record.
func TestRecordHandedOver(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := Pools{V4: netip.MustParsePrefix("10.244.3.1/24")}
	r, created, err := s.Allocate("ctr-a", "eth0", p)
	if err != nil || !created {
		t.Fatalf("allocate: %v %v", created, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	other := open(t, dir)
	got, ok, err := other.Get("ctr-a", "eth0")
	if err != nil || !ok || got != r {
		t.Fatalf("record seen by the next holder: %+v %v %v, want %+v", got, ok, err, r)
	}
	if r2 := alloc(t, other, "ctr-b", p); r2.IPv4 == r.IPv4 {
		t.Fatalf("address %s handed out twice", r.IPv4)
	}
	other.Close()
	data, err := os.ReadFile(filepath.Join(dir, r.FileName()))
	if err != nil {
		t.Fatal(err)
	}
	if back, err := ParseRecord(r.FileName(), data); err != nil || back != r {
		t.Fatalf("record file: %+v %v", back, err)
	}
}
