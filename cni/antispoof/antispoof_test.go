// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package antispoof

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/weftnet/weft/subnet"
)

func testRecord(i int) Record {
	return Record{
		ContainerID: fmt.Sprintf("ctr-%d", i), IfName: "eth0",
		Port: fmt.Sprintf("weft%08x", 0xa0+i),
		MAC:  fmt.Sprintf("02:00:00:00:00:%02x", i),
		IPv4: netip.AddrFrom4([4]byte{10, 244, 3, byte(10 + i)}),
		IPv6: netip.MustParseAddr(fmt.Sprintf("fd10:244:0:3::%x", 10+i)),
	}
}

// TestRecordFiles checks the files weftd reads: mode 0644 in a 0755
// directory of a 0711 data directory (weftd reads, never writes), written
// atomically, and refused when invalid.
func TestRecordFiles(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil { // as the IPAM store leaves it
		t.Fatal(err)
	}
	r := testRecord(1)
	r.Pod = subnet.PodIdentity{Namespace: "x", Name: "a-1", Labels: map[string]string{"app": "web", "example.com/tier": ""}}
	if err := WriteRecord(dataDir, r); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{
		dataDir:            0o711 | os.ModeDir,
		RecordDir(dataDir): 0o755 | os.ModeDir,
		filepath.Join(RecordDir(dataDir), r.Port+".json"): 0o644,
	} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, st.Mode(), want)
		}
	}
	got, err := ReadRecord(dataDir, r.Port)
	if err != nil || !cmp.Equal(got, r, cmpAddr) {
		t.Errorf("read back %+v %v, want %+v", got, err, r)
	}
	recs, err := ReadRecords(RecordDir(dataDir))
	if err != nil || !cmp.Equal(recs.Good, []Record{r}, cmpAddr) || len(recs.Bad) != 0 {
		t.Errorf("ReadRecords: %+v %v", recs, err)
	}
	bad := r
	bad.MAC = "ff:ff:ff:ff:ff:ff"
	if err := WriteRecord(dataDir, bad); err == nil {
		t.Errorf("a broadcast MAC was accepted")
	}
}

func TestLinkLocal(t *testing.T) {
	// The kernel's EUI-64 address of 02:42:ac:11:00:02.
	if got, want := LinkLocal([6]byte{0x02, 0x42, 0xac, 0x11, 0x00, 0x02}), netip.MustParseAddr("fe80::42:acff:fe11:2"); got != want {
		t.Errorf("LinkLocal = %s, want %s", got, want)
	}
}

