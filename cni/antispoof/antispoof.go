// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package antispoof keeps pods from sending with addresses that are not
// theirs. A pod may send only from its own MAC and IP addresses (IPv4,
// IPv6, ARP and neighbour discovery included); every other frame that
// enters the bridge from a pod's port is dropped there and counted.
//
// Kernel state it owns, in the node's namespace: the nftables table
// "bridge weft" (see rules_linux.go for the rules):
//
//	table bridge weft {
//	  set pod-ports { type ifname }                           # the ports checked
//	  set pod-mac  { type ifname . ether_addr }               # port . pod MAC
//	  set pod-ipv4 { type ifname . ether_addr . ipv4_addr }   # port . pod MAC . pod IPv4
//	  set pod-ipv6 { type ifname . ether_addr . ipv6_addr }   # port . pod MAC . pod IPv6 and link-local
//	  chain prerouting { type filter hook prerouting priority -200; policy accept; ... }
//	  chain pod-ipv4 { ... }  chain pod-ipv6 { ... }  chain pod-arp { ... }
//	}
//
// A pod port is a bridge port in the set pod-ports: the plugin adds a
// pod's port with the pod's other elements, in one transaction, before
// the pod's interface is up. Frames entering from any other port (an
// uplink, a pod made before anti-spoofing existed) are not checked, and
// the node's own frames leave through the bridge device and never pass
// this hook. A pod port lacking its MAC or address entries drops those
// frames: the check fails closed.
//
// Who writes what. The CNI plugin (root) creates the table, sets and
// chains when missing (never replacing a set or its elements: two plugin
// processes may do it at once), writes a pod record and then adds the
// pod's elements before ADD succeeds; DEL removes the record and then the
// elements. weftd (unprivileged, CAP_NET_ADMIN) runs [Reconcile] on every
// resync: it converges the elements to the pod records without ever
// flushing or replacing a set. The records live in [RecordDir] of the
// plugin's data directory, written by root and readable by everyone
// (mode 0644 in a 0755 directory; the data directory itself is made
// traversable, 0711, while the address store in it stays 0700): weftd can
// read them and cannot change them. They hold nothing secret: a pod's port,
// MAC, addresses and container ID, all of which any local user sees in
// `ip link` and `ip neigh` already.
//
// Why an ADD during a resync is never lost: the plugin writes a record
// before it adds the elements and removes it before it deletes them, and
// [Reconcile] lists the elements before it reads the records. It adds the
// elements of the records it read that were missing, and deletes only
// elements that were in the kernel before it read the records and that no
// record it read asks for. An element in that first listing was added
// after its record was written, so the record was in the directory when
// the reconcile read it; an element added later is in no listing the
// reconcile acts on, and is left alone. See [Plan].
package antispoof

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/weftnet/weft/subnet"
)

// TableName is the name of weft's bridge table ("bridge weft").
const TableName = "weft"

// Names of the sets.
const (
	SetPorts = "pod-ports"
	SetMAC   = "pod-mac"
	SetIPv4  = "pod-ipv4"
	SetIPv6  = "pod-ipv6"
)

// PortPrefix starts the name of every pod port (the plugin's host veths,
// "weft" and 8 hex digits); PortLen is the length of such a name.
const (
	PortPrefix = "weft"
	PortLen    = len(PortPrefix) + 8
)

// recordDirName is the directory of pod records in the plugin's data
// directory.
const recordDirName = "pods"

// RecordDir returns the directory of the pod records of the plugin whose
// data directory is dataDir.
func RecordDir(dataDir string) string { return filepath.Join(dataDir, recordDirName) }

// Record is what the anti-spoofing entries of one pod attachment are made
// from: the port (host veth) it enters the bridge by, its MAC and its
// addresses. The plugin writes one per attachment; weftd reads them.
type Record struct {
	ContainerID string     `json:"containerID"`
	IfName      string     `json:"ifname"`
	Port        string     `json:"port"`
	MAC         string     `json:"mac"`
	IPv4        netip.Addr `json:"ipv4,omitzero"`
	IPv6        netip.Addr `json:"ipv6,omitzero"`
	// Pod is who the pod is, when the runtime said (CNI_ARGS and the
	// config's args.cni.labels); records of releases before it have none.
	Pod subnet.PodIdentity `json:"pod,omitzero"`
}

