// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package docs

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/google/go-cmp/cmp"

	"github.com/weftnet/weft/cni"
	"github.com/weftnet/weft/daemon"
	"github.com/weftnet/weft/subnet"
)

const configurationDoc = "configuration.md"

// docRow is one row of a reference table: its first backticked cell (the
// key), the other cells as written.
type docRow struct {
	key   string
	cells []string
	line  int
}

// docTable returns the rows of the table that follows the marker
// "<!-- table: name -->" in the Markdown text (header and separator rows
// dropped).
func docTable(text, name string) ([]docRow, error) {
	lines := strings.Split(text, "\n")
	start := slices.Index(lines, "<!-- table: "+name+" -->")
	if start < 0 {
		return nil, fmt.Errorf("no table %q (marker <!-- table: %s --> missing)", name, name)
	}
	var rows []docRow
	for i := start + 1; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(l, "|") {
			if len(rows) > 0 || i > start+3 {
				break
			}
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		for j := range cells {
			cells[j] = strings.TrimSpace(cells[j])
		}
		if i <= start+2 { // header and separator
			continue
		}
		rows = append(rows, docRow{key: strings.Trim(cells[0], "`"), cells: cells, line: i + 1})
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("table %q has no rows", name)
	}
	return rows, nil
}

// docDefault reads a default cell: the first backticked token, or "" for
// "none". Anything else is an error, so that a default cannot hide in prose.
func docDefault(cell string) (string, error) {
	if cell == "none" {
		return "", nil
	}
	if strings.HasPrefix(cell, "`") {
		if end := strings.Index(cell[1:], "`"); end >= 0 {
			return cell[1 : end+1], nil
		}
	}
	return "", fmt.Errorf("default %q is neither `value` nor none", cell)
}

// compareKeys reports keys only in the code and keys only in the doc.
func compareKeys(what string, code []string, rows []docRow) []string {
	var bad []string
	var doc []string
	for _, r := range rows {
		if slices.Contains(doc, r.key) {
			bad = append(bad, fmt.Sprintf("%s: %s is documented twice", what, r.key))
		}
		doc = append(doc, r.key)
	}
	for _, k := range code {
		if !slices.Contains(doc, k) {
			bad = append(bad, fmt.Sprintf("%s: %s is not documented", what, k))
		}
	}
	for _, r := range rows {
		if !slices.Contains(code, r.key) {
			bad = append(bad, fmt.Sprintf("%s: line %d documents %s, which the code does not have", what, r.line, r.key))
		}
	}
	return bad
}

// flagProblems checks the weftd-flags table against fs: every flag with
// its environment variable and its default, and no flag the code lacks.
func flagProblems(fs *flag.FlagSet, text string) []string {
	rows, err := docTable(text, "weftd-flags")
	if err != nil {
		return []string{err.Error()}
	}
	var code []string
	fs.VisitAll(func(f *flag.Flag) { code = append(code, "--"+f.Name) })
	bad := compareKeys("weftd flags", code, rows)
	for _, r := range rows {
		f := fs.Lookup(strings.TrimPrefix(r.key, "--"))
		if f == nil {
			continue
		}
		if len(r.cells) != 4 {
			bad = append(bad, fmt.Sprintf("weftd flags: line %d: want 4 cells, got %d", r.line, len(r.cells)))
			continue
		}
		if env := strings.Trim(r.cells[1], "`"); env != daemon.EnvName(f.Name) {
			bad = append(bad, fmt.Sprintf("weftd flags: %s: variable %s, want %s", r.key, env, daemon.EnvName(f.Name)))
		}
		def, err := docDefault(r.cells[2])
		if err != nil {
			bad = append(bad, fmt.Sprintf("weftd flags: %s: %v", r.key, err))
		} else if def != f.DefValue {
			bad = append(bad, fmt.Sprintf("weftd flags: %s: documented default %q, code default %q", r.key, def, f.DefValue))
		}
	}
	return bad
}

