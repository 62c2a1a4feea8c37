// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"strings"

	"github.com/weftnet/weft/subnet"
	subnetetcd "github.com/weftnet/weft/subnet/etcd"
)

const configUsage = `usage: weftctl config set|get [flags]

  set   validate and write the network config to <etcd-prefix>/config,
        from flags (--network 10.244.0.0/16 --backend vxlan ...) or from a
        JSON file (-f config.json; - reads stdin)
  get   print the network config stored in etcd

Run 'weftctl config set -h' for the flags.
`

// cmdIO is where a command reads and writes; tests replace it.
type cmdIO struct {
	in     io.Reader
	out    io.Writer
	errOut io.Writer
	// tty reports whether in is an interactive terminal.
	tty bool
}

func stdIO() *cmdIO {
	tty := false
	if st, err := os.Stdin.Stat(); err == nil {
		tty = st.Mode()&os.ModeCharDevice != 0
	}
	return &cmdIO{in: os.Stdin, out: stdout, errOut: stderr, tty: tty}
}

func cmdConfig(ctx context.Context, args []string) error {
	return runConfig(ctx, args, stdIO())
}

func runConfig(ctx context.Context, args []string, cio *cmdIO) error {
	if len(args) == 0 {
		fmt.Fprint(cio.errOut, configUsage)
		return errors.New("config: no subcommand given (set or get)")
	}
	switch args[0] {
	case "set":
		return configSet(ctx, args[1:], cio)
	case "get":
		return configGet(ctx, args[1:], cio)
	case "-h", "--help", "help":
		fmt.Fprint(cio.out, configUsage)
		return nil
	}
	fmt.Fprint(cio.errOut, configUsage)
	return fmt.Errorf("config: unknown subcommand %q (want set or get)", args[0])
}

// configField maps a data flag to its key in the network config JSON.
type configField struct {
	flag, key string
	backend   bool // a key of the Backend object
}

var configFields = []configField{
	{"network", "Network", false},
	{"ipv6-network", "IPv6Network", false},
	{"subnet-len", "SubnetLen", false},
	{"ipv6-subnet-len", "IPv6SubnetLen", false},
	{"subnet-min", "SubnetMin", false},
	{"subnet-max", "SubnetMax", false},
	{"backend", "Type", true},
	{"vni", "VNI", true},
	{"port", "Port", true},
	{"mtu", "MTU", true},
	{"direct-routing", "DirectRouting", true},
	{"listen-port", "ListenPort", true},
	{"persistent-keepalive", "PersistentKeepalive", true},
}

