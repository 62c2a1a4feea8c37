// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package membership

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// newLogged returns a Membership (not running) whose log goes to buf.
func newLogged(t *testing.T, buf *bytes.Buffer) *Membership {
	t.Helper()
	lg := logrus.New()
	lg.Out = buf
	lg.Level = logrus.DebugLevel
	lg.Formatter = &logrus.TextFormatter{DisableTimestamp: true}
	cfg := testConfig("self")
	cfg.Log = lg
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLogWriter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
		want  []string // substrings, in order, one per output line
	}{
		{
			name:  "debug and info go to debug",
			lines: []string{"[DEBUG] memberlist: Stream connection from=1.2.3.4:5", "[INFO] memberlist: Marking x as failed, suspect timeout reached (0 peer confirmations)"},
			want:  []string{`level=debug msg="Stream connection" component=membership from="1.2.3.4:5"`, `level=debug msg="Marking x as failed`},
		},
		{
			name:  "errors become rate-limited warnings",
			lines: []string{"[ERR] memberlist: Failed to send gossip to 198.18.0.3:7950: unreachable", "[ERR] memberlist: Failed to send gossip to 198.18.0.3:7950: unreachable", "[WARN] memberlist: Was able to connect to b over TCP but UDP probes failed"},
			want:  []string{`level=warning msg="Failed to send gossip to 198.18.0.3:7950: unreachable"`, `level=warning msg="Was able to connect`},
		},
		{
			name:  "wrong key over UDP",
			lines: []string{"[ERR] memberlist: Decrypt packet failed: no installed keys could decrypt the message from=198.18.0.9:7950"},
			want:  []string{`level=warning msg="gossip message rejected: wrong or missing gossip key" component=membership detail="Decrypt packet failed: no installed keys could decrypt the message" from="198.18.0.9:7950" reason="sender uses a gossip key this node does not have"`},
		},
		{
			name: "key problems limited per host, not per port",
			lines: []string{
				"[ERR] memberlist: failed to receive: encryption is configured but remote state is not encrypted from=198.18.0.9:41000",
				"[ERR] memberlist: failed to receive: encryption is configured but remote state is not encrypted from=198.18.0.9:41002",
				"[ERR] memberlist: failed to receive: encryption is configured but remote state is not encrypted from=198.18.0.8:41002",
			},
			want: []string{`from="198.18.0.9:41000" reason="sender has no gossip key configured"`, `from="198.18.0.8:41002"`},
		},
		{
			name:  "our own failed join is reported by the rejoin loop",
			lines: []string{"[WARN] memberlist: failed to join 198.18.0.1:7950: remote state is encrypted and encryption is not configured"},
			want:  []string{`level=debug msg="failed to join`},
		},
		{
			name:  "unprefixed line",
			lines: []string{"Err: Could not set the deadline: x"},
			want:  []string{`level=warning msg="Err: Could not set the deadline: x"`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			m := newLogged(t, &buf)
			w := &logWriter{m: m}
			for _, l := range tc.lines {
				w.Write([]byte(l + "\n"))
			}
			got := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if len(got) != len(tc.want) {
				t.Fatalf("got %d lines, want %d:\n%s", len(got), len(tc.want), buf.String())
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("line %d = %s\nwant it to contain %s", i, got[i], w)
				}
			}
		})
	}
}

func TestLogWriterRecordsSuspicion(t *testing.T) {
	var buf bytes.Buffer
	m := newLogged(t, &buf)
	m.members["b"] = &Member{Name: "b", State: StateAlive, Since: time.Now()}
	m.members["d"] = &Member{Name: "d", State: StateDead, Since: time.Now()}
	w := &logWriter{m: m}
	w.Write([]byte("[INFO] memberlist: Suspect b has failed, no acks received\n"))
	w.Write([]byte("[INFO] memberlist: Suspect d has failed, no acks received\n"))
	if got := m.members["b"].State; got != StateSuspect {
		t.Errorf("b is %s after our probe failed, want suspect", got)
	}
	if got := m.members["d"].State; got != StateDead {
		t.Errorf("dead member d became %s; a probe log must not revive it", got)
	}
	m.observeSuspicion("b", false)
	if got := m.members["b"].State; got != StateAlive {
		t.Errorf("b is %s after an answered probe, want alive", got)
	}
	select {
	case <-m.changed:
	default:
		t.Error("state changes did not wake the notifier")
	}
}

func TestRateLimiter(t *testing.T) {
	r := newRateLimiter(50 * time.Millisecond)
	if n, ok := r.allowN("a"); !ok || n != 0 {
		t.Fatalf("first event: %d, %t", n, ok)
	}
	for range 3 {
		if r.allow("a") {
			t.Fatal("event inside the interval allowed")
		}
	}
	if !r.allow("b") {
		t.Fatal("another key held back")
	}
	time.Sleep(60 * time.Millisecond)
	if n, ok := r.allowN("a"); !ok || n != 3 {
		t.Fatalf("after the interval: held %d, allowed %t; want 3, true", n, ok)
	}
}

func TestJoinTargets(t *testing.T) {
	m, err := New(Config{Name: "self", Join: []string{"198.18.0.1", "198.18.0.2:8000"}})
	if err != nil {
		t.Fatal(err)
	}
	m.localAddr = "198.18.0.9:7950"
	m.Join([]string{"198.18.0.3:7950", "198.18.0.9:7950", "bad:host"})
	old := time.Now().Add(-2 * addrTTL)
	m.addrs["198.18.0.4:7950"] = &knownAddr{last: old}        // stale: forgotten
	m.addrs["198.18.0.5:7950"] = &knownAddr{last: time.Now()} // a dead member's
	m.addrs["198.18.0.6:7950"] = &knownAddr{last: time.Now()} // a live member's
	m.addrs["198.18.0.2:8000"].last = old                     // seed: kept
	m.members["live"] = &Member{Name: "live", Addr: "198.18.0.6:7950", State: StateAlive}
	m.members["gone"] = &Member{Name: "gone", Addr: "198.18.0.5:7950", State: StateDead}

	got, anyAlive := m.joinTargets()
	want := []string{"198.18.0.1:7950", "198.18.0.2:8000", "198.18.0.3:7950", "198.18.0.5:7950"}
	if strings.Join(got, " ") != strings.Join(want, " ") || !anyAlive {
		t.Errorf("joinTargets() = %v, %t; want %v, true", got, anyAlive, want)
	}
	if _, ok := m.addrs["198.18.0.4:7950"]; ok {
		t.Error("stale address not forgotten")
	}

	m.reannounceUntil = time.Now().Add(time.Minute)
	for range 2 {
		got, _ = m.joinTargets()
		if !strings.Contains(strings.Join(got, " "), "198.18.0.6:7950") {
			t.Errorf("re-announce: %v lacks the live member's address", got)
		}
	}
	m.reannounceUntil = time.Now().Add(-time.Second)
	if got, _ = m.joinTargets(); strings.Contains(strings.Join(got, " "), "198.18.0.6:7950") {
		t.Errorf("re-announce window over, still: %v", got)
	}
}
