// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/daemon/membership"
	"github.com/weftnet/weft/subnet"
	subnetetcd "github.com/weftnet/weft/subnet/etcd"
)

// EnvPrefix prefixes the environment variable of every weftd flag:
// --etcd-endpoints is also read from WEFTD_ETCD_ENDPOINTS.
const EnvPrefix = "WEFTD_"

// Defaults of the flags that have one.
const (
	DefaultEtcdEndpoints  = "http://127.0.0.1:2379"
	DefaultEtcdPrefix     = "/weft"
	DefaultStateDir       = "/var/lib/weft"
	DefaultCNIDataDir     = "/var/lib/cni/weft"
	DefaultHTTPAddr       = "127.0.0.1:9950"
	DefaultResyncInterval = 10 * time.Second
	DefaultLeaseTTL       = 24 * time.Hour
	DefaultMemoryLimit    = 128 << 20
	DefaultGossipBind     = "0.0.0.0:7950"
	DefaultWireGuardName  = "weft-wg"
	// DefaultGossipEncryption: gossip is authenticated and encrypted
	// unless turned off explicitly.
	DefaultGossipEncryption = "on"
)

// Config is weftd's configuration: one field per flag (see [NewFlagSet])
// plus the logger, which the caller builds (see [NewLogger]).
type Config struct {
	// etcd connection.
	EtcdEndpoints []string
	EtcdPrefix    string
	EtcdCAFile    string
	EtcdCertFile  string
	EtcdKeyFile   string
	EtcdUsername  string
	EtcdPassword  string

	// NodeName is this node's name (default: the hostname).
	NodeName string
	// Iface is the underlay interface; PublicIP its address used for
	// tunnels. Either may be empty: Run derives the missing one from the
	// kernel (the interface holding PublicIP, the first address of Iface,
	// or the interface of the default route and its first address).
	Iface      string
	PublicIP   netip.Addr
	PublicIPv6 netip.Addr

	SubnetFile string
	StateDir   string
	// CNIDataDir is the CNI plugin's data directory, whose pod records
	// the anti-spoofing reconcile reads ("": no reconcile).
	CNIDataDir string
	IPMasq     bool
	// NetworkPolicy turns the enforcement of network policies on.
	NetworkPolicy bool
	// PolicyLogDrops, when above 0, logs the packets network policy
	// drops, at most this many lines a second.
	PolicyLogDrops int
	HTTPAddr       string
	ResyncInterval time.Duration
	LeaseTTL       time.Duration
	LogLevel       string
	LogFormat      string

	// Backend devices and WireGuard node settings.
	VXLANDevice       string
	WireGuardDevice   string
	WireGuardMode     string
	WireGuardPSKFile  string
	WireGuardOffloads bool

	// MemoryLimit is the soft Go memory limit in bytes (0: none). It is
	// not applied when GOMEMLIMIT is set in the environment.
	MemoryLimit int64

	// Gossip (memberlist). An empty GossipBind turns gossip off.
	GossipBind      string
	GossipAdvertise string
	GossipJoin      []string
	GossipKeyFile   string
	// GossipEncryption is on (default), send, accept or off. Without a
	// key file, the key is the cluster's key kept in the store.
	GossipEncryption string
	// GossipAllowedCIDRs, when set, are the only source ranges gossip is
	// accepted from.
	GossipAllowedCIDRs []netip.Prefix
	// GossipMaxMembers caps the gossip members the store does not name.
	GossipMaxMembers       int
	GossipProbeInterval    time.Duration
	GossipProbeTimeout     time.Duration
	GossipSuspicionMult    int
	GossipInterval         time.Duration
	GossipPushPullInterval time.Duration

	// Kube holds the Kubernetes-mode flags (--kube-subnet-mgr).
	Kube KubeConfig

	// Log receives all of the daemon's logs; nil discards them.
	Log logrus.FieldLogger
	// Reload, when set, asks the daemon to re-read its key files (main
	// delivers SIGHUP here).
	Reload <-chan os.Signal

	// bridgeSysctlDir is where br_netfilter's sysctls are read
	// (default [defaultBridgeSysctlDir]; the tests point it elsewhere).
	bridgeSysctlDir string
}

