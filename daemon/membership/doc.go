// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

// Package membership is weftd's gossip layer, built on
// hashicorp/memberlist. Every weftd runs one member named after its node;
// the member's metadata ([Meta]) carries the node's subnets, public
// addresses, backend data, lease epoch and data version, and memberlist's
// failure detector tells within about a second when a node stops
// answering.
//
// Gossip never decides who owns a subnet: the store (etcd) does. [Merge]
// combines the store's lease view with what gossip reports:
//
//   - a lease's epoch is its key's etcd CreateRevision; etcd alone creates
//     and ends epochs;
//   - gossip updates a lease's data only from the same node (same name and
//     same non-empty node ID), within the lease's epoch, with a higher
//     version;
//   - any other gossip claim is used provisionally only while the store is
//     unreachable, from a live member, for a subnet of the network at the
//     configured length that overlaps nobody else's; it lapses with the
//     first listing once the store is back;
//   - a dead member keeps its routes; only an etcd delete or a newer epoch
//     removes a peer.
//
// [Membership] runs the member: New starts nothing, Run creates the
// memberlist, joins the seeds, keeps re-joining the seeds and the addresses
// given to Join (from the store's records) where no live member answers (so
// partitions longer than memberlist's GossipToTheDeadTime heal), watches
// the gossip key file, and leaves the cluster when its context ends. State
// that other members can grow is bounded: the member table (Config.MaxMembers,
// [Membership.Prune]), the rejoin set (never an address a member only
// advertised), and what the metadata decoder accepts.
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
