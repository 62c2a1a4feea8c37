// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package etcd

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/weftnet/weft/subnet"
)

// FuzzLeaseKey: names below leases/ come from etcd. parseLeaseKey never
// panics and accepts only the one canonical name of a subnet.
// Seeds: testdata/fuzz/.
func FuzzLeaseKey(f *testing.F) {
	f.Add("10.244.3.0-24")
	f.Fuzz(func(t *testing.T, name string) {
		p, err := parseLeaseKey(name)
		if err != nil {
			return
		}
		if subnet.KeyName(p) != name || p.Masked() != p {
			t.Fatalf("accepted %q for %s (canonical %q)", name, p, subnet.KeyName(p))
		}
	})
}

// FuzzLeaseRecord: lease records come from etcd, where anyone with the
// store's credentials can write anything. parseValue never panics; a
// record it accepts is bounded, names the key's subnet, validates, and
// reads back the same once written as the store writes it; a refusal's
// reason is short and never echoes the record. The network check takes
// what parseValue accepts and admits only subnets of the network.
// Seeds: testdata/fuzz/.
func FuzzLeaseRecord(f *testing.F) {
	f.Add("10.244.3.0-24", []byte(`{"nodeName":"a","nodeID":"i","publicIP":"198.18.0.1","backendType":"vxlan","version":1,"subnet":"10.244.3.0/24"}`))
	cfg, err := subnet.ParseConfig([]byte(`{"Network": "10.244.0.0/16", "IPv6Network": "fd10:244::/56"}`))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, key string, data []byte) {
		p, err := parseLeaseKey(key)
		if err != nil {
			return
		}
		v, err := parseValue(p, data)
		if err != nil {
			reason := err.Error()
			if len(reason) > 400 {
				t.Fatalf("reason of %d bytes: %.500s", len(reason), reason)
			}
			if len(data) >= 64 && strings.Contains(reason, string(data)) {
				t.Fatalf("reason quotes the record: %s", reason)
			}
			return
		}
		if len(data) > MaxValueSize {
			t.Fatalf("accepted a record of %d bytes", len(data))
		}
		if err := v.Record.Validate(); err != nil {
			t.Fatalf("accepted an invalid record: %v", err)
		}
		own := v.Subnet
		if p.Addr().Is6() {
			own = v.IPv6Subnet
		}
		if own != p {
			t.Fatalf("accepted a record naming %s under key %s", own, p)
		}
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseValue(p, out)
		if err != nil || again != v {
			t.Fatalf("written back, the record reads %+v, %v; want %+v", again, err, v)
		}
		l := subnet.Lease{Subnet: v.Subnet, IPv6Subnet: v.IPv6Subnet, Record: v.Record}
		if cfg.CheckLease(&l) == nil {
			if v.Subnet.IsValid() && !(cfg.Network.Contains(v.Subnet.Addr()) && v.Subnet.Bits() == cfg.SubnetLen) {
				t.Fatalf("lease of %s accepted in %s", v.Subnet, cfg.Network)
			}
			if v.IPv6Subnet.IsValid() && !(cfg.IPv6Network.Contains(v.IPv6Subnet.Addr()) && v.IPv6Subnet.Bits() == cfg.IPv6SubnetLen) {
				t.Fatalf("lease of %s accepted in %s", v.IPv6Subnet, cfg.IPv6Network)
			}
		}
	})
}