// EnvName returns the environment variable that sets flag name
// ("etcd-endpoints" → "WEFTD_ETCD_ENDPOINTS").
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// NewFlagSet returns weftd's flag set, bound to the returned Config, with
// every default filled in. Parse it with [ParseFlags] to honour the
// WEFTD_* environment variables. Each flag's usage names its variable.
func NewFlagSet(name string) (*flag.FlagSet, *Config) {
	c := &Config{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	str := func(p *string, name, def, usage string) {
		fs.StringVar(p, name, def, usage+" (env "+EnvName(name)+")")
	}
	dur := func(p *time.Duration, name string, def time.Duration, usage string) {
		fs.DurationVar(p, name, def, usage+" (env "+EnvName(name)+")")
	}
	boolean := func(p *bool, name string, def bool, usage string) {
		fs.BoolVar(p, name, def, usage+" (env "+EnvName(name)+")")
	}
	value := func(v flag.Value, name, usage string) {
		fs.Var(v, name, usage+" (env "+EnvName(name)+")")
	}

	c.EtcdEndpoints = []string{DefaultEtcdEndpoints}
	value((*listValue)(&c.EtcdEndpoints), "etcd-endpoints", "comma-separated etcd endpoints")
	str(&c.EtcdPrefix, "etcd-prefix", DefaultEtcdPrefix, "etcd key prefix of the network config and leases")
	str(&c.EtcdCAFile, "etcd-cafile", "", "CA certificate file to verify etcd's certificate (TLS)")
	str(&c.EtcdCertFile, "etcd-certfile", "", "client certificate file for etcd (mutual TLS)")
	str(&c.EtcdKeyFile, "etcd-keyfile", "", "client key file for etcd (mutual TLS)")
	str(&c.EtcdUsername, "etcd-username", "", "etcd user name (authentication)")
	str(&c.EtcdPassword, "etcd-password", "", "etcd password (authentication)")

	str(&c.NodeName, "node-name", "", "this node's name (default: the hostname)")
	str(&c.Iface, "iface", "", "underlay interface used for tunnels (default: the interface of --public-ip, else of the default route)")
	value((*addrValue)(&c.PublicIP), "public-ip", "this node's underlay address published to peers (default: the first address of --iface)")
	value((*addrValue)(&c.PublicIPv6), "public-ipv6", "this node's IPv6 underlay address when it has both families (default: the first global IPv6 address of --iface, if any)")
	str(&c.SubnetFile, "subnet-file", subnet.DefaultSubnetFile, "where to write the subnet file the CNI plugin reads")
	str(&c.StateDir, "state-dir", DefaultStateDir, "directory for node ID, lease, last good config and peer snapshot (created 0700)")
	str(&c.CNIDataDir, "cni-data-dir", DefaultCNIDataDir, "the CNI plugin's dataDir: the pod records there drive the anti-spoofing entries weftd repairs on every resync (empty: off)")
	boolean(&c.IPMasq, "ip-masq", true, "masquerade pod traffic leaving the cluster network (nftables table 'weft')")
	boolean(&c.NetworkPolicy, "network-policy", true, "enforce the network policies (etcd mode: kept in etcd with weftctl policy; Kubernetes mode: the cluster's NetworkPolicies) in nftables table 'weft-policy'; false removes the table and reports policy as not enforced")
	fs.IntVar(&c.PolicyLogDrops, "policy-log-drops", 0, "log the packets network policy drops, at most this many lines a second (0: off; NFLOG group "+strconv.Itoa(DropLogGroup)+" in weftd's network namespace) (env "+EnvName("policy-log-drops")+")")
	str(&c.HTTPAddr, "http-addr", DefaultHTTPAddr, "address of /healthz, /readyz, /metrics and /status (empty: off)")
	dur(&c.ResyncInterval, "resync-interval", DefaultResyncInterval, "period of the full reconcile that repairs drift")
	dur(&c.LeaseTTL, "lease-ttl", DefaultLeaseTTL, "TTL of this node's etcd lease (kept alive while weftd runs)")
	str(&c.LogLevel, "log-level", "info", "log level: panic, fatal, error, warn, info, debug or trace")
	str(&c.LogFormat, "log-format", "text", "log format: text or json")

	str(&c.VXLANDevice, "vxlan-device", "", "VXLAN device name (default: weft.<VNI>)")
	str(&c.WireGuardDevice, "wireguard-device", DefaultWireGuardName, "WireGuard device name (unique per node on one host)")
	str(&c.WireGuardMode, "wireguard-mode", "auto", "WireGuard implementation: auto, kernel or userspace")
	str(&c.WireGuardPSKFile, "wireguard-psk-file", "", "file (0600) with the cluster's WireGuard pre-shared key (optional)")
	boolean(&c.WireGuardOffloads, "wireguard-offloads", true, "use TUN offloads (TSO/GSO) with userspace WireGuard; turn off for kernels that reject them")

	c.MemoryLimit = DefaultMemoryLimit
	value((*byteSize)(&c.MemoryLimit), "memory-limit", "soft Go memory limit, e.g. 128MiB or 1GiB (0: none; ignored when GOMEMLIMIT is set)")

	str(&c.GossipBind, "gossip-bind", DefaultGossipBind, "gossip (memberlist) bind address host:port (empty: gossip off)")
	str(&c.GossipAdvertise, "gossip-advertise", "", "gossip address host:port advertised to peers (default: --public-ip with the bind port)")
	value((*listValue)(&c.GossipJoin), "gossip-join", "comma-separated gossip seeds host:port (optional: lease records name every member)")
	str(&c.GossipKeyFile, "gossip-key-file", "", "file (0600) of base64 gossip keys, one a line; the first encrypts (default: the cluster's key kept in etcd, created by the first node)")
	str(&c.GossipEncryption, "gossip-encryption", DefaultGossipEncryption, "gossip encryption: on, send (step 2 of a switch to encryption), accept (step 1), or off (unauthenticated: any host that reaches the gossip port can join)")
	value((*prefixList)(&c.GossipAllowedCIDRs), "gossip-allowed-cidrs", "comma-separated source ranges gossip is accepted from (default: any)")
	fs.IntVar(&c.GossipMaxMembers, "gossip-max-members", membership.DefaultMaxMembers, "most gossip members the store does not name; new names beyond are refused (env "+EnvName("gossip-max-members")+")")
	dur(&c.GossipProbeInterval, "gossip-probe-interval", 250*time.Millisecond, "gossip failure-detection probe interval")
	dur(&c.GossipProbeTimeout, "gossip-probe-timeout", 100*time.Millisecond, "gossip probe timeout")
	fs.IntVar(&c.GossipSuspicionMult, "gossip-suspicion-mult", 3, "gossip suspicion multiplier (env "+EnvName("gossip-suspicion-mult")+")")
	dur(&c.GossipInterval, "gossip-interval", 50*time.Millisecond, "gossip interval")
	dur(&c.GossipPushPullInterval, "gossip-pushpull-interval", 10*time.Second, "gossip full state sync interval")
	addKubeFlags(fs, &c.Kube)
	return fs, c
}

// ParseFlags applies the WEFTD_* environment variables (looked up with
// lookupEnv; os.LookupEnv when nil) to fs and then parses args, so the
// command line wins over the environment. An invalid environment value is
// an error that names the variable.
func ParseFlags(fs *flag.FlagSet, args []string, lookupEnv func(string) (string, bool)) error {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		v, ok := lookupEnv(EnvName(f.Name))
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, err))
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	return nil
}

