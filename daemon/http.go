// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weftnet/weft/subnet"
)

// Status is the JSON document GET /status returns: this node, every peer
// of the desired set, and the gossip members as this node sees them.
type Status struct {
	Node    NodeStatus     `json:"node"`
	Peers   []PeerStatus   `json:"peers"`
	Members []MemberStatus `json:"members"`
}

// NodeStatus describes this node.
type NodeStatus struct {
	Name string `json:"name"`
	// ID is the node's UUID from the state dir.
	ID string `json:"id"`
	// Subnet and IPv6Subnet are the leased pod subnets (zero until leased).
	Subnet      netip.Prefix `json:"subnet,omitzero"`
	IPv6Subnet  netip.Prefix `json:"ipv6Subnet,omitzero"`
	Network     netip.Prefix `json:"network,omitzero"`
	IPv6Network netip.Prefix `json:"ipv6Network,omitzero"`
	Iface       string       `json:"iface,omitempty"`
	PublicIP    netip.Addr   `json:"publicIP,omitzero"`
	PublicIPv6  netip.Addr   `json:"publicIPv6,omitzero"`
	GossipAddr  string       `json:"gossipAddr,omitempty"`
	// BackendType is vxlan, host-gw or wireguard; BackendData what this
	// node publishes; MTU the pod MTU.
	BackendType string             `json:"backendType,omitempty"`
	BackendData subnet.BackendData `json:"backendData,omitzero"`
	MTU         int                `json:"mtu,omitempty"`
	// Epoch and Version identify this node's published data.
	Epoch       int64     `json:"epoch,omitempty"`
	Version     uint64    `json:"version,omitempty"`
	LeaseExpiry time.Time `json:"leaseExpiry,omitzero"`
	// Ready is what /readyz answers; NotReady says why not.
	Ready    bool   `json:"ready"`
	NotReady string `json:"notReady,omitempty"`
	// Complete is true once the peer view is complete (etcd list or
	// persisted snapshot): until then reconciles only add.
	Complete      bool `json:"complete"`
	EtcdReachable bool `json:"etcdReachable"`
	// ConfigError is why the last network config seen in etcd was
	// rejected (the last good one stays in force).
	ConfigError string `json:"configError,omitempty"`
	// PendingRestart lists config changes that need a restart of weftd
	// on every node.
	PendingRestart []string `json:"pendingRestart,omitempty"`
	// ForwardingProblem is set when IP forwarding could not be enabled.
	ForwardingProblem string `json:"forwardingProblem,omitempty"`
	// MasqueradeProblem is set when the masquerade rules could not be
	// installed or removed; ForwardDropWarning when another nftables table
	// drops forwarded traffic.
	MasqueradeProblem  string    `json:"masqueradeProblem,omitempty"`
	ForwardDropWarning string    `json:"forwardDropWarning,omitempty"`
	LastReconcile      time.Time `json:"lastReconcile,omitzero"`
	ReconcileError     string    `json:"reconcileError,omitempty"`
}

// PeerStatus describes one peer of the desired set.
type PeerStatus struct {
	Name        string             `json:"name"`
	Subnet      netip.Prefix       `json:"subnet,omitzero"`
	IPv6Subnet  netip.Prefix       `json:"ipv6Subnet,omitzero"`
	PublicIP    netip.Addr         `json:"publicIP,omitzero"`
	PublicIPv6  netip.Addr         `json:"publicIPv6,omitzero"`
	BackendData subnet.BackendData `json:"backendData,omitzero"`
	Epoch       int64              `json:"epoch"`
	Version     uint64             `json:"version"`
	// State is the gossip state (alive, suspect, dead, left, or unknown
	// when gossip has not reported the peer) and Since when it changed.
	State string    `json:"state"`
	Since time.Time `json:"since,omitzero"`
	// Source is where the data came from: etcd or gossip.
	Source string `json:"source"`
	// Provisional is true for data from gossip that etcd has not
	// confirmed yet.
	Provisional bool `json:"provisional,omitempty"`
	// Problem is why the backend cannot serve this peer, if it cannot.
	Problem string `json:"problem,omitempty"`
}

// MemberStatus is a gossip member as this node sees it.
type MemberStatus struct {
	Name       string       `json:"name"`
	Addr       string       `json:"addr"`
	State      string       `json:"state"`
	Since      time.Time    `json:"since,omitzero"`
	Subnet     netip.Prefix `json:"subnet,omitzero"`
	IPv6Subnet netip.Prefix `json:"ipv6Subnet,omitzero"`
	PublicIP   netip.Addr   `json:"publicIP,omitzero"`
}

// listenHTTP opens the HTTP listener (so that a busy port fails Run at
// once rather than in a goroutine).
func listenHTTP(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on --http-addr %s: %w", addr, err)
	}
	return ln, nil
}

// serveHTTP serves the daemon's endpoints on ln until ctx is done.
func (d *daemon) serveHTTP(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", d.handleHealthz)
	mux.HandleFunc("GET /readyz", d.handleReadyz)
	mux.HandleFunc("GET /status", d.handleStatus)
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-errc
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("http server: %w", err)
	}
}

func (d *daemon) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	if err := d.health(); err != nil {
		http.Error(w, "unhealthy: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (d *daemon) handleReadyz(w http.ResponseWriter, _ *http.Request) {
	if reason := d.notReady(); reason != "" {
		http.Error(w, "not ready: "+reason, http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

func (d *daemon) handleStatus(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(d.status())
}