// ValidPort reports whether name has the form of a pod port.
func ValidPort(name string) bool {
	if len(name) != PortLen || !strings.HasPrefix(name, PortPrefix) {
		return false
	}
	for _, c := range name[len(PortPrefix):] {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

// Validate checks r as weftd must check anything it reads: a port of the
// pod-port form, a unicast MAC, and unicast addresses of the right family.
func (r Record) Validate() error {
	if !ValidPort(r.Port) {
		return fmt.Errorf("port %q is not a weft pod port (weft and 8 hex digits)", r.Port)
	}
	if _, err := r.HardwareAddr(); err != nil {
		return err
	}
	if !r.IPv4.IsValid() && !r.IPv6.IsValid() {
		return errors.New("no address")
	}
	if r.IPv4.IsValid() && (!r.IPv4.Is4() || !r.IPv4.IsGlobalUnicast()) {
		return fmt.Errorf("ipv4 %s is not a unicast IPv4 address", r.IPv4)
	}
	if r.IPv6.IsValid() && (!r.IPv6.Is6() || r.IPv6.Is4In6() || r.IPv6.Zone() != "" || !r.IPv6.IsGlobalUnicast()) {
		return fmt.Errorf("ipv6 %s is not a unicast IPv6 address", r.IPv6)
	}
	if err := r.Pod.Validate(); err != nil {
		return fmt.Errorf("pod identity: %w", err)
	}
	return nil
}

// HardwareAddr returns r's MAC, checked to be a unicast Ethernet address.
func (r Record) HardwareAddr() ([6]byte, error) {
	var m [6]byte
	hw, err := net.ParseMAC(r.MAC)
	if err != nil || len(hw) != 6 {
		return m, fmt.Errorf("mac %q is not an Ethernet address", r.MAC)
	}
	if hw[0]&1 != 0 || [6]byte(hw) == [6]byte{} {
		return m, fmt.Errorf("mac %s is not a unicast address", r.MAC)
	}
	return [6]byte(hw), nil
}

// Element is one set element: of the ports set (MAC and IP zero), of the
// MAC set (port . MAC, IP zero), or of the set of IP's family.
type Element struct {
	Port string
	MAC  [6]byte
	IP   netip.Addr
}

func (e Element) String() string {
	if e.MAC == [6]byte{} && !e.IP.IsValid() {
		return e.Port
	}
	s := e.Port + " . " + net.HardwareAddr(e.MAC[:]).String()
	if e.IP.IsValid() {
		s += " . " + e.IP.String()
	}
	return s
}

// LinkLocal returns the IPv6 link-local address the kernel derives from
// mac (modified EUI-64, the default address generation mode): the only
// link-local source a pod may use.
func LinkLocal(mac [6]byte) netip.Addr {
	var b [16]byte
	b[0], b[1] = 0xfe, 0x80
	b[8], b[9], b[10] = mac[0]^2, mac[1], mac[2]
	b[11], b[12] = 0xff, 0xfe
	b[13], b[14], b[15] = mac[3], mac[4], mac[5]
	return netip.AddrFrom16(b)
}

// Elements returns the elements r's pod needs: its port (which makes the
// port checked), its port and MAC, and its port, MAC and each address
// (the IPv6 link-local derived from the MAC whenever the pod has IPv6).
func (r Record) Elements() ([]Element, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	mac, _ := r.HardwareAddr()
	es := []Element{{Port: r.Port}, {Port: r.Port, MAC: mac}}
	if r.IPv4.IsValid() {
		es = append(es, Element{Port: r.Port, MAC: mac, IP: r.IPv4})
	}
	if r.IPv6.IsValid() {
		es = append(es, Element{Port: r.Port, MAC: mac, IP: r.IPv6}, Element{Port: r.Port, MAC: mac, IP: LinkLocal(mac)})
	}
	return es, nil
}

// Plan returns what a reconcile changes: the elements of recs missing from
// before, and the elements of before that no record asks for. before must
// have been listed before recs were read (see the package doc). Ports in
// keep (records that exist but could not be read) lose no element.
func Plan(before []Element, recs []Record, keep map[string]bool) (add, del []Element) {
	want := map[Element]bool{}
	for _, r := range recs {
		es, err := r.Elements()
		if err != nil {
			continue // ReadRecords reports it
		}
		for _, e := range es {
			want[e] = true
		}
	}
	have := make(map[Element]bool, len(before))
	for _, e := range before {
		have[e] = true
		if !want[e] && !keep[e.Port] {
			del = append(del, e)
		}
	}
	for e := range want {
		if !have[e] {
			add = append(add, e)
		}
	}
	sortElements(add)
	sortElements(del)
	return add, del
}

func sortElements(es []Element) {
	slices.SortFunc(es, func(a, b Element) int {
		if c := strings.Compare(a.Port, b.Port); c != 0 {
			return c
		}
		if c := slices.Compare(a.MAC[:], b.MAC[:]); c != 0 {
			return c
		}
		return a.IP.Compare(b.IP)
	})
}

// Result is what a [Reconcile] changed.
type Result struct {
	Added, Removed []Element
	// RulesRestored: the table, a set, a chain or a rule was missing or
	// changed, and was put back.
	RulesRestored bool
	// Bad maps ports whose record could not be used to why (their
	// elements are left as they are).
	Bad map[string]error
}

// Changed reports whether the reconcile changed the kernel.
func (r Result) Changed() bool { return len(r.Added)+len(r.Removed) > 0 || r.RulesRestored }

const recordSuffix = ".json"

// WriteRecord stores r in the record directory of dataDir (atomically:
// temporary file and rename), creating the directory readable by all and
// making dataDir traversable (see the package doc).
func WriteRecord(dataDir string, r Record) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("pod record: %w", err)
	}
	dir := RecordDir(dataDir)
	if err := ensureDirs(dataDir, dir); err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode pod record: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return fmt.Errorf("create pod record: %w", err)
	}
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, r.Port+recordSuffix))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write pod record: %w", err)
	}
	return nil
}

