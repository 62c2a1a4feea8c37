// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/e2e/namespace"
)

// NS is a named network namespace (a bind mount under /run/netns, as made
// by `ip netns add`).
type NS struct {
	// Name is the namespace's name (`ip netns exec <Name> ...`).
	Name string
}

// Path is the namespace's bind-mount path, as CNI_NETNS expects it.
func (n NS) Path() string { return namespace.Path(n.Name) }

// createNS makes a named namespace with its loopback up.
func createNS(name string) (NS, error) {
	h, err := namespace.Create(name)
	if err != nil {
		return NS{}, err
	}
	h.Close()
	return NS{Name: name}, nil
}

// deleteNS removes a named namespace; a missing one is not an error.
func deleteNS(name string) error { return namespace.Delete(name) }

// Exists reports whether the namespace's bind mount is present.
func (n NS) Exists() bool {
	_, err := os.Stat(n.Path())
	return err == nil
}

// Handle opens a netlink handle in the namespace. Close it when done.
func (n NS) Handle() (*netlink.Handle, error) {
	fd, err := namespace.Open(n.Name)
	if err != nil {
		return nil, err
	}
	defer fd.Close()
	h, err := netlink.NewHandleAt(fd)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", n.Name, err)
	}
	return h, nil
}

func (n NS) withHandle(fn func(h *netlink.Handle) error) error {
	h, err := n.Handle()
	if err != nil {
		return err
	}
	defer h.Close()
	return fn(h)
}

// Do runs fn on an OS thread switched into the namespace (see
// [namespace.Do]). Sockets created by fn stay in the namespace after fn
// returns and may be used from any goroutine. fn must not start goroutines
// that expect to be in the namespace.
func (n NS) Do(fn func() error) error { return namespace.DoNamed(n.Name, fn) }

// DialContext dials network/address from inside the namespace. It fits
// http.Transport.DialContext and grpc.WithContextDialer.
func (n NS) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// Sysctl writes value to /proc/sys/<key> (key with slashes, e.g.
// "net/ipv4/ip_forward") inside the namespace.
func (n NS) Sysctl(key, value string) error {
	return n.Do(func() error {
		return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644)
	})
}

// Command returns a command that runs argv inside the namespace with
// `ip netns exec`.
func (n NS) Command(ctx context.Context, argv ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name}, argv...)...)
}

// Run runs argv inside the namespace and returns its combined output.
func (n NS) Run(ctx context.Context, argv ...string) (string, error) {
	out, err := n.Command(ctx, argv...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %w: %s", strings.Join(argv, " "), n.Name, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