func configSet(ctx context.Context, args []string, cio *cmdIO) error {
	fs := flag.NewFlagSet("weftctl config set", flag.ContinueOnError)
	fs.SetOutput(cio.errOut)
	conn := connFlags(fs)
	var (
		file                                       string
		dryRun, force                              bool
		network, ipv6Network, subnetMin, subnetMax string
		backendType                                string
		subnetLen, ipv6SubnetLen                   int
		vni, port, mtu, listenPort, keepalive      int
		directRouting                              bool
	)
	fs.StringVar(&file, "f", "", "read the config JSON from this file (- for stdin) instead of the flags below")
	fs.BoolVar(&dryRun, "dry-run", false, "validate and print the JSON that would be written; write nothing")
	fs.BoolVar(&force, "force", false, "write even if live leases are not subnets of the new network")
	fs.StringVar(&network, "network", "", "IPv4 cluster network, e.g. 10.244.0.0/16")
	fs.StringVar(&ipv6Network, "ipv6-network", "", "IPv6 cluster network, e.g. fd10:244::/56 (dual-stack, or IPv6-only without --network)")
	fs.IntVar(&subnetLen, "subnet-len", subnet.DefaultSubnetLen, "prefix length of each node's IPv4 subnet")
	fs.IntVar(&ipv6SubnetLen, "ipv6-subnet-len", subnet.DefaultIPv6SubnetLen, "prefix length of each node's IPv6 subnet")
	fs.StringVar(&subnetMin, "subnet-min", "", "first IPv4 subnet to hand out, e.g. 10.244.10.0")
	fs.StringVar(&subnetMax, "subnet-max", "", "last IPv4 subnet to hand out, e.g. 10.244.200.0")
	fs.StringVar(&backendType, "backend", subnet.DefaultBackend, "backend: vxlan, wireguard or host-gw")
	fs.IntVar(&vni, "vni", subnet.DefaultVNI, "vxlan: VXLAN network identifier")
	fs.IntVar(&port, "port", subnet.DefaultVXLANPort, "vxlan: UDP port")
	fs.IntVar(&mtu, "mtu", 0, "vxlan, wireguard: pod MTU (default: derived from the underlay)")
	fs.BoolVar(&directRouting, "direct-routing", false, "vxlan: plain routes to peers on the same L2 segment")
	fs.IntVar(&listenPort, "listen-port", subnet.DefaultListenPort, "wireguard: UDP listen port")
	fs.IntVar(&keepalive, "persistent-keepalive", 0, "wireguard: persistent keepalive in seconds (0: off)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("config set: unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var dataFlags []string
	for _, f := range configFields {
		if set[f.flag] {
			dataFlags = append(dataFlags, "--"+f.flag)
		}
	}

	var raw []byte
	switch {
	case file != "" && len(dataFlags) > 0:
		return fmt.Errorf("config set: give either -f or flags such as %s, not both", dataFlags[0])
	case file != "" && argsChecked(ctx) != nil:
		return errArgsOK // the file is read when the command runs
	case file == "-":
		data, err := cio.readAll()
		if err != nil {
			return fmt.Errorf("config set: read stdin: %w", err)
		}
		raw = data
	case file != "":
		data, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("config set: %w", err)
		}
		raw = data
	case len(dataFlags) == 0:
		return errors.New("config set: nothing to write: give --network (and other flags) or -f file.json; see weftctl config set -h")
	default:
		// Only the flags given on the command line become keys, so that
		// the config keeps its defaults for the rest and a flag of another
		// backend type is reported rather than silently dropped.
		values := map[string]any{
			"network": network, "ipv6-network": ipv6Network, "subnet-len": subnetLen, "ipv6-subnet-len": ipv6SubnetLen,
			"subnet-min": subnetMin, "subnet-max": subnetMax, "backend": backendType, "vni": vni, "port": port,
			"mtu": mtu, "direct-routing": directRouting, "listen-port": listenPort, "persistent-keepalive": keepalive,
		}
		var top, be orderedObject
		for _, f := range configFields {
			if !set[f.flag] {
				continue
			}
			if f.backend {
				be = append(be, kv{f.key, values[f.flag]})
			} else {
				top = append(top, kv{f.key, values[f.flag]})
			}
		}
		if len(be) > 0 {
			top = append(top, kv{"Backend", be})
		}
		data, err := json.MarshalIndent(top, "", "  ")
		if err != nil {
			return err
		}
		raw = append(data, '\n')
	}

	cfg, err := subnet.ParseConfig(raw)
	if err != nil {
		if len(dataFlags) > 0 {
			return fmt.Errorf("invalid network config: %s", flagWords(err.Error()))
		}
		return fmt.Errorf("invalid network config in %s: %w", file, err)
	}
	if err := argsChecked(ctx); err != nil {
		return err
	}
	if dryRun {
		_, err := cio.out.Write(raw)
		return err
	}

	st, closeStore, err := conn.store(ctx)
	if err != nil {
		return err
	}
	defer closeStore()
	if !force {
		view, err := st.List(ctx)
		if err != nil {
			return conn.explain(fmt.Errorf("config set: %w", err))
		}
		var outside []string
		for _, l := range view.Leases {
			if l.Subnet.IsValid() && !cfg.IPv4Space().Contains(l.Subnet) || l.IPv6Subnet.IsValid() && !cfg.IPv6Space().Contains(l.IPv6Subnet) ||
				cfg.IPv4Space().IsValid() != l.Subnet.IsValid() {
				outside = append(outside, fmt.Sprintf("%s (%s)", leaseSubnets(l), l.Record.NodeName))
			}
		}
		if len(outside) > 0 {
			return fmt.Errorf("config set: %d live lease(s) do not fit the new network: %s\n"+
				"changing the network under running nodes breaks their pods; drain and remove them first "+
				"(weftctl leases rm <node>), or pass --force", len(outside), strings.Join(outside, ", "))
		}
		if err := familyChange(ctx, st, cfg, len(view.Leases)); err != nil {
			return err
		}
	}
	if err := st.PutConfig(ctx, raw); err != nil {
		return conn.explain(err)
	}
	fmt.Fprintf(cio.out, "network config written to %s\n", st.ConfigKey())
	return nil
}

