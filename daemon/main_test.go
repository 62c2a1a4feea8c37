// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// childEnv, when set to 1, makes the test binary act as weftd: it reads
// its flags from WEFTD_* and runs [Run] (the integration tests start it
// inside a network namespace, so that every socket and netlink call of
// the daemon stays there).
const childEnv = "WEFT_DAEMON_TEST_CHILD"

// testEtcd is the embedded etcd of the privileged tests, or nil (not
// root, or WEFT_TEST_UNPRIVILEGED=1).
var testEtcd *unixEtcd

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
		testEtcd.stop()
		os.RemoveAll(testEtcd.dir)
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

// unixEtcd is an embedded etcd serving clients on a unix socket. A unix
// socket is reachable from every network namespace, so a daemon inside a
// test namespace talks to this etcd without any link into the root
// namespace.
type unixEtcd struct {
	dir  string
	sock string
	e    *embed.Etcd
}

func startUnixEtcd() (*unixEtcd, error) {
	dir, err := os.MkdirTemp("", "weft-daemon-etcd-")
	if err != nil {
		return nil, err
	}
	u := &unixEtcd{dir: dir, sock: filepath.Join(dir, "client.sock")}
	return u, u.start()
}

func (u *unixEtcd) endpoint() string { return "unix://" + u.sock }

func (u *unixEtcd) start() error {
	cfg := embed.NewConfig()
	cfg.Dir = filepath.Join(u.dir, "data")
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cu := url.URL{Scheme: "unix", Path: u.sock}
	pu := url.URL{Scheme: "unix", Path: filepath.Join(u.dir, "peer.sock")}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ListenMetricsUrls = nil
	// Stale socket files from a previous start would make listen fail.
	os.Remove(u.sock)
	os.Remove(pu.Path)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start embedded etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("embedded etcd failed: %w", err)
	case <-time.After(60 * time.Second):
		e.Close()
		return errors.New("embedded etcd not ready after 60 s")
	}
	u.e = e
	return nil
}

func (u *unixEtcd) stop() {
	if u.e != nil {
		u.e.Close()
		u.e = nil
	}
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