// Validate checks c and reports every problem it finds. It does not look
// at the kernel (the underlay interface is resolved by Run).
func (c *Config) Validate() error {
	var p problems
	c.validateEtcd(p.add)
	c.validateNode(p.add)
	c.validateLocal(p.add)
	c.validateGossip(p.add)
	c.validateKube(p.add)
	return errors.Join(p...)
}

// problems collects what Validate finds, in order.
type problems []error

func (p *problems) add(format string, a ...any) { *p = append(*p, fmt.Errorf(format, a...)) }

// validateEtcd checks the flags that say how to reach etcd.
func (c *Config) validateEtcd(bad func(format string, a ...any)) {
	if len(c.EtcdEndpoints) == 0 {
		bad("--etcd-endpoints: at least one endpoint is needed")
	}
	for _, e := range c.EtcdEndpoints {
		u, err := url.Parse(e)
		if err != nil || u.Scheme == "" || (u.Host == "" && u.Path == "") {
			bad("--etcd-endpoints: %q is not a URL like http://127.0.0.1:2379", e)
			continue
		}
		switch u.Scheme {
		case "http", "https", "unix", "unixs":
		default:
			bad("--etcd-endpoints: %q: scheme must be http, https, unix or unixs", e)
		}
	}
	if !strings.HasPrefix(c.EtcdPrefix, "/") || len(c.EtcdPrefix) < 2 || strings.HasSuffix(c.EtcdPrefix, "/") {
		bad("--etcd-prefix: %q must start with / and not end with /", c.EtcdPrefix)
	}
	if (c.EtcdCertFile == "") != (c.EtcdKeyFile == "") {
		bad("--etcd-certfile and --etcd-keyfile must be given together")
	}
	if (c.EtcdUsername == "") != (c.EtcdPassword == "") {
		bad("--etcd-username and --etcd-password must be given together")
	}
	cc := c.etcdClientConfig()
	if err := cc.CheckTransport(); err != nil {
		bad("--etcd-endpoints: %w", err)
	}
}

