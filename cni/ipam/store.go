// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package ipam is the address store of the weft CNI plugin: a directory of
// small files, one per attachment (container ID + interface name), guarded by
// an flock so that concurrent plugin processes on one node never hand out
// the same address.
//
// Layout of a store directory:
//
//	lock                               flock(2) target, empty
//	last4, last6                       round-robin pointers (best effort)
//	<key>_<ipv4 or ->_<ipv6 or ->      one record per attachment (JSON)
//	.tmp-*                             temporary files; leftovers are removed
//
// The addresses are part of a record's file name, so finding the addresses
// in use is a single directory read, and allocation, release and GC read
// nothing else: the record's content (its container ID and interface) is
// for people. A record is written to a temporary file and renamed into
// place, so a killed plugin leaves it either complete or absent. Records
// are not fsynced: a power cut ends every pod on the node, and a record it
// leaves empty still reserves its addresses until DEL or GC removes it. A
// record whose name or content cannot be read is ignored for lookups but
// its addresses stay reserved until a release or GC removes it, so a
// damaged file never blocks a DEL.
package ipam

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrExhausted is returned by [Store.Allocate] when a subnet has no free
// address left.
var ErrExhausted = errors.New("no free address")

const (
	lockName  = "lock"
	tmpPrefix = ".tmp-"
	keyLen    = 32 // hex characters of the attachment key in a file name
)

// Record is the allocation of one attachment. Either address may be zero.
type Record struct {
	ContainerID string     `json:"containerID"`
	IfName      string     `json:"ifname"`
	IPv4        netip.Addr `json:"ipv4,omitzero"`
	IPv6        netip.Addr `json:"ipv6,omitzero"`
}

// Key returns the hex key of the attachment (containerID, ifname) used in
// record file names.
func Key(containerID, ifname string) string {
	sum := sha256.Sum256([]byte(containerID + "\x00" + ifname))
	return hex.EncodeToString(sum[:])[:keyLen]
}

// FileName returns the name of r's record file.
func (r Record) FileName() string {
	a := func(ip netip.Addr) string {
		if !ip.IsValid() {
			return "-"
		}
		return ip.String()
	}
	return Key(r.ContainerID, r.IfName) + "_" + a(r.IPv4) + "_" + a(r.IPv6)
}

// entry is what a record's file name tells without opening the file.
type entry struct {
	name       string
	key        string
	ipv4, ipv6 netip.Addr
}

// parseName splits a record file name. ok is false for names that are not
// records.
func parseName(name string) (e entry, ok bool) {
	parts := strings.Split(name, "_")
	if len(parts) != 3 || len(parts[0]) != keyLen {
		return entry{}, false
	}
	if _, err := hex.DecodeString(parts[0]); err != nil {
		return entry{}, false
	}
	e = entry{name: name, key: parts[0]}
	for i, dst := range []*netip.Addr{&e.ipv4, &e.ipv6} {
		s := parts[i+1]
		if s == "-" {
			continue
		}
		ip, err := netip.ParseAddr(s)
		if err != nil || ip.Zone() != "" || ip.Is4() != (i == 0) || ip.Is4In6() {
			return entry{}, false
		}
		*dst = ip
	}
	if !e.ipv4.IsValid() && !e.ipv6.IsValid() {
		return entry{}, false
	}
	return e, true
}

// ParseRecord decodes the record stored in a file called name with content
// data, checking that the content agrees with the name.
func ParseRecord(name string, data []byte) (Record, error) {
	e, ok := parseName(name)
	if !ok {
		return Record{}, fmt.Errorf("%q is not a record file name", name)
	}
	var r Record
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Record{}, fmt.Errorf("decode record %s: %w", name, err)
	}
	if dec.More() {
		return Record{}, fmt.Errorf("decode record %s: trailing data", name)
	}
	if r.ContainerID == "" || r.IfName == "" {
		return Record{}, fmt.Errorf("record %s: containerID or ifname missing", name)
	}
	if Key(r.ContainerID, r.IfName) != e.key || r.IPv4 != e.ipv4 || r.IPv6 != e.ipv6 {
		return Record{}, fmt.Errorf("record %s: content does not match the file name", name)
	}
	return r, nil
}

// Marshal encodes r as stored in its record file.
func (r Record) Marshal() []byte {
	b, _ := json.Marshal(r) // cannot fail: strings and netip.Addr only
	return append(b, '\n')
}

// Store is an open, locked store directory. It is not safe for concurrent
// use by goroutines; concurrent processes are serialised by the lock.
type Store struct {
	dir  string
	lock *os.File
}

// Open creates dir if needed and takes its exclusive lock, blocking until
// other holders release it. Close releases it.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create ipam store %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open ipam lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock ipam store %s: %w", dir, err)
	}
	return &Store{dir: dir, lock: f}, nil
}

// Close releases the lock.
func (s *Store) Close() error {
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close() // closing the last descriptor drops the flock
	s.lock = nil
	return err
}

