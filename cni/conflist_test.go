// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package cni

import (
	"encoding/json"
	"os"
	"testing"
)

// exampleConflist is the conflist shipped for runtimes.
const exampleConflist = "../etc/cni/10-weft.conflist"

// TestExampleConflist checks the shipped conflist: weft first with a
// config the plugin accepts, portmap chained after it, a cniVersion
// Debian's reference plugins accept (at most 1.0.0).
func TestExampleConflist(t *testing.T) {
	b, err := os.ReadFile(exampleConflist)
	if err != nil {
		t.Fatal(err)
	}
	var l struct {
		CNIVersion string            `json:"cniVersion"`
		Name       string            `json:"name"`
		Plugins    []json.RawMessage `json:"plugins"`
	}
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatalf("%s: %v", exampleConflist, err)
	}
	if l.CNIVersion != "1.0.0" || l.Name == "" || len(l.Plugins) != 2 {
		t.Fatalf("%s: version %q, name %q, %d plugins; want 1.0.0, a name, weft and portmap", exampleConflist, l.CNIVersion, l.Name, len(l.Plugins))
	}
	var first map[string]any
	if err := json.Unmarshal(l.Plugins[0], &first); err != nil {
		t.Fatal(err)
	}
	first["cniVersion"], first["name"] = l.CNIVersion, l.Name
	fb, _ := json.Marshal(first)
	c, err := ParseConfig(fb)
	if err != nil || c.Type != "weft" {
		t.Fatalf("the first plugin is not a valid weft config: %v %+v", err, c)
	}
	var second struct {
		Type         string          `json:"type"`
		Capabilities map[string]bool `json:"capabilities"`
	}
	if err := json.Unmarshal(l.Plugins[1], &second); err != nil || second.Type != "portmap" || !second.Capabilities["portMappings"] {
		t.Errorf("the second plugin is not portmap with portMappings: %s", l.Plugins[1])
	}
}
