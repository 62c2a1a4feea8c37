// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package wireguard

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// userDevice is the embedded userspace WireGuard device: a TUN interface,
// the library's device (crypto, timers, UDP sockets) and the UAPI socket
// through which wgctrl and wg(8) configure it.
//
// Lifecycle:
//
//	startUserDevice ──► running ──► close (idempotent)
//	                       │  UAPI socket deleted by someone:
//	                       └► ensureUAPI re-opens it on the next Reconcile
type userDevice struct {
	name string
	log  logrus.FieldLogger
	dev  *device.Device
	tun  tun.Device   // the TUN as created
	ctun *countingTUN // tun, as the library's device uses it
	// flowOut and flowIn bound the packets in flight (flow_linux.go).
	flowOut, flowIn *flowGate
	// busy is set by releaseLoop while traffic flows (see release_linux.go).
	busy atomic.Bool
	stop chan struct{} // closed by close: ends releaseLoop

	// wg counts the UAPI accept loops, the connection handlers, the
	// pending initiateLater timers and releaseLoop.
	wg sync.WaitGroup

	// mu guards the following.
	mu       sync.Mutex
	uapi     net.Listener
	uapiDone chan struct{} // closed when the current accept loop exits
	conns    map[net.Conn]struct{}
	timers   map[*time.Timer]struct{} // pending initiateLater calls
	closed   bool
}

// startUserDevice creates the TUN interface and the device and opens the
// UAPI socket. With offloads false the TUN is opened without a virtio
// header (see createTUN).
func startUserDevice(name string, mtu int, offloads bool, log logrus.FieldLogger) (*userDevice, error) {
	td, err := createTUN(name, mtu, offloads)
	if err != nil {
		return nil, fmt.Errorf("create tun %s: %w", name, explainTUN(tunPath, err))
	}
	// Without offloads each read moves one packet, the queues stay short
	// and a bound only costs throughput (0.27 against 0.35 Gbit/s at 32
	// packets, for the same RSS): no gate then.
	var out, in *flowGate
	if offloads {
		out, in = newFlowGate(flowBound, flowWait), newFlowGate(flowBound, flowWait)
	}
	u := &userDevice{
		name:    name,
		log:     log,
		tun:     td,
		ctun:    newCountingTUN(&gatedTUN{Device: td, out: out, in: in}),
		flowOut: out,
		flowIn:  in,
		stop:    make(chan struct{}),
		conns:   map[net.Conn]struct{}{},
		timers:  map[*time.Timer]struct{}{},
	}
	u.dev = device.NewDevice(u.ctun, &flowBind{Bind: conn.NewDefaultBind(), out: out, in: in}, deviceLogger(log))
	if err := u.ensureUAPI(); err != nil {
		u.dev.Close() // also closes the TUN
		return nil, err
	}
	u.wg.Add(1)
	go u.releaseLoop()
	return u, nil
}

// releaseLoop returns the memory of a burst of traffic to the OS once the
// device has gone quiet (see release_linux.go).
func (u *userDevice) releaseLoop() {
	defer u.wg.Done()
	u.log.Debug("memory release loop started")
	defer u.log.Debug("memory release loop stopped")
	t := time.NewTicker(releaseTick)
	defer t.Stop()
	var r releaser
	defer func() {
		if u.busy.Load() {
			setBusy(false)
		}
	}()
	for {
		// A kick counts as an early tick: it can only make the device
		// busy (busyPackets moved since the last tick).
		select {
		case <-u.stop:
			return
		case <-t.C:
		case <-u.ctun.kick:
		}
		count := u.ctun.packets.Load()
		release := r.tick(count)
		busy := !r.idle()
		if busy != u.busy.Load() {
			u.busy.Store(busy)
			setBusy(busy)
		}
		u.ctun.mark.Store(count)
		u.ctun.armed.Store(!busy)
		if release {
			releaseMemory()
			u.log.Debug("traffic stopped: memory returned to the os")
		}
	}
}