// scan lists the record entries, removing temporary files left by a crashed
// writer (none can be in flight: the caller holds the lock).
func (s *Store) scan() ([]entry, error) {
	d, err := os.Open(s.dir)
	if err != nil {
		return nil, fmt.Errorf("read ipam store: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("read ipam store: %w", err)
	}
	var es []entry
	for _, n := range names {
		if strings.HasPrefix(n, tmpPrefix) {
			os.Remove(filepath.Join(s.dir, n))
			continue
		}
		if e, ok := parseName(n); ok {
			es = append(es, e)
		}
	}
	return es, nil
}

// Get returns the record of (containerID, ifname). ok is false when there is
// none.
func (s *Store) Get(containerID, ifname string) (r Record, ok bool, err error) {
	es, err := s.scan()
	if err != nil {
		return Record{}, false, err
	}
	key := Key(containerID, ifname)
	for _, e := range es {
		if e.key == key {
			return Record{ContainerID: containerID, IfName: ifname, IPv4: e.ipv4, IPv6: e.ipv6}, true, nil
		}
	}
	return Record{}, false, nil
}

// Pools are the subnets to allocate from, each given as the gateway address
// with the subnet's prefix length (the form of the subnet file). A zero
// prefix means that family is not used.
type Pools struct {
	V4, V6 netip.Prefix
}

// Allocate returns the record of (containerID, ifname), creating it with the
// next free addresses after the last ones handed out (round robin). An
// existing record that fits the pools is returned as is, with created
// false; one that does not (the node's subnet or families changed since)
// is an [*HeldError]: the attachment must be deleted first.
//
// Allocate never removes another record. Every record's addresses stay
// taken until a release or GC removes it, whatever the pools are now: a
// record outside them belongs to a pod that still runs with those
// addresses (the network gained or lost a family, or the node's subnet
// changed), and handing them out again would give two pods one address.
func (s *Store) Allocate(containerID, ifname string, pools Pools) (r Record, created bool, err error) {
	es, err := s.scan()
	if err != nil {
		return Record{}, false, err
	}
	key := Key(containerID, ifname)
	used := make(map[netip.Addr]bool, 2*len(es))
	for _, e := range es {
		if e.key == key {
			r := Record{ContainerID: containerID, IfName: ifname, IPv4: e.ipv4, IPv6: e.ipv6}
			if !inPool(e.ipv4, pools.V4) || !inPool(e.ipv6, pools.V6) {
				return Record{}, false, &HeldError{Record: r}
			}
			return r, false, nil
		}
		used[e.ipv4] = true
		used[e.ipv6] = true
	}
	r = Record{ContainerID: containerID, IfName: ifname}
	if pools.V4.IsValid() {
		if r.IPv4, err = s.pick(pools.V4, "last4", used); err != nil {
			return Record{}, false, err
		}
	}
	if pools.V6.IsValid() {
		if r.IPv6, err = s.pick(pools.V6, "last6", used); err != nil {
			return Record{}, false, err
		}
	}
	if err := s.write(r); err != nil {
		return Record{}, false, err
	}
	s.writeLast("last4", r.IPv4)
	s.writeLast("last6", r.IPv6)
	return r, true, nil
}

// HeldError is returned by [Store.Allocate] when the attachment already
// holds addresses that do not fit the current pools.
type HeldError struct {
	Record Record
}

func (e *HeldError) Error() string {
	var held []string
	for _, ip := range []netip.Addr{e.Record.IPv4, e.Record.IPv6} {
		if ip.IsValid() {
			held = append(held, ip.String())
		}
	}
	return fmt.Sprintf("container %s interface %s already holds %s, which does not fit the node's current subnets", e.Record.ContainerID, e.Record.IfName, strings.Join(held, " and "))
}

// inPool reports whether ip may be held in pool: both zero, or ip a host
// address of pool.
func inPool(ip netip.Addr, pool netip.Prefix) bool {
	if !ip.IsValid() || !pool.IsValid() {
		return ip.IsValid() == pool.IsValid()
	}
	return pool.Contains(ip) && !Reserved(ip, pool)
}

// Gateway returns the gateway address of pool: the pool's address, or the
// first host address when the pool is written as its network address.
func Gateway(pool netip.Prefix) netip.Addr {
	gw := pool.Addr()
	if gw == pool.Masked().Addr() {
		gw = gw.Next()
	}
	return gw
}

// Reserved reports whether ip is never handed out from pool: the network
// address, the gateway and, for IPv4, the broadcast address.
func Reserved(ip netip.Addr, pool netip.Prefix) bool {
	return ip == pool.Masked().Addr() || ip == Gateway(pool) || (ip.Is4() && ip == LastAddr(pool))
}

// LastAddr returns the highest address of p (for IPv4, the broadcast
// address).
func LastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// maxProbe bounds the addresses tried in one allocation, so that a huge
// IPv6 pool with a dense region cannot make ADD slow.
const maxProbe = 1 << 16

// pick returns the first free address of pool after the last one handed out.
func (s *Store) pick(pool netip.Prefix, lastFile string, used map[netip.Addr]bool) (netip.Addr, error) {
	first := pool.Masked().Addr()
	last := LastAddr(pool)
	start := s.readLast(lastFile)
	if !pool.Contains(start) {
		start = first
	}
	ip := start
	for i := 0; i < maxProbe; i++ {
		ip = ip.Next()
		if !ip.IsValid() || ip.Compare(last) > 0 {
			ip = first
		}
		if !Reserved(ip, pool) && !used[ip] {
			return ip, nil
		}
		if ip == start {
			break
		}
	}
	return netip.Addr{}, fmt.Errorf("%w in %s", ErrExhausted, pool.Masked())
}

func (s *Store) readLast(name string) netip.Addr {
	b, err := os.ReadFile(filepath.Join(s.dir, name))
	if err != nil {
		return netip.Addr{}
	}
	ip, err := netip.ParseAddr(strings.TrimSpace(string(b)))
	if err != nil {
		return netip.Addr{}
	}
	return ip
}

// writeLast records ip as the last one handed out. The pointer only spreads
// allocations; losing or tearing it is harmless, so it is written in place,
// padded with spaces to a fixed width instead of truncated first: ext4
// starts writing back a file truncated to zero when it is closed, which
// cost every ADD about 0.1 ms of CPU time.
func (s *Store) writeLast(name string, ip netip.Addr) {
	if !ip.IsValid() {
		return
	}
	fd, err := unix.Open(filepath.Join(s.dir, name), unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return
	}
	var b [lastWidth]byte
	n := copy(b[:], ip.String())
	for i := n; i < len(b)-1; i++ {
		b[i] = ' '
	}
	b[len(b)-1] = '\n'
	_, _ = unix.Pwrite(fd, b[:], 0)
	// A longer file (damaged, or written by something else) would keep
	// its tail; cut it to the width, never to zero.
	var st unix.Stat_t
	if unix.Fstat(fd, &st) == nil && st.Size > lastWidth {
		_ = unix.Ftruncate(fd, lastWidth)
	}
	unix.Close(fd)
}

// lastWidth is the size of a round-robin pointer file: the longest IPv6
// address in text (39 characters), padding, a newline.
const lastWidth = 48

// write stores r atomically: temporary file, then rename. A process killed
// at any point leaves the record complete or absent.
func (s *Store) write(r Record) error {
	tmp, err := os.CreateTemp(s.dir, tmpPrefix)
	if err != nil {
		return fmt.Errorf("create ipam record: %w", err)
	}
	_, err = tmp.Write(r.Marshal())
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(s.dir, r.FileName()))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write ipam record: %w", err)
	}
	return nil
}

