// SPDX-License-Identifier: Apache-2.0
// Copyright weft authors

//go:build bench && linux

package wireguard

// TestBenchWireGuardMemory measures where the userspace device's memory
// is under a saturating TCP stream, beside Debian's wireguard-go in the
// same run, in interleaved rounds:
//
//   - RSS split into anonymous pages (heap, stacks: what the device
//     allocates) and file pages (the mapped binary: weft's process is this
//     test binary, many times larger than wireguard-go's, so total RSS
//     compares binaries as much as devices),
//   - the Go heap of weft's process while the load runs (in use, idle and
//     not yet returned, the collector's next goal),
//   - both 2 s after the load ends (the device returns its memory one
//     second after it goes quiet, see release_linux.go),
//
// for the device as weftd runs it (the collector at busyGCPercent while
// the device is busy, see release_linux.go), with the collector left at
// GOGC=100 as before, and at GOGC=10. The CPU both processes spend per GB
// moved shows what the collections cost.

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/e2e/e2etest"
)

// memSample is one process's resident memory.
type memSample = e2etest.ProcMemory

// memPeak samples processes every 100 ms until stopped and keeps, over
// the processes and the samples, the highest RSS and the highest
// anonymous RSS (each on its own), and optionally the Go heap of weft's
// helpers.
type memPeak struct {
	stopc chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	peak  memSample
	heap  heapStats // field-wise maximum
}

