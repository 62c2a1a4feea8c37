// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package kubetest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netns"

	"github.com/weftnet/weft/e2e/namespace"
)

// Proc is one control-plane process. It is this package's child, so its
// PID cannot be reused before it is reaped: signalling it by PID is safe.
type Proc struct {
	// Name is the program's base name (kube-apiserver, ...).
	Name string
	// PID is the process ID.
	PID int
	// Log receives the process's stdout and stderr.
	Log string

	done    chan struct{} // closed once the process is reaped
	waitErr error         // its exit status; read after done is closed
}

// startProc starts binary with args inside the namespace ns, its output
// appended to logPath. The process is killed if the thread that started
// it exits (the test binary dies), so that a test killed by its timeout
// leaves no control plane behind.
func startProc(ns netns.NsHandle, binary string, args []string, logPath string) (*Proc, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	defer lf.Close()
	fmt.Fprintf(lf, "=== %s start: %s %s\n", time.Now().Format(time.RFC3339Nano), binary, strings.Join(args, " "))
	cmd := exec.Command(binary, args...)
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	// A child inherits the network namespace of the thread that forks it.
	if err := namespace.Do(ns, cmd.Start); err != nil {
		return nil, fmt.Errorf("start %s: %w", filepath.Base(binary), err)
	}
	p := &Proc{Name: filepath.Base(binary), PID: cmd.Process.Pid, Log: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// childEnv is the test's environment without variables that would point
// the programs elsewhere (KUBECONFIG, ETCD_* read as etcd flags).
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "KUBECONFIG" || strings.HasPrefix(k, "ETCD_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// Exited reports whether the process has exited, and its exit error.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Stop sends SIGTERM, waits up to timeout for the process to exit, then
// kills it. It is idempotent.
func (p *Proc) Stop(timeout time.Duration) error {
	if exited, _ := p.Exited(); exited {
		return nil
	}
	if err := syscall.Kill(p.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s (pid %d): %w", p.Name, p.PID, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
	}
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s (pid %d): %w", p.Name, p.PID, err)
	}
	select {
	case <-p.done:
		return fmt.Errorf("%s (pid %d) ignored SIGTERM for %s: killed", p.Name, p.PID, timeout)
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) still running 10s after SIGKILL", p.Name, p.PID)
	}
}

// Kill sends SIGKILL and waits up to timeout for the process to be
// reaped. It is idempotent.
func (p *Proc) Kill(timeout time.Duration) error {
	if exited, _ := p.Exited(); exited {
		return nil
	}
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s (pid %d): %w", p.Name, p.PID, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s (pid %d) still running %s after SIGKILL", p.Name, p.PID, timeout)
	}
}

// RSS returns the process's resident set size in bytes.
func (p *Proc) RSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID))
	if err != nil {
		return 0, fmt.Errorf("read %s status: %w", p.Name, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse %s VmRSS %q: %w", p.Name, v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("%s: no VmRSS in /proc/%d/status", p.Name, p.PID)
}

// waitLogLine waits until a line of the log equals line, failing early if
// the process exits.
func (p *Proc) waitLogLine(line string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if b, err := os.ReadFile(p.Log); err == nil {
			for _, l := range bytes.Split(b, []byte("\n")) {
				if string(bytes.TrimSpace(l)) == line {
					return nil
				}
			}
		}
		if exited, err := p.Exited(); exited {
			return fmt.Errorf("%s exited (%v) before printing %q:\n%s", p.Name, err, line, p.tail(20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not print %q within %s:\n%s", p.Name, line, timeout, p.tail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tail returns the last n lines of the process's log.
func (p *Proc) tail(n int) string {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