func (s *Store) remove(name string) error {
	if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove ipam record: %w", err)
	}
	return nil
}

// Release deletes the record of (containerID, ifname), returning it. ok is
// false when there was none; that is not an error.
func (s *Store) Release(containerID, ifname string) (r Record, ok bool, err error) {
	es, err := s.scan()
	if err != nil {
		return Record{}, false, err
	}
	key := Key(containerID, ifname)
	for _, e := range es {
		if e.key != key {
			continue
		}
		if err := s.remove(e.name); err != nil {
			return Record{}, false, err
		}
		r, ok = Record{ContainerID: containerID, IfName: ifname, IPv4: e.ipv4, IPv6: e.ipv6}, true
	}
	return r, ok, nil
}

// Stored is a record file as found by [Store.List]. Err is set when the
// file could not be read or decoded; Record then holds what the name tells
// (the addresses).
type Stored struct {
	Name   string
	Record Record
	Err    error
}

// List returns every record file of the store.
func (s *Store) List() ([]Stored, error) {
	es, err := s.scan()
	if err != nil {
		return nil, err
	}
	out := make([]Stored, 0, len(es))
	for _, e := range es {
		st := Stored{Name: e.name, Record: Record{IPv4: e.ipv4, IPv6: e.ipv6}}
		data, err := os.ReadFile(filepath.Join(s.dir, e.name))
		if err == nil {
			var r Record
			if r, err = ParseRecord(e.name, data); err == nil {
				st.Record = r
			}
		}
		st.Err = err
		out = append(out, st)
	}
	return out, nil
}

// Remove deletes the record file called name (from [Store.List]).
func (s *Store) Remove(name string) error {
	if _, ok := parseName(name); !ok {
		return fmt.Errorf("%q is not a record file name", name)
	}
	return s.remove(name)
}

// KeyOfName returns the attachment key of a record file name ([Key]), or
// "" when name is not a record's.
func KeyOfName(name string) string {
	e, ok := parseName(name)
	if !ok {
		return ""
	}
	return e.key
}
