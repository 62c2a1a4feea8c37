// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/weftnet/weft/subnet"
)

// What the store reads from etcd is checked, not believed: anyone with the
// store's credentials can write any key. The checks here are about the
// store's own format (a key name and the record it holds agree, sizes are
// bounded, the record is well formed); whether a lease belongs to the
// network is judged by [subnet.View.Check] against the config in force.

// Bounds of what one read of the store takes in.
const (
	// MaxListKeys is the most keys one listing of leases/ (or of
	// released/) reads: twice the IPv4 subnets of a /8 cut into /24s,
	// room for dual-stack. A listing with more fails with an error that
	// says so, rather than growing without bound.
	MaxListKeys = 1 << 17
	// MaxValueSize is the largest lease record read (a real one is about
	// 300 bytes); a larger one is rejected.
	MaxValueSize = 4096
)

// checkListed fails when a listing of prefix hit the store's limit
// (MaxListKeys).
func (s *Store) checkListed(prefix string, kvs []*mvccpb.KeyValue, more bool) error {
	if len(kvs) <= s.maxListKeys && !more {
		return nil
	}
	return fmt.Errorf("etcd holds more than %d keys under %s, more than weft reads in one listing: "+
		"remove the keys that are not weft's (etcdctl get --prefix %s --keys-only lists them)", s.maxListKeys, prefix, prefix)
}

// parseLeaseKey returns the subnet a key name below leases/ (or
// released/) names. Only the canonical name [subnet.KeyName] writes is
// accepted, so that no two keys name one subnet (fd10:0244::-64 and
// fd10:244::-64 would).
func parseLeaseKey(name string) (netip.Prefix, error) {
	p, err := subnet.ParseKeyName(name)
	if err != nil {
		return netip.Prefix{}, err
	}
	if subnet.KeyName(p) != name {
		return netip.Prefix{}, fmt.Errorf("lease key %q is not written the canonical way (%s)", name, subnet.KeyName(p))
	}
	return p, nil
}

// parseValue parses the record that lease key p holds and checks it: its
// size, its JSON, that it names p as its subnet of p's family (and, for a
// dual-stack lease, a subnet of the other family as its partner), and
// [subnet.Record.Validate]. The error never quotes the record.
func parseValue(p netip.Prefix, data []byte) (value, error) {
	var v value
	if len(data) > MaxValueSize {
		return value{}, fmt.Errorf("record is %d bytes, more than %d", len(data), MaxValueSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return value{}, fmt.Errorf("record is not valid JSON (at byte %d)", se.Offset)
		case errors.As(err, &te):
			return value{}, fmt.Errorf("record field %s has the wrong type", te.Field)
		}
		return value{}, fmt.Errorf("record does not parse: %s", firstLine(err.Error()))
	}
	if _, err := dec.Token(); err != io.EOF {
		return value{}, errors.New("record has data after its JSON object")
	}
	self, other, selfField, otherField := v.Subnet, v.IPv6Subnet, "subnet", "ipv6Subnet"
	if p.Addr().Is6() {
		self, other, selfField, otherField = v.IPv6Subnet, v.Subnet, "ipv6Subnet", "subnet"
	}
	if self != p {
		return value{}, fmt.Errorf("record's %s is %s, not the key's subnet %s", selfField, showPrefix(self), p)
	}
	if other.IsValid() && (other.Addr().Is6() == p.Addr().Is6() || other.Masked() != other) {
		return value{}, fmt.Errorf("record's %s %s is not a subnet of the other address family", otherField, other)
	}
	if err := v.Record.Validate(); err != nil {
		return value{}, fmt.Errorf("record: %w", err)
	}
	return v, nil
}

func showPrefix(p netip.Prefix) string {
	if !p.IsValid() {
		return "missing"
	}
	return p.String()
}

// firstLine returns s up to its first newline, at most 200 bytes.
func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// addEntry parses lease key kv into entries (keyed by subnet) or, when
// its name names no subnet, into stray (keyed by key name). A record that
// fails parseValue is still an entry (its subnet is taken), marked not ok,
// and logged once per version.
func (s *Store) addEntry(entries map[netip.Prefix]*entry, stray map[string]string, kv *mvccpb.KeyValue) {
	name := strings.TrimPrefix(string(kv.Key), s.LeasesPrefix())
	e, err := s.parseEntry(kv)
	if err != nil {
		stray[name] = err.Error()
		s.warnOnce(kv, "key under leases/ names no subnet; ignored", err)
		return
	}
	entries[e.subnet] = e
}

// parseEntry parses lease key kv. It fails only when the key names no
// subnet; a record that fails parseValue gives an entry that is not ok.
func (s *Store) parseEntry(kv *mvccpb.KeyValue) (*entry, error) {
	p, err := parseLeaseKey(strings.TrimPrefix(string(kv.Key), s.LeasesPrefix()))
	if err != nil {
		return nil, err
	}
	e := &entry{subnet: p, kv: keyRevs{CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Lease: kv.Lease}}
	if e.val, err = parseValue(p, kv.Value); err != nil {
		e.reason = err.Error()
		s.warnOnce(kv, "lease record rejected; the subnet counts as taken", err)
	} else {
		e.ok = true
	}
	return e, nil
}

// warnOnce logs a rejected key once per version (ModRevision).
func (s *Store) warnOnce(kv *mvccpb.KeyValue, msg string, err error) {
	s.mu.Lock()
	first := s.warned[string(kv.Key)] != kv.ModRevision
	if first {
		if len(s.warned) > 10000 {
			clear(s.warned)
		}
		s.warned[string(kv.Key)] = kv.ModRevision
	}
	s.mu.Unlock()
	if first {
		s.log.WithField("key", string(kv.Key)).WithError(err).Warn(msg)
	}
}