// etcdClientConfig returns how the flags say to reach etcd.
func (c *Config) etcdClientConfig() subnetetcd.ClientConfig {
	return subnetetcd.ClientConfig{
		Endpoints:   c.EtcdEndpoints,
		CAFile:      c.EtcdCAFile,
		CertFile:    c.EtcdCertFile,
		KeyFile:     c.EtcdKeyFile,
		Username:    c.EtcdUsername,
		Password:    c.EtcdPassword,
		DialTimeout: storeCallTimeout,
	}
}

// validateNode checks the node's name and underlay addresses.
func (c *Config) validateNode(bad func(format string, a ...any)) {
	if c.NodeName != "" && !validNodeName(c.NodeName) {
		bad("--node-name: %q: use letters, digits, '-', '_' and '.' (at most 253)", c.NodeName)
	}
	if c.PublicIP.IsValid() && (c.PublicIP.IsUnspecified() || c.PublicIP.IsMulticast() || c.PublicIP.IsLoopback() || c.PublicIP.Zone() != "") {
		bad("--public-ip: %s cannot be a node's underlay address", c.PublicIP)
	}
	if c.PublicIPv6.IsValid() && (!c.PublicIPv6.Is6() || c.PublicIPv6.Is4In6() || c.PublicIPv6.IsUnspecified() || c.PublicIPv6.IsMulticast() || c.PublicIPv6.IsLoopback() || c.PublicIPv6.IsLinkLocalUnicast()) {
		bad("--public-ipv6: %s is not a usable global IPv6 address", c.PublicIPv6)
	}
	if c.PublicIP.Is6() && c.PublicIPv6.IsValid() && c.PublicIP != c.PublicIPv6 {
		bad("--public-ipv6 %s: --public-ip %s is already IPv6", c.PublicIPv6, c.PublicIP)
	}
}

// validateLocal checks the node's files, endpoints, timings, logging,
// device names and memory limit.
func (c *Config) validateLocal(bad func(format string, a ...any)) {
	if c.SubnetFile == "" {
		bad("--subnet-file must not be empty")
	}
	if c.StateDir == "" {
		bad("--state-dir must not be empty")
	}
	if c.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			bad("--http-addr: %q: %v", c.HTTPAddr, err)
		}
	}
	if c.ResyncInterval < 100*time.Millisecond || c.ResyncInterval > 10*time.Minute {
		bad("--resync-interval: %s is outside 100ms..10m", c.ResyncInterval)
	}
	if c.LeaseTTL < 10*time.Second {
		bad("--lease-ttl: %s is below 10s", c.LeaseTTL)
	}
	if _, err := logrus.ParseLevel(c.LogLevel); err != nil {
		bad("--log-level: %q is not one of panic, fatal, error, warn, info, debug, trace", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("--log-format: %q is not text or json", c.LogFormat)
	}
	if c.PolicyLogDrops < 0 || c.PolicyLogDrops > maxPolicyLogDrops {
		bad("--policy-log-drops: %d is outside 0..%d (lines a second; 0 is off)", c.PolicyLogDrops, maxPolicyLogDrops)
	}
	if c.VXLANDevice != "" && backend.ValidIfName(c.VXLANDevice) != nil {
		bad("--vxlan-device: %q is not a valid interface name (1-15 characters, no '/' or spaces)", c.VXLANDevice)
	}
	if backend.ValidIfName(c.WireGuardDevice) != nil {
		bad("--wireguard-device: %q is not a valid interface name (1-15 characters, no '/' or spaces)", c.WireGuardDevice)
	}
	switch c.WireGuardMode {
	case "auto", "kernel", "userspace":
	default:
		bad("--wireguard-mode: %q is not auto, kernel or userspace", c.WireGuardMode)
	}
	if c.MemoryLimit < 0 {
		bad("--memory-limit must not be negative")
	} else if c.MemoryLimit != 0 && c.MemoryLimit < 16<<20 {
		bad("--memory-limit: %d bytes is below 16MiB", c.MemoryLimit)
	}
}

