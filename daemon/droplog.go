// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package daemon

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/weftnet/weft/daemon/policy"
)

// DropLogGroup is the NFLOG group of the policy drop log
// (--policy-log-drops): weftd binds it in its network namespace.
const DropLogGroup = 9950

// maxPolicyLogDrops bounds --policy-log-drops: a log is for people.
const maxPolicyLogDrops = 10000

// dropLog returns the drop log setting for the policy table.
func (d *daemon) dropLog() policy.DropLog {
	if d.cfg.PolicyLogDrops <= 0 {
		return policy.DropLog{}
	}
	return policy.DropLog{Group: DropLogGroup, Rate: uint32(d.cfg.PolicyLogDrops)}
}

// droppedPacket is what a drop log line says of one packet.
type droppedPacket struct {
	src, dst netip.Addr
	proto    uint8
	// port is the destination port (TCP, UDP, SCTP; 0 for others).
	port uint16
	// rule is the drop rule's counter ID ("ingress default deny ipv4").
	rule string
}

// parseDropped reads the addresses, protocol and destination port from
// the start of an IPv4 or IPv6 packet (at most nft.DropLogSnaplen bytes).
func parseDropped(b []byte) (droppedPacket, error) {
	var p droppedPacket
	if len(b) < 1 {
		return p, errors.New("empty packet")
	}
	var l4 []byte
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return p, fmt.Errorf("IPv4 packet of %d bytes", len(b))
		}
		ihl := int(b[0]&0x0f) * 4
		p.proto = b[9]
		p.src, p.dst = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
		// A later fragment carries no transport header.
		if ihl >= 20 && len(b) >= ihl && binary.BigEndian.Uint16(b[6:8])&0x1fff == 0 {
			l4 = b[ihl:]
		}
	case 6:
		if len(b) < 40 {
			return p, fmt.Errorf("IPv6 packet of %d bytes", len(b))
		}
		p.proto = b[6]
		p.src, p.dst = netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
		l4 = b[40:] // extension headers are not followed: no port then
	default:
		return p, fmt.Errorf("IP version %d", b[0]>>4)
	}
	switch p.proto {
	case policy.ProtoTCP, policy.ProtoUDP, policy.ProtoSCTP:
		if len(l4) >= 4 {
			p.port = binary.BigEndian.Uint16(l4[2:4])
		}
	}
	return p, nil
}

// tokenBucket allows rate events a second, in bursts of at most rate.
type tokenBucket struct {
	rate   float64
	tokens float64
	last   time.Time
}

func newTokenBucket(rate int, now time.Time) *tokenBucket {
	return &tokenBucket{rate: float64(rate), tokens: float64(rate), last: now}
}

func (b *tokenBucket) allow(now time.Time) bool {
	b.tokens = min(b.rate, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// dropLogger turns dropped packets into log lines, at most rate a second
// (beyond the kernel's own limit per drop rule); the packets it does not
// log are counted and the count goes with the next line. Not safe for
// concurrent use (one reader calls it).
type dropLogger struct {
	log     logrus.FieldLogger
	bucket  *tokenBucket
	skipped uint64
	// logged, notLogged and overruns count lines written, packets
	// skipped and socket overruns.
	logged, notLogged, overruns prometheus.Counter
	// applied returns the applied policy state (nil before the first
	// apply), to name the pod and the policies isolating it.
	applied func() *appliedPolicy
}

func (l *dropLogger) packet(p droppedPacket, now time.Time) {
	if !l.bucket.allow(now) {
		l.skipped++
		l.notLogged.Inc()
		return
	}
	l.logged.Inc()
	f := logrus.Fields{"src": p.src.String(), "dst": p.dst.String(), "proto": protoName(p.proto), "rule": p.rule}
	if p.port != 0 {
		f["port"] = p.port
	}
	if l.skipped > 0 {
		f["notLogged"] = l.skipped
		l.skipped = 0
	}
	dir, local := policy.Ingress, p.dst
	if strings.HasPrefix(p.rule, string(policy.Egress)) {
		dir, local = policy.Egress, p.src
	}
	if a := l.applied(); a != nil {
		if pod, ok := policy.LocalPod(a.in, local.Unmap()); ok {
			f["pod"] = pod.Namespace + "/" + pod.Name
			if sel := policy.Selecting(a.in, pod, dir); len(sel) > 0 {
				f["policies"] = strings.Join(sel, ",")
			}
		}
	}
	l.log.WithFields(f).Info("network policy dropped a packet: no rule allows it (" + string(dir) + " default deny)")
}

// startDropLog starts the drop log reader with --policy-log-drops; wg
// waits for it.
func (d *daemon) startDropLog(ctx context.Context, wg *sync.WaitGroup) {
	if d.cfg.PolicyLogDrops <= 0 {
		return
	}
	l := &dropLogger{
		log:    d.log.WithField("component", "policy-drop-log"),
		bucket: newTokenBucket(d.cfg.PolicyLogDrops, time.Now()),
		logged: d.metrics.policyDropsLogged, notLogged: d.metrics.policyDropsNotLogged, overruns: d.metrics.policyDropLogOverruns,
		applied: func() *appliedPolicy {
			d.pol.mu.Lock()
			defer d.pol.mu.Unlock()
			return d.pol.applied
		},
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.log.WithFields(logrus.Fields{"group": DropLogGroup, "rate": d.cfg.PolicyLogDrops}).Info("logging the packets network policy drops")
		_ = d.retry(ctx, "read the policy drop log", func(ctx context.Context) error {
			return readDropLog(ctx, DropLogGroup, l)
		})
	}()
}
