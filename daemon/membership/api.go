// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package membership

import (
	"net/netip"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/subnet"
)

// MaxMetaSize is the largest encoded [Meta] memberlist accepts (its
// MetaMaxSize). [Membership.SetMeta] refuses larger metadata with
// [ErrMetaTooLarge] instead of letting memberlist panic.
const MaxMetaSize = 512

// Meta is the node metadata a member gossips, encoded as JSON in
// memberlist's node meta (at most [MaxMetaSize] bytes).
type Meta struct {
	// NodeID is the node's UUID (the lease record's NodeID).
	NodeID string `json:"id,omitempty"`
	// BootID is random per process start: it tells a restarted node from
	// the one before. SetMeta fills it in.
	BootID string `json:"boot,omitempty"`
	// Subnet and IPv6Subnet are the node's leased pod subnets.
	Subnet     netip.Prefix `json:"subnet,omitzero"`
	IPv6Subnet netip.Prefix `json:"subnet6,omitzero"`
	// PublicIP and PublicIPv6 are the node's underlay addresses.
	PublicIP   netip.Addr `json:"ip,omitzero"`
	PublicIPv6 netip.Addr `json:"ip6,omitzero"`
	// Data is the node's backend data.
	Data subnet.BackendData `json:"data,omitzero"`
	// Epoch is the CreateRevision of the node's lease key in etcd.
	Epoch int64 `json:"epoch,omitempty"`
	// Version is the node's data version.
	Version uint64 `json:"version,omitempty"`
}

// Primary returns the subnet that names the lease the metadata belongs to:
// the IPv4 subnet, or the IPv6 one for an IPv6-only node (as
// [subnet.Lease.Primary]).
func (m *Meta) Primary() netip.Prefix {
	if m.Subnet.IsValid() {
		return m.Subnet
	}
	return m.IPv6Subnet
}

// State is a member's gossip state.
type State string

// Member states. StateUnknown is used by [Merge] for a peer etcd knows
// that gossip has not (yet) reported.
const (
	StateAlive   State = "alive"
	StateSuspect State = "suspect"
	StateDead    State = "dead"
	StateLeft    State = "left"
	StateUnknown State = "unknown"
)

// Member is another node as this node's gossip sees it.
type Member struct {
	// Name is the member name: the stable node identity (node name).
	Name string
	// Addr is the member's gossip address, host:port.
	Addr string
	// Meta is the last metadata seen (zero if none or undecodable).
	Meta Meta
	// State is the member's gossip state and Since when it last changed.
	State State
	Since time.Time
}

// Defaults of [Config].
const (
	DefaultBindAddr            = "0.0.0.0:7950"
	DefaultPort                = 7950
	DefaultProbeInterval       = 250 * time.Millisecond
	DefaultProbeTimeout        = 100 * time.Millisecond
	DefaultSuspicionMult       = 3
	DefaultGossipInterval      = 50 * time.Millisecond
	DefaultPushPullInterval    = 10 * time.Second
	DefaultGossipToTheDeadTime = 30 * time.Second
	DefaultDeadNodeReclaimTime = 500 * time.Millisecond
	DefaultRejoinInterval      = 2 * time.Second
	DefaultKeyCheckInterval    = 3 * time.Second
	// DefaultMaxMembers caps the member table (see Config.MaxMembers):
	// the largest /16 network of /24 subnets has 256 nodes, a /8 of /24
	// 65536; 4096 members of ~1 KiB each keep the table near 4 MiB.
	DefaultMaxMembers = 4096
	// DefaultForgetAfter is how long a dead or left member that the
	// authority's view does not name stays in the table.
	DefaultForgetAfter = 5 * time.Minute
)

// Encryption is how a member treats gossip encryption.
type Encryption string

// Encryption modes. The three middle steps of a switch from an
// unencrypted cluster to an encrypted one are done on every member, one
// member at a time, each step finished everywhere before the next:
// EncryptionAccept, then EncryptionSend, then EncryptionOn. No two members
// ever stop understanding each other.
const (
	// EncryptionAuto (the zero value) encrypts when keys are given
	// (EncryptionOn) and does not otherwise (EncryptionOff).
	EncryptionAuto Encryption = ""
	// EncryptionOff sends and accepts only unencrypted gossip. It must
	// be chosen explicitly to run without keys; keys are then refused.
	EncryptionOff Encryption = "off"
	// EncryptionAccept needs keys: it accepts encrypted and unencrypted
	// gossip and sends unencrypted gossip (step 1 of a switch).
	EncryptionAccept Encryption = "accept"
	// EncryptionSend needs keys: it accepts both and sends encrypted
	// gossip (step 2 of a switch).
	EncryptionSend Encryption = "send"
	// EncryptionOn needs keys: it sends and accepts only gossip encrypted
	// with one of them.
	EncryptionOn Encryption = "on"
)

