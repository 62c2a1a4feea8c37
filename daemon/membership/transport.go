// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package membership

import (
	"context"
	"fmt"
	"log"
	"net"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// transport is memberlist's UDP/TCP transport whose TCP dials end when the
// transport shuts down, so that joins to unreachable addresses do not hold
// Run's return for memberlist's TCPTimeout.
type transport struct {
	*memberlist.NetTransport
	ctx    context.Context
	cancel context.CancelFunc
}

var _ memberlist.NodeAwareTransport = (*transport)(nil)

// newTransport listens on host:port (port 0: a free port, the same for UDP
// and TCP).
func newTransport(host string, port int, logger *log.Logger) (*transport, error) {
	cfg := &memberlist.NetTransportConfig{BindAddrs: []string{host}, BindPort: port, Logger: logger}
	tries := 1
	if port == 0 {
		// A free TCP port may be taken for UDP: retry as memberlist does.
		tries = 10
	}
	var err error
	for range tries {
		var nt *memberlist.NetTransport
		if nt, err = memberlist.NewNetTransport(cfg); err == nil {
			ctx, cancel := context.WithCancel(context.Background())
			return &transport{NetTransport: nt, ctx: ctx, cancel: cancel}, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("listen for gossip on %s: %w", net.JoinHostPort(host, fmt.Sprint(port)), err)
}

// DialTimeout implements memberlist.Transport.
func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	return d.DialContext(t.ctx, "tcp", addr)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport.
func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}

// Shutdown cancels dials in flight and closes the listeners.
func (t *transport) Shutdown() error {
	t.cancel()
	return t.NetTransport.Shutdown()
}
