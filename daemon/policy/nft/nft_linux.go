// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package nft

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	mnl "github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/cni/nftexpr"
	"github.com/weftnet/weft/daemon/policy"
)

// Table is the name of weft's policy table ("inet weft-policy"); the
// chains and sets are described in the package doc.
const Table = "weft-policy"

// Chain names in [Table].
const (
	ChainForward = "forward"
	ChainIngress = "ingress"
	ChainEgress  = "egress"
)

// Counter IDs of the rules that are not policy rules.
const (
	CounterEstablished = "established,related"
	CounterND          = "icmpv6 neighbour discovery"
)

// elementsPerMessage bounds one netlink message of set elements.
const elementsPerMessage = 512

func tableRef() *nftables.Table {
	return &nftables.Table{Name: Table, Family: nftables.TableFamilyINet}
}

// NewConn opens an nftables connection for [Apply], [Counters] and
// [Remove], with opts (such as nftables.WithNetNSFd). One transaction of a
// large table is one sendmsg of several megabytes and thousands of
// acknowledgements: the socket buffers are raised past net.core.wmem_max
// and rmem_max (SO_SNDBUFFORCE, SO_RCVBUFFORCE: weftd has CAP_NET_ADMIN),
// and acknowledgements come without the request echoed (NETLINK_CAP_ACK),
// so that neither the send (EMSGSIZE) nor the acknowledgements (ENOBUFS)
// overflow.
func NewConn(opts ...nftables.ConnOption) (*nftables.Conn, error) {
	opts = append(opts, nftables.WithSockOptions(func(c *mnl.Conn) error {
		if err := c.SetOption(mnl.CapAcknowledge, true); err != nil {
			return fmt.Errorf("set NETLINK_CAP_ACK: %w", err)
		}
		raw, err := c.SyscallConn()
		if err != nil {
			return fmt.Errorf("netlink socket: %w", err)
		}
		var serr error
		cerr := raw.Control(func(fd uintptr) {
			for _, o := range [][2]int{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}} {
				if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], socketBuffer); err != nil {
					// Without CAP_NET_ADMIN: as much as the sysctl allows.
					if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], socketBuffer); err != nil {
						serr = fmt.Errorf("set netlink socket buffer: %w", err)
					}
				}
			}
		})
		return errors.Join(cerr, serr)
	}))
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("open nftables connection: %w", err)
	}
	return c, nil
}

// socketBuffer bounds one transaction: about 60 MiB of messages (some
// 100,000 rules or a million set elements).
const socketBuffer = 64 << 20

