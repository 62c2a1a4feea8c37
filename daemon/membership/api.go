// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package membership

// API CONTRACT (scaffolding written before the implementation; the
// membership implementer owns this file and may extend it, but the daemon
// codes against these names):
//
//	type Meta struct {            // JSON in memberlist NodeMeta, ≤ 512 bytes (checked, clear error)
//	    NodeID     string
//	    BootID     string         // random per process start: tells restarts apart
//	    Subnet     netip.Prefix
//	    IPv6Subnet netip.Prefix
//	    PublicIP   netip.Addr
//	    PublicIPv6 netip.Addr
//	    Data       subnet.BackendData
//	    Epoch      int64          // lease key CreateRevision
//	    Version    uint64         // node data version
//	}
//
//	type State string             // "alive", "suspect", "dead", "left"
//
//	type Member struct {
//	    Name  string              // stable node identity (node name)
//	    Addr  string              // gossip host:port
//	    Meta  Meta                // last metadata seen (zero if none/undecodable)
//	    State State
//	    Since time.Time           // when State last changed
//	}
//
//	type Config struct {
//	    Name          string
//	    BindAddr      string      // default "0.0.0.0:7950"
//	    AdvertiseAddr string      // host:port, optional
//	    Join          []string    // seeds
//	    KeyFile       string      // optional gossip key file
//	    ProbeInterval, ProbeTimeout, GossipInterval, PushPullInterval time.Duration
//	    SuspicionMult int
//	    Log           logrus.FieldLogger
//	    OnChange      func()      // called (never concurrently) when any member's state or meta changes
//	}
//
//	func New(cfg Config) (*Membership, error)   // starts nothing
//	func (m *Membership) Run(ctx context.Context) error  // creates memberlist, joins, rejoin loop, key-file watch; blocks; leaves on ctx done
//	func (m *Membership) SetMeta(meta Meta) error        // updates local meta and pushes it (UpdateNode)
//	func (m *Membership) Join(addrs []string)            // adds seeds (e.g. gossip addrs from lease records); non-blocking
//	func (m *Membership) Members() []Member              // all known members except self, sorted by name
//	func (m *Membership) ReloadKeys() error              // re-read KeyFile (SIGHUP)
//	func (m *Membership) LocalAddr() string              // advertised host:port
//
//	// Merge builds the desired peer set from the etcd view and gossip (DESIGN.md rules).
//	func Merge(self string, view subnet.View, members []Member) []PeerView
//	type PeerView struct { backend.Peer; State State; Since time.Time; Source string /* "etcd" or "gossip" */; Provisional bool }