// familyChange refuses a config that adds or removes an address family
// while nodes hold leases: their running pods keep the families they were
// given, and only pods created after each node's weftd restarts get the
// new set. An absent or invalid stored config is no family to compare.
func familyChange(ctx context.Context, st *subnetetcd.Store, cfg *subnet.Config, leases int) error {
	if leases == 0 {
		return nil
	}
	old, err := st.GetConfig(ctx)
	var cerr *subnet.ConfigError
	switch {
	case errors.Is(err, subnet.ErrNoConfig) || errors.As(err, &cerr):
		return nil
	case err != nil:
		return fmt.Errorf("config set: read the current config: %w", err)
	}
	var changes []string
	for _, f := range []struct {
		name     string
		old, new netip.Prefix
	}{{"IPv4", old.Network, cfg.Network}, {"IPv6", old.IPv6Network, cfg.IPv6Network}} {
		switch {
		case !f.old.IsValid() && f.new.IsValid():
			changes = append(changes, "adds "+f.name+" ("+f.new.String()+")")
		case f.old.IsValid() && !f.new.IsValid():
			changes = append(changes, "removes "+f.name+" ("+f.old.String()+")")
		}
	}
	if len(changes) == 0 {
		return nil
	}
	return fmt.Errorf("config set: the new network %s while %d lease(s) are live: running pods keep the "+
		"addresses they have, and only pods created after each node's weftd restarts get the new families; "+
		"see docs/operations.md, \"Adding or removing an address family\", then pass --force", strings.Join(changes, " and "), leases)
}

// keyWord matches the config keys in a validation message.
var keyWord = regexp.MustCompile(`\b(Backend\.)?(PersistentKeepalive|ListenPort|DirectRouting|VNI|Port|MTU|IPv6SubnetLen|IPv6Network|SubnetLen|SubnetMin|SubnetMax|Network)\b`)

// flagWords rewrites the config keys in a validation message as the flags
// that set them, for someone who used flags.
func flagWords(msg string) string {
	return keyWord.ReplaceAllStringFunc(msg, func(k string) string {
		k = strings.TrimPrefix(k, "Backend.")
		for _, f := range configFields {
			if f.key == k {
				return "--" + f.flag
			}
		}
		return k
	})
}

func configGet(ctx context.Context, args []string, cio *cmdIO) error {
	fs := flag.NewFlagSet("weftctl config get", flag.ContinueOnError)
	fs.SetOutput(cio.errOut)
	conn := connFlags(fs)
	effective := fs.Bool("effective", false, "print the config with defaults filled in, as weftd uses it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("config get: unexpected arguments %q", fs.Args())
	}
	st, closeStore, err := conn.open(ctx)
	if err != nil {
		return err
	}
	defer closeStore()
	raw, err := st.GetConfigRaw(ctx)
	if err != nil {
		return conn.explain(err)
	}
	cfg, verr := subnet.ParseConfig(raw)
	if *effective && verr == nil {
		data, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			return err
		}
		raw = data
	}
	raw = bytes.TrimRight(raw, "\n")
	fmt.Fprintf(cio.out, "%s\n", raw)
	if verr != nil {
		return fmt.Errorf("the network config at %s is invalid: %w\nweftd keeps using its last good config; fix it with weftctl config set", st.ConfigKey(), verr)
	}
	return nil
}

func (c *cmdIO) readAll() ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(c.in)
	return b.Bytes(), err
}

// kv and orderedObject marshal a JSON object with keys in a given order.
type kv struct {
	k string
	v any
}

type orderedObject []kv

func (o orderedObject) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(e.k)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(e.v)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
