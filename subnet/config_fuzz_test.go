// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package subnet

import (
	"encoding/json"
	"net/netip"
	"testing"
)

// maxErrorLen bounds an error message about outside input: a message may
// name a key and quote a short value, never echo a large input.
const maxErrorLen = 400

// FuzzParseNetworkConfig: the network config from the store is outside
// input. ParseConfig never panics; a config it accepts is valid, has
// usable spaces and survives a round trip through JSON; a refusal's
// message stays short whatever the input. Seeds: testdata/fuzz/.
func FuzzParseNetworkConfig(f *testing.F) {
	f.Add([]byte(`{"Network": "10.244.0.0/16"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			if n := len(err.Error()); n == 0 || n > maxErrorLen {
				t.Fatalf("error of %d bytes: %.600s", n, err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config does not validate: %v", err)
		}
		for _, sp := range []Space{c.IPv4Space(), c.IPv6Space()} {
			if sp.IsValid() && (sp.Size() == 0 || !sp.Contains(sp.First()) || !sp.Contains(sp.Last())) {
				t.Fatalf("space %+v of an accepted config is unusable", sp)
			}
		}
		if !c.IPv4Space().IsValid() && !c.IPv6Space().IsValid() {
			t.Fatal("accepted a config with no space")
		}
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseConfig(out)
		if err != nil {
			t.Fatalf("the accepted config written back does not parse: %v\n%s", err, out)
		}
		if *again != *c {
			t.Fatalf("round trip changed %+v to %+v", c, again)
		}
	})
}

// FuzzKeyName: lease key names come from the store. ParseKeyName never
// panics, and a name it accepts names a masked subnet whose canonical
// name parses back to the same subnet.
func FuzzKeyName(f *testing.F) {
	f.Add("10.244.3.0-24")
	f.Fuzz(func(t *testing.T, name string) {
		p, err := ParseKeyName(name)
		if err != nil {
			if n := len(err.Error()); n > maxErrorLen {
				t.Fatalf("error of %d bytes", n)
			}
			return
		}
		if !p.IsValid() || p.Masked() != p {
			t.Fatalf("%q parsed to %s, not a masked subnet", name, p)
		}
		back, err := ParseKeyName(KeyName(p))
		if err != nil || back != p {
			t.Fatalf("%q: %s → %q → %s, %v", name, p, KeyName(p), back, err)
		}
		// The lease check takes any subnet without panicking.
		cfg := Config{Network: netip.MustParsePrefix("10.244.0.0/16"), IPv6Network: netip.MustParsePrefix("fd10:244::/56")}
		cfg.SetDefaults()
		l := Lease{Subnet: p, Record: Record{NodeName: "n", NodeID: "i"}}
		if p.Addr().Is6() {
			l = Lease{IPv6Subnet: p, Record: l.Record}
		}
		if cfg.CheckLease(&l) == nil && !(cfg.Network.Contains(p.Addr()) || cfg.IPv6Network.Contains(p.Addr())) {
			t.Fatalf("lease of %s accepted in %s/%s", p, cfg.Network, cfg.IPv6Network)
		}
	})
}