func TestValidate(t *testing.T) {
	good := testRecord(1)
	for name, tc := range map[string]struct {
		mod  func(*Record)
		want string
	}{
		"good":           {func(*Record) {}, ""},
		"ipv4 only":      {func(r *Record) { r.IPv6 = netip.Addr{} }, ""},
		"port":           {func(r *Record) { r.Port = "eth0" }, "not a weft pod port"},
		"port not hex":   {func(r *Record) { r.Port = "weftxxxxxxxx" }, "not a weft pod port"},
		"multicast mac":  {func(r *Record) { r.MAC = "01:00:5e:00:00:01" }, "not a unicast"},
		"zero mac":       {func(r *Record) { r.MAC = "00:00:00:00:00:00" }, "not a unicast"},
		"long mac":       {func(r *Record) { r.MAC = "02:00:00:00:00:00:00:01" }, "not an Ethernet"},
		"no address":     {func(r *Record) { r.IPv4, r.IPv6 = netip.Addr{}, netip.Addr{} }, "no address"},
		"v6 in v4":       {func(r *Record) { r.IPv4 = netip.MustParseAddr("fd10::1") }, "not a unicast IPv4"},
		"v4 in v6":       {func(r *Record) { r.IPv6 = netip.MustParseAddr("::ffff:10.0.0.1") }, "not a unicast IPv6"},
		"broadcast v4":   {func(r *Record) { r.IPv4 = netip.MustParseAddr("255.255.255.255") }, "not a unicast IPv4"},
		"link-local v6":  {func(r *Record) { r.IPv6 = netip.MustParseAddr("fe80::1") }, "not a unicast IPv6"},
		"unspecified v4": {func(r *Record) { r.IPv4 = netip.IPv4Unspecified() }, "not a unicast IPv4"},
	} {
		t.Run(name, func(t *testing.T) {
			r := good
			tc.mod(&r)
			err := r.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("unexpected error %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestPlan(t *testing.T) {
	r1, r2, r3 := testRecord(1), testRecord(2), testRecord(3)
	es := func(rs ...Record) []Element {
		var out []Element
		for _, r := range rs {
			e, err := r.Elements()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, e...)
		}
		sortElements(out)
		return out
	}
	stale := Element{Port: "weft0000ffff", MAC: [6]byte{2, 0, 0, 0, 0, 0x99}}
	for name, tc := range map[string]struct {
		before   []Element
		recs     []Record
		keep     map[string]bool
		add, del []Element
	}{
		"converged":              {es(r1, r2), []Record{r1, r2}, nil, nil, nil},
		"missing pod":            {es(r1), []Record{r1, r2}, nil, es(r2), nil},
		"stale pod":              {append(es(r1), stale), []Record{r1}, nil, nil, []Element{stale}},
		"unreadable record":      {es(r1, r3), []Record{r1}, map[string]bool{r3.Port: true}, nil, nil},
		"new element not listed": {es(r1), []Record{r1}, nil, nil, nil}, // r2 added after the listing: not in before, not deleted
		"changed mac": {es(r1), []Record{func() Record { r := r1; r.MAC = "02:00:00:00:00:77"; return r }()},
			nil, es(func() Record { r := r1; r.MAC = "02:00:00:00:00:77"; return r }())[1:], es(r1)[1:]}, // the port element stays
	} {
		t.Run(name, func(t *testing.T) {
			add, del := Plan(tc.before, tc.recs, tc.keep)
			if diff := cmp.Diff(tc.add, add, cmpAddr); diff != "" {
				t.Errorf("add (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.del, del, cmpAddr); diff != "" {
				t.Errorf("del (-want +got):\n%s", diff)
			}
		})
	}
}

// TestReadRecordsHostile: what weftd reads is checked; strangers in the
// directory are ignored, damaged and oversized records reported.
func TestReadRecordsHostile(t *testing.T) {
	dir := t.TempDir()
	r := testRecord(1)
	if err := WriteRecord(filepath.Dir(RecordDir(dir))+"/", r); err != nil {
		t.Fatal(err)
	}
	d := RecordDir(dir)
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(d, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("README", "not a record")
	write(".tmp-123", "{}")
	// A record of the release before pod identities: read, no identity.
	old := `{"containerID":"ctr-7","ifname":"eth0","port":"weft000000c7","mac":"02:00:00:00:00:07","ipv4":"10.244.3.17"}`
	write("weft000000c7.json", old)
	write("weft000000b7.json", `{"port":"weft000000b7","mac":"02:00:00:00:00:01","ipv4":"10.244.3.9","pod":{"namespace":"x","name":"Bad_Name"}}`)
	write("weft000000b8.json", `{"port":"weft000000b8","mac":"02:00:00:00:00:01","ipv4":"10.244.3.9","pod":{"namespace":"x","name":"a","labels":{"app":"-web"}}}`)
	write("weft000000b2.json", `{"port":"weft000000b3","mac":"02:00:00:00:00:01","ipv4":"10.244.3.9"}`)
	write("weft000000b4.json", `{"port":"weft000000b4","mac":"02:00:00:00:00:01","ipv4":"10.244.3.9","extra":1}`)
	write("weft000000b5.json", `{"port":"weft000000b5","mac":"02:00:00:00:00:01","ipv4":"10.244.3.9"}{}`)
	write("weft000000b6.json", `{"port":"weft000000b6","mac":"02:00:00:00:00:01","ipv4":"10.244.3.9","containerID":"`+strings.Repeat("x", maxRecordSize)+`"}`)
	recs, err := ReadRecords(d)
	if err != nil {
		t.Fatal(err)
	}
	oldRec := Record{ContainerID: "ctr-7", IfName: "eth0", Port: "weft000000c7", MAC: "02:00:00:00:00:07", IPv4: netip.MustParseAddr("10.244.3.17")}
	if diff := cmp.Diff([]Record{r, oldRec}, recs.Good, cmpAddr); diff != "" {
		t.Errorf("good records (-want +got):\n%s", diff)
	}
	for _, p := range []string{"weft000000b2", "weft000000b4", "weft000000b5", "weft000000b6", "weft000000b7", "weft000000b8"} {
		if recs.Bad[p] == nil {
			t.Errorf("%s not reported as bad", p)
		}
	}
	if len(recs.Bad) != 6 {
		t.Errorf("bad records: %v", recs.Bad)
	}
}

// cmpAddr compares netip.Addr values in cmp.Diff.
var cmpAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
