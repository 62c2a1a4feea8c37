// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

package e2e

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
)

// startProc starts argv inside ns (ns.Name empty: no namespace switch) in
// its own session, with stdout and stderr appended to logPath. The process
// outlives the caller unless it is stopped.
func startProc(ns NS, binary string, args []string, env []string, logPath string) (*Proc, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	defer lf.Close()
	argv := append([]string{"ip", "netns", "exec", ns.Name, binary}, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	fmt.Fprintf(lf, "=== %s start: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(argv, " "))
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", filepath.Base(binary), err)
	}
	p := &Proc{PID: cmd.Process.Pid, Binary: binary, Args: args, Namespace: ns.Name, Log: logPath, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Respawn starts the program of p again with the same arguments, in the
// same namespace, logging to the same file, and returns the new process.
// p must not be running.
func (p *Proc) Respawn() (*Proc, error) {
	if p.Alive() {
		return nil, fmt.Errorf("pid %d (%s) is still running", p.PID, filepath.Base(p.Binary))
	}
	if p.Namespace == "" {
		return nil, fmt.Errorf("no namespace recorded for %s", filepath.Base(p.Binary))
	}
	return startProc(NS{Name: p.Namespace}, p.Binary, p.Args, cleanEnv(), p.Log)
}

// cleanEnv is the environment for child processes: the caller's, minus
// ETCD_*, WEFTD_* and WEFTCTL_* variables that would turn into flags.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "ETCD_") || strings.HasPrefix(k, "WEFTD_") || strings.HasPrefix(k, "WEFTCTL_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// Alive reports whether the process still runs as the same program (a
// zombie counts as gone).
func (p *Proc) Alive() bool {
	if p == nil || p.PID <= 0 {
		return false
	}
	if p.done != nil {
		// Our own child: its PID cannot be reused before we reap it.
		select {
		case <-p.done:
			return false
		default:
			return true
		}
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.PID))
	if err != nil || len(cmdline) == 0 {
		return false
	}
	argv := bytes.Split(cmdline, []byte{0})
	// Right after start the process may still be `ip netns exec <ns>`,
	// about to exec the program.
	starting := len(argv) > 4 && filepath.Base(string(argv[0])) == "ip" && string(argv[3]) == p.Namespace && string(argv[4]) == p.Binary
	if filepath.Base(string(argv[0])) != filepath.Base(p.Binary) && !starting {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
	if err != nil {
		return false
	}
	// The state follows the ")" that closes the command name.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return false
	}
	return true
}

// Signal sends sig if the process is still the program we started.
func (p *Proc) Signal(sig syscall.Signal) error {
	if !p.Alive() {
		return nil
	}
	if err := syscall.Kill(p.PID, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %d to pid %d: %w", sig, p.PID, err)
	}
	return nil
}

// Wait waits until the process is gone or the timeout passes.
func (p *Proc) Wait(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for p.Alive() {
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d (%s) still running after %s", p.PID, filepath.Base(p.Binary), timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// Stop sends SIGTERM and waits up to timeout, then SIGKILL.
func (p *Proc) Stop(timeout time.Duration) error {
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	if p.Wait(timeout) == nil {
		return nil
	}
	return p.Kill()
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() error {
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	return p.Wait(5 * time.Second)
}

// RSS returns the process's resident set size in bytes (VmRSS).
func (p *Proc) RSS() (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID))
	if err != nil {
		return 0, fmt.Errorf("read status of pid %d: %w", p.PID, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) < 1 {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse VmRSS %q: %w", v, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", p.PID)
}

// clockTicks is the unit of /proc/PID/stat's times (USER_HZ, 100 on
// every Linux architecture Go supports).
const clockTicks = 100

// CPUTime returns the CPU time the process has used, user and system
// (utime + stime of /proc/PID/stat).
func (p *Proc) CPUTime() (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
	if err != nil {
		return 0, fmt.Errorf("read stat of pid %d: %w", p.PID, err)
	}
	// The fields after the command name, which is in parentheses and
	// may hold spaces: state is field 3, utime 14 and stime 15.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat of pid %d: no command name", p.PID)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("stat of pid %d: %d fields", p.PID, len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat of pid %d: %w", p.PID, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// waitLogLine polls the log file of p until it holds line (after offset),
// p exits, or the timeout passes.
func waitLogLine(p *Proc, offset int64, line string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		data, _ := os.ReadFile(p.Log)
		if int64(len(data)) > offset && bytes.Contains(data[offset:], []byte(line)) {
			return nil
		}
		if !p.Alive() {
			return fmt.Errorf("%s exited before %q: see %s:\n%s", filepath.Base(p.Binary), line, p.Log, tail(data, 20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not %q after %s: see %s:\n%s", filepath.Base(p.Binary), line, timeout, p.Log, tail(data, 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