// createTUN opens the TUN interface. With offloads (the library's default)
// the interface has a virtio-net header (IFF_VNET_HDR): the kernel hands the
// device TCP/UDP segments of up to 64 KiB (TSO/USO) and the device writes
// coalesced (GRO) packets back, which moves several times more traffic per
// system call. Without offloads the TUN is opened without the header, so
// the kernel segments everything and the device reads and writes one packet
// per call; this is for kernels that reject coalesced writes. The
// library's UDP sockets keep their own segmentation offload (UDP GSO/GRO),
// which it probes per socket and turns off by itself when sends fail.
func createTUN(name string, mtu int, offloads bool) (tun.Device, error) {
	if offloads {
		return tun.CreateTUN(name, mtu)
	}
	fd, err := unix.Open(tunPath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", tunPath, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return tun.CreateTUNFromFile(os.NewFile(uintptr(fd), tunPath), mtu)
}

// ensureUAPI opens the UAPI socket /var/run/wireguard/<name>.sock and
// starts its accept loop, unless a loop is running. The loop ends when the
// listener is closed, or when someone deletes the socket file (the
// library watches it); the next call then opens a new socket.
func (u *userDevice) ensureUAPI() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return errors.New("userspace device closed")
	}
	if u.uapiDone != nil {
		running := true
		select {
		case <-u.uapiDone:
			running = false
		default:
		}
		// The loop notices a deleted socket asynchronously: look too.
		if _, err := os.Stat(u.sockPath()); running && err == nil {
			return nil
		}
		u.log.Warn("uapi socket went away; re-opening it")
		// Close before re-opening: closing unlinks the socket path. The
		// old loop ends by itself (counted in wg).
		u.uapi.Close()
	}
	f, err := ipc.UAPIOpen(u.name)
	if err != nil {
		return fmt.Errorf("open uapi socket for %s: %w", u.name, err)
	}
	l, err := ipc.UAPIListen(u.name, f)
	f.Close() // UAPIListen holds its own descriptor
	if err != nil {
		return fmt.Errorf("listen on uapi socket for %s: %w", u.name, err)
	}
	done := make(chan struct{})
	u.uapi, u.uapiDone = l, done
	u.wg.Add(1)
	go u.acceptLoop(l, done)
	return nil
}

func (u *userDevice) acceptLoop(l net.Listener, done chan struct{}) {
	defer u.wg.Done()
	defer close(done)
	u.log.Debug("uapi accept loop started")
	defer u.log.Debug("uapi accept loop stopped")
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		u.mu.Lock()
		if u.closed {
			u.mu.Unlock()
			c.Close()
			return
		}
		u.conns[c] = struct{}{}
		u.wg.Add(1)
		u.mu.Unlock()
		go func() {
			defer u.wg.Done()
			u.dev.IpcHandle(c) // closes c when done
			u.mu.Lock()
			delete(u.conns, c)
			u.mu.Unlock()
		}()
	}
}

// sockPath is where ipc.UAPIOpen puts the device's socket.
func (u *userDevice) sockPath() string {
	return filepath.Join(uapiDir, u.name+".sock")
}

// uapiDir is the directory of userspace WireGuard control sockets, shared
// by all network namespaces of a host.
const uapiDir = "/var/run/wireguard"

// up brings the device's sockets up now rather than waiting for the TUN's
// link-up event, so that handshakes can be sent at once.
func (u *userDevice) up() error {
	return u.dev.Up()
}

// initiateHandshakes sends a handshake initiation to each peer in keys.
// After a restart the other nodes still hold sessions whose keys died with
// the old process; a fresh handshake from this side replaces them at once,
// where otherwise traffic towards this node would stall until the other
// side's rekey timers fire. It returns how many initiations were sent.
func (u *userDevice) initiateHandshakes(keys []wgtypes.Key) int {
	n := 0
	for _, k := range keys {
		p := u.dev.LookupPeer(device.NoisePublicKey(k))
		if p == nil {
			continue
		}
		if err := p.SendHandshakeInitiation(false); err != nil {
			u.log.WithError(err).WithField("key", k.String()).Debug("handshake initiation failed")
			continue
		}
		n++
	}
	return n
}