// jsonKeys returns the JSON names of t's fields (json tags, or the field
// name when untagged), skipping "-".
func jsonKeys(t reflect.Type) []string {
	var keys []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		keys = append(keys, name)
	}
	return keys
}

// networkConfigKeys returns every key of the network config: the keys of
// subnet.Config and, as Backend.<key>, those of subnet.BackendConfig.
func networkConfigKeys() []string {
	keys := jsonKeys(reflect.TypeFor[subnet.Config]())
	for _, k := range jsonKeys(reflect.TypeFor[subnet.BackendConfig]()) {
		keys = append(keys, "Backend."+k)
	}
	return keys
}

// networkConfigDefaults returns the default of every key as the parser
// fills it in: from a dual-stack VXLAN config, and for the WireGuard keys
// from a WireGuard one. Keys the parser leaves zero are absent.
func networkConfigDefaults() (map[string]string, error) {
	defs := map[string]string{}
	for _, src := range []string{
		`{"Network": "10.244.0.0/16", "IPv6Network": "fd10:244::/56"}`,
		`{"Network": "10.244.0.0/16", "IPv6Network": "fd10:244::/56", "Backend": {"Type": "wireguard"}}`,
	} {
		c, err := subnet.ParseConfig([]byte(src))
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", src, err)
		}
		flat := map[string]any{}
		b, _ := json.Marshal(c)
		if err := json.Unmarshal(b, &flat); err != nil {
			return nil, err
		}
		be, _ := flat["Backend"].(map[string]any)
		delete(flat, "Backend")
		for k, v := range be {
			flat["Backend."+k] = v
		}
		for k, v := range flat {
			if _, ok := defs[k]; !ok {
				defs[k] = fmt.Sprint(v)
			}
		}
	}
	// The parsed networks are the examples', not defaults.
	delete(defs, "Network")
	delete(defs, "IPv6Network")
	return defs, nil
}

// zeroDefault reports whether a documented default stands for a zero value
// that the parser leaves out.
func zeroDefault(s string) bool { return s == "" || s == "0" || s == "false" }

func networkConfigProblems(text string) []string {
	rows, err := docTable(text, "network-config")
	if err != nil {
		return []string{err.Error()}
	}
	bad := compareKeys("network config", networkConfigKeys(), rows)
	defs, err := networkConfigDefaults()
	if err != nil {
		return append(bad, err.Error())
	}
	for _, r := range rows {
		if len(r.cells) != 4 {
			bad = append(bad, fmt.Sprintf("network config: line %d: want 4 cells, got %d", r.line, len(r.cells)))
			continue
		}
		def, err := docDefault(r.cells[2])
		if err != nil {
			bad = append(bad, fmt.Sprintf("network config: %s: %v", r.key, err))
			continue
		}
		code, ok := defs[r.key]
		if r.key == "Backend" {
			continue // an object; its keys have their own rows
		}
		switch {
		case ok && def != code:
			bad = append(bad, fmt.Sprintf("network config: %s: documented default %q, parser default %q", r.key, def, code))
		case !ok && !zeroDefault(def):
			bad = append(bad, fmt.Sprintf("network config: %s: documented default %q, but the parser sets none", r.key, def))
		}
	}
	return bad
}

// cniKeys returns the plugin's own config keys: the fields of cni.Config
// outside the embedded standard types.PluginConf, named as in JSON
// (lowerCamelCase; an all-capitals name in lower case). Attachments is the
// union of the standard GC keys, not a key of its own.
func cniKeys() []string {
	var keys []string
	for f := range reflect.TypeFor[cni.Config]().Fields() {
		if f.Anonymous || f.Name == "Attachments" {
			continue
		}
		keys = append(keys, lowerCamel(f.Name))
	}
	return keys
}

func lowerCamel(s string) string {
	if strings.ToUpper(s) == s {
		return strings.ToLower(s)
	}
	r := []rune(s)
	r[0] = unicode.ToLower(r[0])
	return string(r)
}

