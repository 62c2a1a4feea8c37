// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package membership

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDecodeMeta(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		err      string // "" means valid
	}{
		{"empty object", `{}`, ""},
		{"full", `{"id":"9f0c6a3e-8a1b-4c55-9d2e-1234567890ab","boot":"8cd61170e41865409c90bec5503683e2","subnet":"10.244.7.0/24","subnet6":"fd10:244:0:7::/64","ip":"198.18.0.7","ip6":"2001:2::7","data":{"vtepMAC":"02:aa:bb:cc:dd:ee","wgKey":"` + strings.Repeat("A", 43) + `=","wgPort":51820},"epoch":42,"version":3,"leaving":true}`, ""},
		{"unknown field ignored", `{"epoch":1,"future":[1,2,3]}`, ""},
		{"not JSON", `nope`, "decode gossip metadata"},
		{"bad prefix", `{"subnet":"10.244.7.0/33"}`, "decode gossip metadata"},
		{"bad address", `{"ip":"198.18.0.300"}`, "decode gossip metadata"},
		{"negative epoch", `{"epoch":-5}`, "negative epoch"},
		{"long node ID", `{"id":"` + strings.Repeat("x", 65) + `"}`, "node ID of 65 bytes"},
		{"long MAC", `{"data":{"vtepMAC":"` + strings.Repeat("0", 33) + `"}}`, "VTEP MAC of 33 bytes"},
		{"long key", `{"data":{"wgKey":"` + strings.Repeat("A", 65) + `"}}`, "WireGuard key of 65 bytes"},
		{"port", `{"data":{"wgPort":70000}}`, "WireGuard port 70000"},
		{"too large", `{"id":"x","pad":"` + strings.Repeat("x", MaxMetaSize) + `"}`, "the limit is 512"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeMeta([]byte(tc.in))
			if tc.err == "" && err != nil {
				t.Fatalf("decodeMeta: %v", err)
			}
			if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("decodeMeta error = %v, want one containing %q", err, tc.err)
			}
		})
	}
}

// FuzzDecodeMeta feeds arbitrary bytes to the decoder of gossiped
// metadata: it must not panic, what it accepts must be within its bounds,
// and it must decode its own encoding of what it accepted to the same
// value. The seed corpus is in testdata/fuzz/FuzzDecodeMeta.
func FuzzDecodeMeta(f *testing.F) {
	f.Add([]byte(`{"id":"9f0c6a3e-8a1b-4c55-9d2e-1234567890ab","subnet":"10.244.7.0/24","ip":"198.18.0.7","epoch":42,"version":3}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := decodeMeta(b)
		if err != nil {
			return
		}
		if len(b) > MaxMetaSize || len(w.NodeID) > maxIDLen || len(w.BootID) > maxIDLen ||
			len(w.Data.VTEPMAC) > maxMACLen || len(w.Data.WireGuardKey) > maxKeyLen || w.Epoch < 0 ||
			w.Data.WireGuardPort < 0 || w.Data.WireGuardPort > 65535 {
			t.Fatalf("decodeMeta accepted out-of-bounds metadata: %+v", w)
		}
		again, err := json.Marshal(w)
		if err != nil {
			t.Fatalf("re-encode accepted metadata: %v", err)
		}
		w2, err := json.Marshal(mustDecode(t, again))
		if err != nil {
			t.Fatal(err)
		}
		if string(again) != string(w2) {
			t.Fatalf("round trip changed the metadata:\n%s\n%s", again, w2)
		}
	})
}

func mustDecode(t *testing.T, b []byte) wireMeta {
	t.Helper()
	var w wireMeta
	if err := json.Unmarshal(b, &w); err != nil {
		t.Fatalf("decode own encoding %s: %v", b, err)
	}
	return w
}