// initiateLater sends a handshake initiation, after the delay, to each
// peer in keys that has not completed a handshake by then (see
// Backend.Reconcile for why). The pending call is cancelled by close.
func (u *userDevice) initiateLater(keys []wgtypes.Key, after time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return
	}
	u.wg.Add(1)
	var t *time.Timer
	t = time.AfterFunc(after, func() {
		defer u.wg.Done()
		u.mu.Lock()
		delete(u.timers, t)
		closed := u.closed
		u.mu.Unlock()
		if closed {
			return
		}
		silent, err := u.withoutHandshake(keys)
		if err != nil {
			u.log.WithError(err).Debug("read peer handshake times")
			return
		}
		if n := u.initiateHandshakes(silent); n > 0 {
			u.log.WithField("peers", n).Debug("handshakes initiated with silent new peers")
		}
	})
	u.timers[t] = struct{}{}
}

// withoutHandshake returns the keys whose peers exist and have never
// completed a handshake.
func (u *userDevice) withoutHandshake(keys []wgtypes.Key) ([]wgtypes.Key, error) {
	cfg, err := u.dev.IpcGet()
	if err != nil {
		return nil, err
	}
	done := map[wgtypes.Key]bool{}
	var cur wgtypes.Key
	for line := range strings.SplitSeq(cfg, "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "public_key":
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != wgtypes.KeyLen {
				return nil, fmt.Errorf("bad public_key %q in device state", v)
			}
			cur = wgtypes.Key(b)
			done[cur] = false
		case "last_handshake_time_sec", "last_handshake_time_nsec":
			if v != "0" {
				done[cur] = true
			}
		}
	}
	var out []wgtypes.Key
	for _, k := range keys {
		if hs, exists := done[k]; exists && !hs {
			out = append(out, k)
		}
	}
	return out, nil
}

// vnetHdr reports whether the TUN was opened with a virtio-net header
// (offloads on).
func (u *userDevice) vnetHdr() (bool, error) {
	nt, ok := u.tun.(*tun.NativeTun)
	if !ok {
		return false, errors.New("not a native tun")
	}
	sc, err := nt.File().SyscallConn()
	if err != nil {
		return false, err
	}
	var flags uint16
	var ierr error
	err = sc.Control(func(fd uintptr) {
		var ifr *unix.Ifreq
		ifr, ierr = unix.NewIfreq(u.name)
		if ierr != nil {
			return
		}
		ierr = unix.IoctlIfreq(int(fd), unix.TUNGETIFF, ifr)
		flags = ifr.Uint16()
	})
	if err != nil {
		return false, err
	}
	if ierr != nil {
		return false, fmt.Errorf("TUNGETIFF: %w", ierr)
	}
	return flags&unix.IFF_VNET_HDR != 0, nil
}

// close removes the UAPI socket, waits for its handlers and closes the
// device, which deletes the TUN interface and with it the interface's
// addresses and routes. It is idempotent.
func (u *userDevice) close() {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return
	}
	u.closed = true
	close(u.stop)
	if u.uapi != nil {
		u.uapi.Close() // unlinks the socket file
	}
	for c := range u.conns {
		c.Close()
	}
	for t := range u.timers {
		if t.Stop() {
			u.wg.Done() // its function will not run
		}
	}
	u.mu.Unlock()
	u.wg.Wait()
	u.dev.Close()
}

// deviceLogger adapts the library's printf-style logger: its verbose
// messages go to debug; its errors go to warn at most once per
// errorLogInterval, the rest to debug (some repeat per packet).
func deviceLogger(log logrus.FieldLogger) *device.Logger {
	var mu sync.Mutex
	var last time.Time
	return &device.Logger{
		Verbosef: func(format string, args ...any) { log.Debugf(format, args...) },
		Errorf: func(format string, args ...any) {
			mu.Lock()
			now := time.Now()
			warn := now.Sub(last) >= errorLogInterval
			if warn {
				last = now
			}
			mu.Unlock()
			if warn {
				log.Warnf(format, args...)
			} else {
				log.Debugf(format, args...)
			}
		},
	}
}

const errorLogInterval = 10 * time.Second