// cniProblems checks the cni table: the keys against cni.Config, each key
// against the parser (a value of the wrong type must be refused naming that
// key, which proves the parser reads it), and each default against what
// the parser fills in.
func cniProblems(text string) []string {
	rows, err := docTable(text, "cni")
	if err != nil {
		return []string{err.Error()}
	}
	bad := compareKeys("cni", cniKeys(), rows)
	base := map[string]any{"cniVersion": "1.0.0", "name": "weft", "type": "weft"}
	b, _ := json.Marshal(base)
	parsed, err := cni.ParseConfig(b)
	if err != nil {
		return append(bad, fmt.Sprintf("cni: parse %s: %v", b, err))
	}
	pv := reflect.ValueOf(parsed).Elem()
	for _, r := range rows {
		if len(r.cells) != 4 {
			bad = append(bad, fmt.Sprintf("cni: line %d: want 4 cells, got %d", r.line, len(r.cells)))
			continue
		}
		conf := map[string]any{r.key: []int{1}} // no key takes a list
		for k, v := range base {
			conf[k] = v
		}
		b, _ := json.Marshal(conf)
		var ce *cni.ConfigError
		if _, err := cni.ParseConfig(b); !errors.As(err, &ce) || ce.Key != r.key {
			bad = append(bad, fmt.Sprintf("cni: the parser ignores %s (a list for it gave %v)", r.key, err))
		}
		def, err := docDefault(r.cells[2])
		if err != nil {
			bad = append(bad, fmt.Sprintf("cni: %s: %v", r.key, err))
			continue
		}
		for i := range pv.NumField() {
			if f := pv.Type().Field(i); !f.Anonymous && lowerCamel(f.Name) == r.key {
				if code := fmt.Sprint(pv.Field(i).Interface()); code != def && !(zeroDefault(def) && pv.Field(i).IsZero()) {
					bad = append(bad, fmt.Sprintf("cni: %s: documented default %q, parser default %q", r.key, def, code))
				}
			}
		}
	}
	return bad
}

// subnetFileProblems checks the subnet-file table against the keys
// SubnetFile.Marshal writes for a dual-stack file.
func subnetFileProblems(text string) []string {
	rows, err := docTable(text, "subnet-file")
	if err != nil {
		return []string{err.Error()}
	}
	f, err := subnet.ParseSubnetFile([]byte("WEFT_NETWORK=10.244.0.0/16\nWEFT_SUBNET=10.244.3.1/24\nWEFT_IPV6_NETWORK=fd10:244::/56\nWEFT_IPV6_SUBNET=fd10:244:0:3::1/64\nWEFT_MTU=1450\nWEFT_IPMASQ=true\n"))
	if err != nil {
		return []string{err.Error()}
	}
	var code []string
	for _, l := range strings.Split(strings.TrimSpace(string(f.Marshal())), "\n") {
		k, _, _ := strings.Cut(l, "=")
		code = append(code, k)
	}
	return compareKeys("subnet file", code, rows)
}

func readDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(configurationDoc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestConfigurationReference keeps configuration.md true to the code.
func TestConfigurationReference(t *testing.T) {
	text := readDoc(t)
	fs, _ := daemon.NewFlagSet("weftd")
	for name, bad := range map[string][]string{
		"weftd flags":    flagProblems(fs, text),
		"network config": networkConfigProblems(text),
		"cni":            cniProblems(text),
		"subnet file":    subnetFileProblems(text),
	} {
		t.Run(name, func(t *testing.T) {
			if len(bad) > 0 {
				t.Errorf("%s does not match the code:\n%s", configurationDoc, strings.Join(bad, "\n"))
			}
		})
	}
}

// TestConfigurationReferenceCanFail feeds doctored copies of the reference
// and expects each change to be reported.
func TestConfigurationReferenceCanFail(t *testing.T) {
	text := readDoc(t)
	fs, _ := daemon.NewFlagSet("weftd")
	dropLine := func(prefix string) string {
		var out []string
		for _, l := range strings.Split(text, "\n") {
			if !strings.HasPrefix(l, prefix) {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n")
	}
	for _, tc := range []struct {
		name  string
		check func(string) []string
		doc   string
		want  []string
	}{
		{
			name:  "flag missing",
			check: func(s string) []string { return flagProblems(fs, s) },
			doc:   dropLine("| `--lease-ttl` "),
			want:  []string{"weftd flags: --lease-ttl is not documented"},
		},
		{
			name:  "flag the code lacks",
			check: func(s string) []string { return flagProblems(fs, s) },
			doc:   strings.Replace(text, "| `--lease-ttl` | `WEFTD_LEASE_TTL` |", "| `--lease-time` | `WEFTD_LEASE_TIME` |", 1),
			want:  []string{"weftd flags: --lease-ttl is not documented", "documents --lease-time, which the code does not have"},
		},
		{
			name:  "wrong default",
			check: func(s string) []string { return flagProblems(fs, s) },
			doc:   strings.Replace(text, "| `WEFTD_RESYNC_INTERVAL` | `10s` |", "| `WEFTD_RESYNC_INTERVAL` | `30s` |", 1),
			want:  []string{`--resync-interval: documented default "30s", code default "10s"`},
		},
		{
			name:  "wrong variable",
			check: func(s string) []string { return flagProblems(fs, s) },
			doc:   strings.Replace(text, "`WEFTD_IP_MASQ`", "`WEFT_IP_MASQ`", 1),
			want:  []string{"--ip-masq: variable WEFT_IP_MASQ, want WEFTD_IP_MASQ"},
		},
		{
			name:  "network config key missing",
			check: networkConfigProblems,
			doc:   dropLine("| `Backend.PersistentKeepalive` "),
			want:  []string{"network config: Backend.PersistentKeepalive is not documented"},
		},
		{
			name:  "network config default wrong",
			check: networkConfigProblems,
			doc:   strings.Replace(text, "| `Backend.Port` | integer | `8472` |", "| `Backend.Port` | integer | `4789` |", 1),
			want:  []string{`Backend.Port: documented default "4789", parser default "8472"`},
		},
		{
			name:  "cni key the plugin lacks",
			check: cniProblems,
			doc:   strings.Replace(text, "| `hairpinMode` |", "| `hairpin` |", 1),
			want:  []string{"cni: hairpinMode is not documented", "documents hairpin, which the code does not have", "the parser ignores hairpin"},
		},
		{
			name:  "cni default wrong",
			check: cniProblems,
			doc:   strings.Replace(text, "| `bridge` | interface name | `weft0` |", "| `bridge` | interface name | `cni0` |", 1),
			want:  []string{`cni: bridge: documented default "cni0", parser default "weft0"`},
		},
		{
			name:  "subnet file key missing",
			check: subnetFileProblems,
			doc:   dropLine("| `WEFT_IPMASQ` "),
			want:  []string{"subnet file: WEFT_IPMASQ is not documented"},
		},
		{
			name:  "table marker missing",
			check: cniProblems,
			doc:   strings.Replace(text, "<!-- table: cni -->", "", 1),
			want:  []string{`no table "cni"`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.doc == text {
				t.Fatal("the doctored doc equals the original")
			}
			got := strings.Join(tc.check(tc.doc), "\n")
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("want a problem containing %q; got:\n%s", w, got)
				}
			}
		})
	}
	if diff := cmp.Diff([]string{"mtu", "subnetFile", "isDefaultGateway"}, []string{lowerCamel("MTU"), lowerCamel("SubnetFile"), lowerCamel("IsDefaultGateway")}); diff != "" {
		t.Errorf("lowerCamel (-want +got):\n%s", diff)
	}
}