func newMemPeak(pids []int, helpers []*helper) *memPeak {
	p := &memPeak{stopc: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			for _, pid := range pids {
				s := e2etest.MaxProcMemory(pid)
				p.mu.Lock()
				p.peak.RSS, p.peak.Anon = max(p.peak.RSS, s.RSS), max(p.peak.Anon, s.Anon)
				p.mu.Unlock()
			}
			if n%3 == 0 {
				for _, h := range helpers {
					r, err := h.call(helperRequest{Op: "heap"})
					if err != nil || r.Heap == nil {
						continue
					}
					p.mu.Lock()
					p.heap.HeapInuse = max(p.heap.HeapInuse, r.Heap.HeapInuse)
					p.heap.HeapIdle = max(p.heap.HeapIdle, r.Heap.HeapIdle-r.Heap.HeapReleased)
					p.heap.NextGC = max(p.heap.NextGC, r.Heap.NextGC)
					p.heap.Sys = max(p.heap.Sys, r.Heap.Sys)
					p.mu.Unlock()
				}
			}
			select {
			case <-p.stopc:
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

func (p *memPeak) stop() (memSample, heapStats) {
	close(p.stopc)
	p.wg.Wait()
	return p.peak, p.heap
}

// cpuTime returns the CPU time (user and system) processes have used.
func cpuTime(pids ...int) time.Duration {
	var ticks int64
	for _, pid := range pids {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// The command name may hold spaces: fields count from its ')'.
		f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + s
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}

// memRun is one measured load.
type memRun struct {
	bps   float64 // best of the runs
	cpuGB float64 // CPU seconds of both processes per GB moved
	peak  memSample
	heap  heapStats
	after memSample
}

// measureLoad runs the throughput tool from src to dst while sampling the
// processes' memory and CPU.
func measureLoad(t *testing.T, tool *throughputTool, n1, n2 *testNode, src, dst netip.Addr, pids []int, helpers []*helper) memRun {
	t.Helper()
	mp := newMemPeak(pids, helpers)
	cpu := cpuTime(pids...)
	bps := tool.best(t, n1, n2, src, dst)
	cpu = cpuTime(pids...) - cpu
	peak, heap := mp.stop()
	var bytes float64
	for _, r := range tool.last {
		bytes += r * benchDuration.Seconds() / 8
	}
	time.Sleep(2 * time.Second)
	return memRun{bps: bps, cpuGB: cpu.Seconds() / (bytes / 1e9), peak: peak, heap: heap, after: e2etest.MaxProcMemory(pids...)}
}

func TestBenchWireGuardMemory(t *testing.T) {
	if msg := missingTools("wireguard-go", "wg"); msg != "" {
		t.Skipf("needs the wireguard-go reference: %s", msg)
	}
	tp := newTopology(t, 2)
	n1, n2 := tp.nodes[0], tp.nodes[1]
	tool := newThroughputTool(t)
	a, b := startWireguardGo(t, tp, n1), startWireguardGo(t, tp, n2)
	connectWireguardGo(t, a, b)
	connectWireguardGo(t, b, a)

	type variant struct {
		name string
		cfg  func(*helperConfig)
	}
	variants := []variant{
		{fmt.Sprintf("as weftd runs it, GOGC=%d while busy", busyGCPercent), func(c *helperConfig) {}},
		{"GOGC=100 while busy, as before", func(c *helperConfig) { c.BusyGCPercent = -1 }},
		{"GOGC=10 while busy", func(c *helperConfig) { c.BusyGCPercent = 10 }},
	}
	res := map[string][]memRun{}
	var ref []memRun
	for round := range benchMemRounds {
		for i := range variants {
			v := variants[(i+round)%len(variants)]
			for _, nd := range tp.nodes {
				if nd.h != nil {
					if _, err := nd.h.stop(); err != nil {
						t.Fatal(err)
					}
				}
				nd.cfg.MemoryLimit, nd.cfg.BusyGCPercent = benchMemLimit, 0
				v.cfg(&nd.cfg)
				nd.start(t)
			}
			tp.reconcileAll(t)
			r := measureLoad(t, tool, n1, n2, n1.subnet.Addr(), n2.subnet.Addr(), []int{n1.h.pid(), n2.h.pid()}, []*helper{n1.h, n2.h})
			res[v.name] = append(res[v.name], r)
			// How often the flow gates' readers gave up waiting (a
			// reader that gives up reads past the bound).
			var forgiven []string
			for _, nd := range tp.nodes {
				fr, err := nd.h.call(helperRequest{Op: "flow"})
				if err != nil {
					t.Fatal(err)
				}
				forgiven = append(forgiven, fmt.Sprintf("%d/%d", fr.Forgiven[0], fr.Forgiven[1]))
			}
			t.Logf("round %d %s: %.2f Gbit/s, %.2f CPU s/GB, rss %d anon %d file %d MiB; heap inuse %d idle %d nextgc %d sys %d MiB; after: rss %d anon %d; flow gates gave up (out/in, per node) %s",
				round, v.name, r.bps/1e9, r.cpuGB, r.peak.RSS>>20, r.peak.Anon>>20, r.peak.File()>>20,
				r.heap.HeapInuse>>20, r.heap.HeapIdle>>20, r.heap.NextGC>>20, r.heap.Sys>>20, r.after.RSS>>20, r.after.Anon>>20,
				strings.Join(forgiven, ", "))

			r = measureLoad(t, tool, n1, n2, a.addr, b.addr, []int{a.pid, b.pid}, nil)
			ref = append(ref, r)
			t.Logf("round %d wireguard-go: %.2f Gbit/s, %.2f CPU s/GB, rss %d anon %d file %d MiB; after: rss %d anon %d",
				round, r.bps/1e9, r.cpuGB, r.peak.RSS>>20, r.peak.Anon>>20, r.peak.File()>>20, r.after.RSS>>20, r.after.Anon>>20)
		}
	}
	vals := func(rs []memRun, f func(memRun) float64) []float64 {
		var vs []float64
		for _, r := range rs {
			vs = append(vs, f(r))
		}
		return vs
	}
	mib := func(f func(memRun) int64) func(memRun) float64 {
		return func(r memRun) float64 { return float64(f(r)) / (1 << 20) }
	}
	span := func(rs []memRun, f func(memRun) float64, format string) string {
		vs := vals(rs, f)
		return fmt.Sprintf(format+"-"+format, slices.Min(vs), slices.Max(vs))
	}
	rssOf := mib(func(r memRun) int64 { return r.peak.RSS })
	anonOf := mib(func(r memRun) int64 { return r.peak.Anon })
	fileOf := mib(func(r memRun) int64 { return r.peak.File() })
	afterOf := mib(func(r memRun) int64 { return r.after.RSS })
	heapOf := mib(func(r memRun) int64 { return int64(r.heap.HeapInuse) })
	gbitOf := func(r memRun) float64 { return r.bps / 1e9 }
	cpuOf := func(r memRun) float64 { return r.cpuGB }
	// Ratios pair each run with the reference run that followed it, and
	// give the range over the rounds.
	ratios := func(rs []memRun, f func(memRun) float64, refs []memRun) string {
		var vs []float64
		for i, r := range rs {
			vs = append(vs, f(r)/f(refs[i]))
		}
		return fmt.Sprintf("%.2f-%.2fx", slices.Min(vs), slices.Max(vs))
	}
	for vi, v := range variants {
		rs := res[v.name]
		// The reference runs that followed this variant's runs.
		var refs []memRun
		for round := range benchMemRounds {
			refs = append(refs, ref[round*len(variants)+(vi-round+len(variants))%len(variants)])
		}
		fmt.Printf("BENCH| WireGuard userspace under load (%s): RSS; anonymous + file | %s; %s + %s MiB | Debian wireguard-go: %s; %s + %s MiB | %s the RSS, %s the anonymous\n",
			v.name, span(rs, rssOf, "%.0f"), span(rs, anonOf, "%.0f"), span(rs, fileOf, "%.0f"),
			span(refs, rssOf, "%.0f"), span(refs, anonOf, "%.0f"), span(refs, fileOf, "%.0f"),
			ratios(rs, rssOf, refs), ratios(rs, anonOf, refs))
		fmt.Printf("BENCH| WireGuard userspace (%s): throughput; CPU per GB | %s Gbit/s; %s s | Debian wireguard-go: %s Gbit/s; %s s | %s the throughput; heap in use %s MiB, RSS 2 s after the load %s MiB (wireguard-go %s)\n",
			v.name, span(rs, gbitOf, "%.2f"), span(rs, cpuOf, "%.1f"), span(refs, gbitOf, "%.2f"), span(refs, cpuOf, "%.1f"),
			ratios(rs, gbitOf, refs), span(rs, heapOf, "%.0f"), span(rs, afterOf, "%.0f"), span(refs, afterOf, "%.0f"))
	}
}

// benchMemRounds is how often each variant is measured.
const benchMemRounds = 3
