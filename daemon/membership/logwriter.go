// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package membership

import (
	"net"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// logWriter turns memberlist's log lines ("[LEVEL] memberlist: message")
// into logrus entries. It logs memberlist's DEBUG and INFO lines at debug
// (the membership logs state changes itself), WARN and ERR lines at warn,
// rate-limited, since they are about peers and repeat while a peer is
// unreachable. Two kinds of line get special treatment:
//
//   - a message that could not be decrypted, or that was encrypted when
//     it should not be or vice versa: a warning naming the sender and the
//     likely cause (a wrong or missing gossip key), rate-limited per sender;
//   - "Suspect <node> has failed": this node's probe of <node> failed and
//     memberlist now suspects it; the member table records it;
//   - "Refuting a suspect/dead message": others hold this node suspect or
//     dead (a restart, perhaps on a new address): the rejoin loop
//     re-announces this node for a while.
type logWriter struct {
	m *Membership
}

var (
	reLine    = regexp.MustCompile(`^\[(DEBUG|INFO|WARN|ERR|ERROR)\]\s*(?:memberlist:\s*)?(.*)$`)
	reFrom    = regexp.MustCompile(`\s*from=(\S+)\s*$`)
	reSuspect = regexp.MustCompile(`^Suspect (\S+) has failed, no acks received`)
)

// keyProblems maps memberlist's error texts to an explanation.
var keyProblems = []struct{ text, why string }{
	{"no installed keys could decrypt the message", "sender uses a gossip key this node does not have"},
	{"encryption is configured but remote state is not encrypted", "sender has no gossip key configured"},
	{"remote state is encrypted and encryption is not configured", "sender encrypts gossip but this node has no gossip key"},
}

// keyProblem returns why msg, a memberlist error text, points at a gossip
// key mismatch, or "".
func keyProblem(msg string) string {
	for _, kp := range keyProblems {
		if strings.Contains(msg, kp.text) {
			return kp.why
		}
	}
	return ""
}

func (w *logWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.line(line)
	}
	return len(p), nil
}

func (w *logWriter) line(line string) {
	m := w.m
	level, msg := "WARN", strings.TrimSpace(line)
	if sm := reLine.FindStringSubmatch(msg); sm != nil {
		level, msg = sm[1], sm[2]
	}
	from := ""
	if sm := reFrom.FindStringSubmatch(msg); sm != nil {
		from = sm[1]
		msg = strings.TrimSpace(msg[:len(msg)-len(sm[0])])
	}
	log := m.log.WithField("source", "memberlist")
	if from != "" {
		log = log.WithField("from", from)
	}

	if why := keyProblem(msg); why != "" {
		if strings.HasPrefix(msg, "failed to join") {
			log.Debug(msg) // the rejoin loop reports its own joins
			return
		}
		// Stream connections come from ephemeral ports: limit per host.
		host := from
		if h, _, err := net.SplitHostPort(from); err == nil {
			host = h
		}
		if n, ok := m.limiter.allowN("key " + host); ok {
			log.WithFields(logrus.Fields{"reason": why, "detail": msg, "suppressed": n}).
				Warn("gossip message rejected: wrong or missing gossip key")
		}
		return
	}
	if sm := reSuspect.FindStringSubmatch(msg); sm != nil {
		m.observeSuspicion(sm[1], true)
	}
	if strings.HasPrefix(msg, "Refuting a ") {
		// Others hold this node suspect or dead, perhaps at an older
		// address (a restart): re-announce to them for a while.
		m.startReannounce()
	}

	if strings.HasPrefix(msg, "Conflicting address for") {
		level = "DEBUG" // the conflict delegate logs it, with context
	}
	switch level {
	case "DEBUG", "INFO":
		log.Debug(msg)
	default:
		key := msg
		if len(key) > 48 {
			key = key[:48]
		}
		if n, ok := m.limiter.allowN("ml " + key); ok {
			if n > 0 {
				log = log.WithField("suppressed", n)
			}
			log.Warn(msg)
		}
	}
}

// rateLimiter lets one event per key through per interval and counts the
// ones it held back.
type rateLimiter struct {
	every time.Duration

	// mu guards the following.
	mu   sync.Mutex
	last map[string]time.Time
	held map[string]int
}

func newRateLimiter(every time.Duration) *rateLimiter {
	return &rateLimiter{every: every, last: make(map[string]time.Time), held: make(map[string]int)}
}

// allow reports whether an event with key may be logged now.
func (r *rateLimiter) allow(key string) bool {
	_, ok := r.allowN(key)
	return ok
}

// allowN is allow that also returns how many events of key were held back
// since the last one allowed.
func (r *rateLimiter) allowN(key string) (held int, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if t, seen := r.last[key]; seen && now.Sub(t) < r.every {
		r.held[key]++
		return 0, false
	}
	if len(r.last) > 4096 { // bound memory under a flood of distinct keys
		clear(r.last)
		clear(r.held)
	}
	held = r.held[key]
	r.last[key] = now
	delete(r.held, key)
	return held, true
}
