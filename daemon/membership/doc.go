// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package membership is weftd's gossip layer, built on
// hashicorp/memberlist. Every weftd runs one member named after its node;
// the member's metadata ([Meta]) carries the node's subnets, public
// addresses, backend data, lease epoch and data version, and memberlist's
// failure detector tells within about a second when a node stops
// answering.
//
// Gossip never decides who owns a subnet: etcd does. [Merge] combines the
// etcd lease view with what gossip reports, by the rules of DESIGN.md:
//
//   - a lease's epoch is its key's etcd CreateRevision; etcd alone creates
//     and ends epochs;
//   - within one epoch the higher data version wins, from etcd or gossip;
//   - gossip data from an older epoch than etcd's is ignored;
//   - gossip data from a newer epoch, or for a subnet etcd's view does not
//     hold (etcd down, watch lagging), is taken provisionally until the
//     next relist;
//   - a dead member keeps its routes; only an etcd delete or a newer epoch
//     removes a peer.
//
// [Membership] runs the member: New starts nothing, Run creates the
// memberlist, joins the seeds, keeps re-joining known addresses of members
// that are not alive (so partitions longer than memberlist's
// GossipToTheDeadTime heal), watches the gossip key file, and leaves the
// cluster when its context ends.
//
// Member states and how they are observed:
//
//	         join / update / ping ack
//	  ┌──────────────────────────────────┐
//	  ▼                                  │
//	alive ──probe failed──► suspect ─────┘
//	  │                       │
//	  │        suspicion timed out (memberlist: dead)
//	  ├───────────────────────┴──► dead ──rejoin/join──► alive
//	  └──leave message──────────► left ──rejoin/join──► alive
//
// memberlist reports joins, leaves and metadata updates through its
// EventDelegate. It has no event for suspicion, reading its node table
// from outside is a data race, and the Node.State its callbacks receive is
// never set (memberlist keeps the state in a field that shadows it). So
// suspicion is taken from this node's own failure detector: memberlist's
// "suspect has failed" log line for a probe of ours that got no ack; an
// answered probe (PingDelegate) or a join or update clears it. A suspicion
// raised by another member and refuted before we probe that node goes
// unseen here. A leave event does not say whether the member left or was
// declared dead: a member that stops cleanly first announces a leaving
// flag in its metadata, which tells.
package membership
