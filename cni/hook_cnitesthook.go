// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build cnitesthook

package cni

import (
	"fmt"
	"os"
	"sync"
	"time"
)

// This file is compiled only with the cnitesthook build tag, used by the
// package's tests; production binaries never read these variables.
//
//	WEFT_CNI_TEST_SLEEP_<POINT>=<duration>  sleep at a named point of ADD
//	                                        (AFTER_ALLOC, AFTER_VETH), so a
//	                                        test can SIGKILL the plugin there
//	WEFT_CNI_TEST_TRACE=<file>              append "step seconds" lines with
//	                                        the time each step of ADD took

func testHook(point string) {
	if d, err := time.ParseDuration(os.Getenv("WEFT_CNI_TEST_SLEEP_" + point)); err == nil {
		time.Sleep(d)
	}
}

var (
	traceMu  sync.Mutex
	lastStep = time.Now()
)

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