// validateGossip checks the gossip flags (when gossip is on).
func (c *Config) validateGossip(bad func(format string, a ...any)) {
	if c.GossipBind == "" {
		return
	}
	if _, _, err := splitPort(c.GossipBind); err != nil {
		bad("--gossip-bind: %v", err)
	}
	if c.GossipAdvertise != "" {
		if h, _, err := splitPort(c.GossipAdvertise); err != nil {
			bad("--gossip-advertise: %v", err)
		} else if h == "" {
			bad("--gossip-advertise: %q needs a host", c.GossipAdvertise)
		}
	}
	for _, j := range c.GossipJoin {
		if _, _, err := splitPort(j); err != nil {
			bad("--gossip-join: %v", err)
		}
	}
	if c.GossipProbeInterval <= 0 || c.GossipProbeTimeout <= 0 || c.GossipInterval <= 0 || c.GossipPushPullInterval <= 0 {
		bad("--gossip-*-interval and --gossip-probe-timeout must be positive")
	}
	if c.GossipProbeTimeout >= c.GossipProbeInterval {
		bad("--gossip-probe-timeout %s must be shorter than --gossip-probe-interval %s", c.GossipProbeTimeout, c.GossipProbeInterval)
	}
	if c.GossipSuspicionMult < 1 {
		bad("--gossip-suspicion-mult must be at least 1")
	}
	switch membership.Encryption(c.GossipEncryption) {
	case membership.EncryptionOn, membership.EncryptionSend, membership.EncryptionAccept:
	case membership.EncryptionOff:
		if c.GossipKeyFile != "" {
			bad("--gossip-encryption off with --gossip-key-file: drop one (a key is refused when encryption is off)")
		}
	default:
		bad("--gossip-encryption: %q is not on, send, accept or off", c.GossipEncryption)
	}
	if c.GossipMaxMembers < 1 {
		bad("--gossip-max-members must be at least 1")
	}
}

// splitPort splits host:port and checks the port.
func splitPort(hp string) (string, int, error) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port: %w", hp, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("%q: bad port %q", hp, p)
	}
	return h, n, nil
}

func validNodeName(s string) bool {
	if len(s) > 253 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}

// NewLogger builds the logrus logger described by --log-level and
// --log-format, writing to stderr.
func NewLogger(c *Config) (*logrus.Logger, error) {
	lvl, err := logrus.ParseLevel(c.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	l := logrus.New()
	l.SetOutput(os.Stderr)
	l.SetLevel(lvl)
	switch c.LogFormat {
	case "json":
		l.SetFormatter(&logrus.JSONFormatter{TimestampFormat: time.RFC3339Nano})
	case "text", "":
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: time.RFC3339Nano})
	default:
		return nil, fmt.Errorf("--log-format: %q is not text or json", c.LogFormat)
	}
	return l, nil
}

// listValue is a comma-separated list flag; setting it replaces the list.
type listValue []string

func (l *listValue) String() string { return strings.Join(*l, ",") }

func (l *listValue) Set(s string) error {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	*l = out
	return nil
}

// prefixList is a comma-separated list of CIDR prefixes; setting it
// replaces the list, "" empties it.
type prefixList []netip.Prefix

func (l *prefixList) String() string {
	var s []string
	for _, p := range *l {
		s = append(s, p.String())
	}
	return strings.Join(s, ",")
}

func (l *prefixList) Set(s string) error {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return fmt.Errorf("%q is not a CIDR prefix like 198.18.0.0/15", f)
		}
		out = append(out, p.Masked())
	}
	*l = out
	return nil
}

// addrValue is an IP address flag; "" clears it.
type addrValue netip.Addr

func (a *addrValue) String() string {
	if !(*netip.Addr)(a).IsValid() {
		return ""
	}
	return (*netip.Addr)(a).String()
}

func (a *addrValue) Set(s string) error {
	if s == "" {
		*a = addrValue{}
		return nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return fmt.Errorf("not an IP address")
	}
	*a = addrValue(ip.Unmap())
	return nil
}

// byteSize is a size flag: a number of bytes with an optional suffix
// (B, KiB, MiB, GiB, KB, MB, GB; k/K, m/M, g/G are read as binary).
type byteSize int64

func (b *byteSize) String() string {
	v := int64(*b)
	switch {
	case v == 0:
		return "0"
	case v%(1<<30) == 0:
		return strconv.FormatInt(v>>30, 10) + "GiB"
	case v%(1<<20) == 0:
		return strconv.FormatInt(v>>20, 10) + "MiB"
	case v%(1<<10) == 0:
		return strconv.FormatInt(v>>10, 10) + "KiB"
	}
	return strconv.FormatInt(v, 10)
}

func (b *byteSize) Set(s string) error {
	n, err := parseByteSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

func parseByteSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("%q is not a size like 128MiB", s)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	mult := map[string]int64{
		"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "kb": 1000,
		"m": 1 << 20, "mib": 1 << 20, "mb": 1000 * 1000,
		"g": 1 << 30, "gib": 1 << 30, "gb": 1000 * 1000 * 1000,
	}[strings.ToLower(strings.TrimSpace(s[i:]))]
	if mult == 0 {
		return 0, fmt.Errorf("%q: unknown unit %q (use B, KiB, MiB or GiB)", s, s[i:])
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}