// Config configures a [Membership]. Zero durations and counts take the
// defaults above.
type Config struct {
	// Name is the member name: the node name, stable across restarts.
	Name string
	// BindAddr is host:port to listen on (UDP and TCP), default
	// "0.0.0.0:7950". Port 0 picks a free port (tests).
	BindAddr string
	// AdvertiseAddr is host:port announced to others, optional: by default
	// memberlist advertises the bind address, or a private address of the
	// host when bound to 0.0.0.0.
	AdvertiseAddr string
	// Join holds seed addresses (host:port, or host with the default
	// port) joined at start and re-joined whenever no live member answers
	// there.
	Join []string
	// KeyFile is the gossip key file: one base64 key (16, 24 or 32 bytes)
	// per line, the first encrypts, all decrypt. Mode must be 0600 or
	// stricter. It is watched for changes (see [Membership.ReloadKeys]).
	KeyFile string
	// Keys are gossip keys given directly (for example read from the
	// store), 16, 24 or 32 bytes each: the first encrypts, all decrypt.
	// Only one of KeyFile and Keys may be set. [Membership.SetKeys]
	// replaces them while running.
	Keys [][]byte
	// Encryption is the encryption mode (see [Encryption]). The zero
	// value encrypts when KeyFile or Keys is set.
	Encryption Encryption

	// MaxMembers caps the member table: at most MaxMembers members that
	// the authority's view does not name (see [Membership.Prune]) are
	// admitted; a new name beyond that is refused before memberlist
	// records it. Members the view names are always admitted. Default
	// [DefaultMaxMembers].
	MaxMembers int
	// ForgetAfter is how long a member the view does not name stays in
	// the table once it is dead or left (at least GossipToTheDeadTime).
	// Default [DefaultForgetAfter].
	ForgetAfter time.Duration
	// AllowedCIDRs, when not empty, are the only source ranges gossip is
	// accepted from (packets, streams and advertised member addresses):
	// memberlist's CIDRsAllowed.
	AllowedCIDRs []netip.Prefix

	// Failure detection and dissemination (see docs/membership.md).
	ProbeInterval    time.Duration
	ProbeTimeout     time.Duration
	GossipInterval   time.Duration
	PushPullInterval time.Duration
	SuspicionMult    int
	// GossipToTheDeadTime is how long memberlist keeps gossiping to a dead
	// member (memberlist's default 30 s). Tests lower it.
	GossipToTheDeadTime time.Duration
	// DeadNodeReclaimTime is how long after a member's death its name may
	// come back from another address (a restart on a new port).
	DeadNodeReclaimTime time.Duration
	// RejoinInterval is how often the rejoin loop runs.
	RejoinInterval time.Duration
	// KeyCheckInterval is how often KeyFile is checked for changes.
	KeyCheckInterval time.Duration

	// Log receives the membership's and memberlist's log lines.
	Log logrus.FieldLogger
	// OnChange is called when any member's state or metadata changes.
	// Calls never run concurrently, and come from a goroutine of Run
	// (never from inside memberlist), so OnChange may call Members.
	OnChange func()
}

// PeerView is one peer of the merged view: the backend peer plus where its
// data came from and its gossip state.
type PeerView struct {
	backend.Peer
	// State is the peer's gossip state (StateUnknown if gossip has not
	// reported it) and Since when it last changed.
	State State
	Since time.Time
	// Source is SourceEtcd when the peer's data is its lease record, or
	// SourceGossip when a member's metadata supplied it.
	Source string
	// Provisional is true when etcd's view does not (yet) confirm the
	// peer's epoch: the data came from gossip for a subnet etcd's view
	// does not hold, or holds at an older epoch. The next relist confirms
	// or drops it.
	Provisional bool
}

// Sources of a [PeerView]'s data.
const (
	SourceEtcd   = "etcd"
	SourceGossip = "gossip"
)