// Apply makes the policy table in c's network namespace hold exactly st:
// the old table is deleted and the new one built in one netlink
// transaction, so no packet ever sees a half-built or missing table. It is
// level-triggered: whatever was changed by hand is gone after it returns.
// Apply may be called again at any time; calls must not overlap on one
// Conn. Use a Conn from [NewConn]: a large table overflows a default one.
func Apply(c *nftables.Conn, st *policy.State) error {
	t := tableRef()
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	sets := map[string]*nftables.Set{}
	for _, s := range st.Sets {
		set := &nftables.Set{Table: t, Name: s.Name, KeyType: nftables.TypeIPAddr, Comment: truncate(s.Comment)}
		if s.Family == policy.IPv6 {
			set.KeyType = nftables.TypeIP6Addr
		}
		if err := c.AddSet(set, nil); err != nil {
			return fmt.Errorf("add set %s: %w", s.Name, err)
		}
		for i := 0; i < len(s.Addrs); i += elementsPerMessage {
			var elems []nftables.SetElement
			for _, a := range s.Addrs[i:min(i+elementsPerMessage, len(s.Addrs))] {
				elems = append(elems, nftables.SetElement{Key: a.AsSlice()})
			}
			if err := c.SetAddElements(set, elems); err != nil {
				return fmt.Errorf("add elements to set %s: %w", s.Name, err)
			}
		}
		sets[s.Name] = set
	}
	accept := nftables.ChainPolicyAccept
	fwd := c.AddChain(&nftables.Chain{
		Name: ChainForward, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept,
	})
	eg := c.AddChain(&nftables.Chain{Name: ChainEgress, Table: t})
	in := c.AddChain(&nftables.Chain{Name: ChainIngress, Table: t})
	add := func(ch *nftables.Chain, id string, exprs []expr.Any) {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs, UserData: userdata.AppendString(nil, userdata.TypeComment, truncate(id))})
	}
	add(fwd, CounterEstablished, established())
	add(fwd, CounterND, neighbourDiscovery())
	add(fwd, "", []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: ChainEgress}})
	add(fwd, "", []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: ChainIngress}})
	for _, d := range []struct {
		ch       *nftables.Chain
		rules    []policy.Rule
		isEgress bool
		iso      [2]string
	}{{eg, st.Egress, true, [2]string{policy.EgressIsolated4, policy.EgressIsolated6}}, {in, st.Ingress, false, [2]string{policy.IngressIsolated4, policy.IngressIsolated6}}} {
		for _, r := range d.rules {
			exprs, err := ruleExprs(r, d.isEgress, sets)
			if err != nil {
				return err
			}
			add(d.ch, r.ID, exprs)
		}
		for i, f := range []policy.Family{policy.IPv4, policy.IPv6} {
			set, ok := sets[d.iso[i]]
			if !ok {
				return fmt.Errorf("state has no set %s", d.iso[i])
			}
			if st.DropLog.Group != 0 {
				add(d.ch, "", dropLogExprs(st.DropLog, f, d.isEgress, set))
			}
			exprs := append(nfproto(f), loadAddr(f, d.isEgress)...)
			exprs = append(exprs, lookup(set), &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})
			add(d.ch, DropCounter(d.isEgress, f), exprs)
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("install nftables table inet %s: %w", Table, err)
	}
	return nil
}

// DropCounter is the counter ID of the rule dropping what no rule allowed
// for isolated pods ("ingress default deny ipv4").
func DropCounter(egress bool, f policy.Family) string {
	d := "ingress"
	if egress {
		d = "egress"
	}
	return fmt.Sprintf("%s default deny ipv%d", d, f)
}

// Remove deletes the policy table if it exists.
func Remove(c *nftables.Conn) error {
	t := tableRef()
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("remove nftables table inet %s: %w", Table, err)
	}
	return nil
}

// Counter is one rule's packet and byte count.
type Counter struct {
	Packets, Bytes uint64
}

// Counters reads the counters of the table's rules, by rule ID (the [policy.Rule]
// IDs, [DropCounter] names, [CounterEstablished], [CounterND]). Counters
// restart at zero on every [Apply].
func Counters(c *nftables.Conn) (map[string]Counter, error) {
	t := tableRef()
	out := map[string]Counter{}
	for _, ch := range []string{ChainForward, ChainEgress, ChainIngress} {
		rules, err := c.GetRules(t, &nftables.Chain{Name: ch, Table: t})
		if err != nil {
			return nil, fmt.Errorf("list rules of chain %s: %w", ch, err)
		}
		for _, r := range rules {
			id, ok := userdata.GetString(r.UserData, userdata.TypeComment)
			if !ok || id == "" {
				continue
			}
			for _, e := range r.Exprs {
				if ctr, ok := e.(*expr.Counter); ok {
					prev := out[id]
					out[id] = Counter{Packets: prev.Packets + ctr.Packets, Bytes: prev.Bytes + ctr.Bytes}
				}
			}
		}
	}
	return out, nil
}

// ErrNotEnforced is wrapped by [CheckKernel] when the kernel does not pass
// bridged pod-to-pod packets through the inet forward hook: policy between
// pods on one node would not be enforced.
var ErrNotEnforced = errors.New("network policy not enforced")

