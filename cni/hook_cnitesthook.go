// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build cnitesthook

package cni

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// This file is compiled only with the cnitesthook build tag, used by the
// package's tests; production binaries never read these variables.
//
//	WEFT_CNI_TEST_SLEEP_<POINT>=<duration>  sleep at a named point of ADD,
//	                                        so a test can SIGKILL the plugin
//	                                        there: BEFORE_ALLOC and
//	                                        AFTER_ALLOC (the allocation's
//	                                        goroutine), BEFORE_ALIAS (the
//	                                        veth made, its alias not set),
//	                                        AFTER_VETH
//	WEFT_CNI_TEST_TRACE=<file>              append "step seconds" lines with
//	                                        the time each step of ADD took
//	WEFT_CNI_TEST_T0=<unix ns>              with TRACE: also trace "exec",
//	                                        the time from T0 to package init
//	WEFT_CNI_TEST_NO_ANTISPOOF=1            ADD and DEL skip the anti-spoofing
//	                                        record and entries (and DEL the
//	                                        port's setting down): the plugin
//	                                        as it was before them, so that
//	                                        the benchmark can show their cost
//	                                        beside it in the same run

func testHook(point string) {
	if d, err := time.ParseDuration(os.Getenv("WEFT_CNI_TEST_SLEEP_" + point)); err == nil {
		time.Sleep(d)
	}
}

// testNoAntispoof reports whether WEFT_CNI_TEST_NO_ANTISPOOF=1 turns the
// anti-spoofing steps off.
func testNoAntispoof() bool { return os.Getenv("WEFT_CNI_TEST_NO_ANTISPOOF") == "1" }

var (
	traceMu  sync.Mutex
	lastStep = time.Now()
)

// WEFT_CNI_TEST_T0=<unix nanoseconds>, set by the parent just before it
// starts the plugin, makes the first step "exec" the time from there to
// this package's initialisation: fork, exec, Go runtime start, the init of
// the packages this one imports.
func init() {
	if t0, err := strconv.ParseInt(os.Getenv("WEFT_CNI_TEST_T0"), 10, 64); err == nil {
		traceDuration("exec", lastStep.Sub(time.Unix(0, t0)))
	}
}

// traceStep records the time since the previous step of the main flow.
func traceStep(step string) {
	traceMu.Lock()
	now := time.Now()
	d := now.Sub(lastStep)
	lastStep = now
	traceMu.Unlock()
	traceDuration(step, d)
}

// traceDuration records d for a step run beside the main flow.
func traceDuration(step string, d time.Duration) {
	traceMu.Lock()
	defer traceMu.Unlock()
	path := os.Getenv("WEFT_CNI_TEST_TRACE")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	fmt.Fprintf(f, "%s %.9f\n", step, d.Seconds())
	f.Close()
}