// ensureDirs creates dataDir (0711: traversable, not listable) and dir
// (0755), and makes an existing dataDir traversable.
func ensureDirs(dataDir, dir string) error {
	if err := os.MkdirAll(dataDir, 0o711); err != nil {
		return fmt.Errorf("create %s: %w", dataDir, err)
	}
	st, err := os.Stat(dataDir)
	if err != nil {
		return fmt.Errorf("stat %s: %w", dataDir, err)
	}
	if st.Mode().Perm()&0o011 != 0o011 {
		if err := os.Chmod(dataDir, st.Mode().Perm()|0o011); err != nil {
			return fmt.Errorf("make %s traversable: %w", dataDir, err)
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if st, err = os.Stat(dir); err != nil {
		return fmt.Errorf("stat %s: %w", dir, err)
	}
	if st.Mode().Perm() != 0o755 { // the umask trimmed it, or someone changed it
		if err := os.Chmod(dir, 0o755); err != nil {
			return fmt.Errorf("chmod %s: %w", dir, err)
		}
	}
	return nil
}

// RemoveRecord deletes the record of port from the record directory of
// dataDir; none is no error.
func RemoveRecord(dataDir, port string) error {
	if !ValidPort(port) {
		return fmt.Errorf("remove pod record: %q is not a pod port", port)
	}
	err := os.Remove(filepath.Join(RecordDir(dataDir), port+recordSuffix))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove pod record: %w", err)
	}
	return nil
}

// ReadRecord reads the record of port from the record directory of
// dataDir.
func ReadRecord(dataDir, port string) (Record, error) {
	if !ValidPort(port) {
		return Record{}, fmt.Errorf("%q is not a pod port", port)
	}
	b, err := os.ReadFile(filepath.Join(RecordDir(dataDir), port+recordSuffix))
	if err != nil {
		return Record{}, fmt.Errorf("read pod record: %w", err)
	}
	return parseRecord(port, b)
}

// maxRecordSize bounds what is read of one record file: room for the
// fields above and a pod identity of the largest size allowed
// (subnet.MaxLabelBytes of labels, quoted and escaped).
const maxRecordSize = 32 << 10

func parseRecord(port string, b []byte) (Record, error) {
	if len(b) > maxRecordSize {
		return Record{}, fmt.Errorf("pod record %s: larger than %d bytes", port, maxRecordSize)
	}
	var r Record
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Record{}, fmt.Errorf("decode pod record %s: %w", port, err)
	}
	if dec.More() {
		return Record{}, fmt.Errorf("decode pod record %s: trailing data", port)
	}
	if r.Port != port {
		return Record{}, fmt.Errorf("pod record %s names port %q", port, r.Port)
	}
	if err := r.Validate(); err != nil {
		return Record{}, fmt.Errorf("pod record %s: %w", port, err)
	}
	return r, nil
}

// Records is the content of a record directory.
type Records struct {
	// Good are the valid records.
	Good []Record
	// Bad maps the port of each record file that could not be read or
	// is invalid to why; its elements are left alone.
	Bad map[string]error
}

// ReadRecords reads every record of dir. A missing directory is an error
// wrapping [os.ErrNotExist] (no pod was ever added, or the path is wrong:
// either way nothing may be deleted on its account).
func ReadRecords(dir string) (Records, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return Records{}, fmt.Errorf("read pod records: %w", err)
	}
	out := Records{Bad: map[string]error{}}
	for _, d := range ents {
		name := d.Name()
		port, ok := strings.CutSuffix(name, recordSuffix)
		if !ok || !ValidPort(port) {
			continue // temporary files and strangers
		}
		if !d.Type().IsRegular() {
			out.Bad[port] = fmt.Errorf("pod record %s is not a regular file", name)
			continue
		}
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			out.Bad[port] = fmt.Errorf("read pod record: %w", err)
			continue
		}
		b, err := io.ReadAll(io.LimitReader(f, maxRecordSize+1))
		f.Close()
		if err != nil {
			out.Bad[port] = fmt.Errorf("read pod record %s: %w", name, err)
			continue
		}
		r, err := parseRecord(port, b)
		if err != nil {
			out.Bad[port] = err
			continue
		}
		out.Good = append(out.Good, r)
	}
	return out, nil
}