// CheckKernel checks, in the calling thread's network namespace, that
// packets bridged between pods reach the inet forward hook (br_netfilter
// loaded and net.bridge.bridge-nf-call-iptables and -ip6tables set to 1).
// A nil error means policy is enforced for pods on one bridge too.
func CheckKernel() error {
	var errs []error
	for _, k := range []string{"bridge-nf-call-iptables", "bridge-nf-call-ip6tables"} {
		b, err := os.ReadFile("/proc/sys/net/bridge/" + k)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("%w between pods on one bridge: br_netfilter is not loaded (modprobe br_netfilter, then sysctl net.bridge.%s=1)", ErrNotEnforced, k)
		case err != nil:
			errs = append(errs, fmt.Errorf("%w between pods on one bridge: read net.bridge.%s: %w", ErrNotEnforced, k, err))
		case strings.TrimSpace(string(b)) != "1":
			errs = append(errs, fmt.Errorf("%w between pods on one bridge: net.bridge.%s is %s, want 1", ErrNotEnforced, k, strings.TrimSpace(string(b))))
		}
	}
	return errors.Join(errs...)
}

func truncate(s string) string {
	if len(s) > 127 {
		return s[:127]
	}
	return s
}

// Network-header offsets and lengths of the addresses.
func addrField(f policy.Family, src bool) (off, n uint32) {
	switch {
	case f == policy.IPv4 && src:
		return 12, 4
	case f == policy.IPv4:
		return 16, 4
	case src:
		return 8, 16
	}
	return 24, 16
}

func nfproto(f policy.Family) []expr.Any {
	p := byte(unix.NFPROTO_IPV4)
	if f == policy.IPv6 {
		p = unix.NFPROTO_IPV6
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

// loadAddr loads the pod end's address: the source for egress, the
// destination for ingress; with peer true, the other end's.
func loadAddr(f policy.Family, src bool) []expr.Any {
	off, n := addrField(f, src)
	return []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}}
}

func lookup(s *nftables.Set) expr.Any {
	return &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID}
}

// prefixMatch: the address in register 1 is (in) or is not in p.
func prefixMatch(p netip.Prefix, n uint32, in bool) []expr.Any {
	mask := make([]byte, n)
	for i := 0; i < p.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	op := expr.CmpOpEq
	if !in {
		op = expr.CmpOpNeq
	}
	return []expr.Any{
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: mask, Xor: make([]byte, n)},
		&expr.Cmp{Op: op, Register: 1, Data: p.Masked().Addr().AsSlice()},
	}
}

func ruleExprs(r policy.Rule, egress bool, sets map[string]*nftables.Set) ([]expr.Any, error) {
	set := func(name string) (*nftables.Set, error) {
		s, ok := sets[name]
		if !ok {
			return nil, fmt.Errorf("rule %s: no set %s", r.ID, name)
		}
		return s, nil
	}
	local, err := set(r.Local)
	if err != nil {
		return nil, err
	}
	exprs := nfproto(r.Family)
	exprs = append(exprs, loadAddr(r.Family, egress)...)
	exprs = append(exprs, lookup(local))
	if r.Peer != "" {
		peer, err := set(r.Peer)
		if err != nil {
			return nil, err
		}
		exprs = append(exprs, loadAddr(r.Family, !egress)...)
		exprs = append(exprs, lookup(peer))
	}
	if r.Block.IsValid() {
		_, n := addrField(r.Family, true)
		load := loadAddr(r.Family, !egress)
		exprs = append(exprs, load...)
		exprs = append(exprs, prefixMatch(r.Block, n, true)...)
		for _, e := range r.Except {
			exprs = append(exprs, load...)
			exprs = append(exprs, prefixMatch(e, n, false)...)
		}
	}
	if r.Proto != 0 {
		exprs = append(exprs,
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{r.Proto}})
	}
	if r.PortLo != 0 {
		exprs = append(exprs, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
		if r.PortLo == r.PortHi {
			exprs = append(exprs, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(r.PortLo)})
		} else {
			exprs = append(exprs, &expr.Range{Op: expr.CmpOpEq, Register: 1,
				FromData: binaryutil.BigEndian.PutUint16(r.PortLo), ToData: binaryutil.BigEndian.PutUint16(r.PortHi)})
		}
	}
	return append(exprs, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictReturn}), nil
}

// established: ct state established,related accept.
func established() []expr.Any {
	bits := expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}
}

// neighbourDiscovery: ICMPv6 neighbour discovery accept (package
// cni/nftexpr); without it an isolated pod could not resolve its
// neighbours over IPv6.
func neighbourDiscovery() []expr.Any {
	return nftexpr.NeighbourDiscovery(nfproto(policy.IPv6)...)
}
