// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package membership

import (
	"encoding/json"
	"fmt"
)

// Bounds of the metadata fields decodeMeta accepts. A node ID is a UUID
// (36 characters), a boot ID 32 hex digits, a MAC 17 characters, a
// WireGuard key 44 base64 characters; the bounds leave room but no more.
const (
	maxIDLen  = 64
	maxMACLen = 32
	maxKeyLen = 64
)

// decodeMeta decodes the metadata another member gossips. It is the one
// decoder of outside metadata and bounds what it accepts: at most
// [MaxMetaSize] bytes of JSON, IDs, MAC and key of bounded length, a
// non-negative epoch and a port within 0–65535. Fields it does not know
// are ignored (a newer weft may add some). Prefixes and addresses must
// parse; whether they make sense for the network is [Merge]'s and the
// peer check's business.
func decodeMeta(b []byte) (wireMeta, error) {
	var w wireMeta
	if len(b) > MaxMetaSize {
		return wireMeta{}, fmt.Errorf("gossip metadata is %d bytes, the limit is %d", len(b), MaxMetaSize)
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return wireMeta{}, fmt.Errorf("decode gossip metadata: %w", err)
	}
	switch {
	case len(w.NodeID) > maxIDLen:
		return wireMeta{}, fmt.Errorf("gossip metadata: node ID of %d bytes", len(w.NodeID))
	case len(w.BootID) > maxIDLen:
		return wireMeta{}, fmt.Errorf("gossip metadata: boot ID of %d bytes", len(w.BootID))
	case len(w.Data.VTEPMAC) > maxMACLen:
		return wireMeta{}, fmt.Errorf("gossip metadata: VTEP MAC of %d bytes", len(w.Data.VTEPMAC))
	case len(w.Data.WireGuardKey) > maxKeyLen:
		return wireMeta{}, fmt.Errorf("gossip metadata: WireGuard key of %d bytes", len(w.Data.WireGuardKey))
	case w.Data.WireGuardPort < 0 || w.Data.WireGuardPort > 65535:
		return wireMeta{}, fmt.Errorf("gossip metadata: WireGuard port %d", w.Data.WireGuardPort)
	case w.Epoch < 0:
		return wireMeta{}, fmt.Errorf("gossip metadata: negative epoch %d", w.Epoch)
	}
	return w, nil
}
