// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/weftnet/weft/subnet/etcd/etcdtest"
)

// childEnv, when set to 1, makes the test binary act as weftd: it reads
// its flags from WEFTD_* and runs [Run] (the integration tests start it
// inside a network namespace, so that every socket and netlink call of
// the daemon stays there).
const childEnv = "WEFT_DAEMON_TEST_CHILD"

// bridgeSysctlDirEnv, in a child, replaces the directory of br_netfilter's
// sysctls (/proc/sys/net/bridge), so that a test can show weftd a kernel
// without br_netfilter.
const bridgeSysctlDirEnv = "WEFT_DAEMON_TEST_BRIDGE_SYSCTL_DIR"

// testEtcd is the embedded etcd of the privileged tests, or nil (not
// root, or WEFT_TEST_UNPRIVILEGED=1).
var testEtcd *etcdtest.Server

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(runChild())
	}
	if privileged() {
		e, err := startUnixEtcd()
		if err != nil {
			fmt.Fprintln(os.Stderr, "embedded etcd:", err)
			os.Exit(1)
		}
		testEtcd = e
	}
	code := m.Run()
	if testEtcd != nil {
		testEtcd.Stop()
		os.RemoveAll(filepath.Dir(testEtcd.Dir))
	}
	// The daemons run as child processes (which check themselves after
	// Run, see runChild); what runs in this process (etcd, its clients,
	// the tests' helpers) must be gone too.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// runChild is weftd's main, for the integration tests.
func runChild() int {
	fs, cfg := NewFlagSet("weftd-test")
	if err := ParseFlags(fs, nil, nil); err != nil {
		fmt.Fprintln(os.Stderr, "weftd-test:", err)
		return 2
	}
	log, err := NewLogger(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "weftd-test:", err)
		return 2
	}
	cfg.Log = log
	cfg.bridgeSysctlDir = os.Getenv(bridgeSysctlDirEnv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg.Reload = hup
	err = Run(ctx, cfg)
	// Goroutine-leak check: once Run has returned, no goroutine running
	// weft's code may remain. The parent test fails on the marker below.
	var leaked []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		leaked = weftGoroutines()
		if len(leaked) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if waited := 5*time.Second - time.Until(deadline); waited > 200*time.Millisecond && len(leaked) == 0 {
		fmt.Fprintf(os.Stderr, "goroutines of weft took %s to end after Run returned\n", waited.Round(time.Millisecond))
	}
	if len(leaked) > 0 {
		fmt.Fprintf(os.Stderr, "GOROUTINE LEAK: %d goroutines of weft outlived Run:\n%s\n", len(leaked), strings.Join(leaked, "\n\n"))
	}
	if err != nil {
		log.WithError(err).Error("weftd failed")
		return 1
	}
	return 0
}

// startUnixEtcd starts an embedded etcd serving clients on a unix socket
// in a new temporary directory. A unix socket is reachable from every
// network namespace, so a daemon inside a test namespace talks to this
// etcd without any link into the root namespace.
func startUnixEtcd() (*etcdtest.Server, error) {
	dir, err := os.MkdirTemp("", "weft-daemon-etcd-")
	if err != nil {
		return nil, err
	}
	s, err := etcdtest.New(etcdtest.Config{
		Dir:       filepath.Join(dir, "data"),
		ClientURL: "unix://" + filepath.Join(dir, "client.sock"),
		PeerURL:   "unix://" + filepath.Join(dir, "peer.sock"),
	})
	if err == nil {
		err = s.Start(context.Background())
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// weftGoroutines returns the stacks of goroutines, other than the calling
// one, that run weft's code or were started by it.
func weftGoroutines() []string {
	buf := make([]byte, 4<<20)
	all := strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n")
	var out []string
	for _, g := range all[1:] { // all[0] is the calling goroutine
		if strings.Contains(g, "github.com/weftnet/weft/") {
			out = append(out, g)
		}
	}
	return out
}
