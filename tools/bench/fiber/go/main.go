// The Go side of Moirai's fiber benchmarks (tools/bench/fiber/bench.h has
// the conventions): goroutines are the fibers Moirai's are measured against.
//
// Usage: bench_fiber_go BENCH WORKERS REPS SIZE; WORKERS is GOMAXPROCS,
// except for mutex. BENCH is one of
//
//	switch       two goroutines ping-pong SIZE round trips over two unbuffered
//	             channels (2*SIZE goroutine switches); run with GOMAXPROCS=1
//	yield        two goroutines each call runtime.Gosched() SIZE times
//	spawn        SIZE times: wg.Add(1); go f(); wg.Wait() (f sets its own byte)
//	spawn-batch  the same SIZE goroutines started 1000 at a time, then one Wait
//	parked       SIZE goroutines started and parked in WaitGroup.Wait() on one
//	             gate; prints the growth of VmRSS as a 7th field; one run per
//	             process (run.sh repeats the process), REPS must be 1
//	sleepers     SIZE goroutines that each sleep 0.5 s, spawned one after
//	             another; the time until all have started, the growth of
//	             VmRSS (7th field) and VmPTE (8th); one run per process
//	mutex        WORKERS goroutines (GOMAXPROCS=2) each add 1 to a shared
//	             counter SIZE/WORKERS times under one sync.Mutex
//
// After one warm-up run (none for parked), REPS runs are timed inside the
// main goroutine and
//
//	RESULT <bench> go <workers> <median_ms> <check> [<bytes>]
//
// is printed, check being the count the program verified. Standard library
// only, buildable by Go 1.19 with GO111MODULE=off.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const batch = 1000 // goroutines per batch in spawn-batch (the C side uses the same)

func fail(bench, what string) {
	fmt.Fprintf(os.Stderr, "FAIL %s go: %s\n", bench, what)
	os.Exit(1)
}

func median(t []float64) float64 {
	sort.Float64s(t)
	n := len(t)
	if n%2 == 1 {
		return t[n/2]
	}
	return (t[n/2-1] + t[n/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// procKB returns a "Key:   N kB" line of a /proc file in bytes, or -1.
func procKB(path, key string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, key+":") {
			fields := strings.Fields(line[len(key)+1:])
			if len(fields) > 0 {
				if v, err := strconv.ParseInt(fields[0], 10, 64); err == nil {
					return v * 1024
				}
			}
		}
	}
	return -1
}

// ---- switch ------------------------------------------------------------------

func pingPong(n uint64) (float64, uint64) {
	ping, pong := make(chan struct{}), make(chan struct{})
	var pongs uint64 // written by the pong goroutine, read after it has answered
	go func() {
		for range ping {
			pongs++
			pong <- struct{}{}
		}
	}()
	t0 := time.Now()
	for i := uint64(0); i < n; i++ {
		ping <- struct{}{}
		<-pong
	}
	el := ms(time.Since(t0))
	close(ping)
	return el, pongs
}

// ---- yield -------------------------------------------------------------------

func yield(n uint64) (float64, uint64) {
	var wg sync.WaitGroup
	var yields [2]uint64
	t0 := time.Now()
	wg.Add(2)
	for j := 0; j < 2; j++ {
		go func(c *uint64) {
			for i := uint64(0); i < n; i++ {
				runtime.Gosched()
				*c++
			}
			wg.Done()
		}(&yields[j])
	}
	wg.Wait()
	return ms(time.Since(t0)), yields[0] + yields[1]
}

// ---- spawn -------------------------------------------------------------------

func spawnJoin(flags []byte) float64 {
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range flags {
		wg.Add(1)
		go func(p *byte) {
			*p = 1
			wg.Done()
		}(&flags[i])
		wg.Wait()
	}
	return ms(time.Since(t0))
}

func spawnBatch(flags []byte) float64 {
	var wg sync.WaitGroup
	t0 := time.Now()
	for lo := 0; lo < len(flags); lo += batch {
		hi := lo + batch
		if hi > len(flags) {
			hi = len(flags)
		}
		wg.Add(hi - lo)
		for i := lo; i < hi; i++ {
			go func(p *byte) {
				*p = 1
				wg.Done()
			}(&flags[i])
		}
		wg.Wait()
	}
	return ms(time.Since(t0))
}

// ---- parked ------------------------------------------------------------------

func parked(n uint64) (float64, uint64, int64) {
	var started, gate, finished sync.WaitGroup
	var woke uint64
	budget := procKB("/proc/meminfo", "MemAvailable") / 4 * 3
	started.Add(int(n))
	gate.Add(1)
	finished.Add(int(n))
	runtime.GC()
	before := procKB("/proc/self/status", "VmRSS")
	t0 := time.Now()
	for i := uint64(0); i < n; i++ {
		go func() {
			started.Done()
			gate.Wait()
			atomic.AddUint64(&woke, 1)
			finished.Done()
		}()
		if i%4096 == 0 && budget > 0 && procKB("/proc/self/status", "VmRSS")-before > budget {
			fail("parked", "stopped: resident memory would exceed 3/4 of MemAvailable")
		}
	}
	started.Wait()
	el := ms(time.Since(t0))
	after := procKB("/proc/self/status", "VmRSS")
	gate.Done()
	finished.Wait()
	return el, atomic.LoadUint64(&woke), after - before
}

// ---- sleepers -----------------------------------------------------------------

// sleepers: n goroutines that each sleep 0.5 s, spawned one after another;
// the time until every one has started its sleep, and the growth of VmRSS
// and VmPTE then (as moirai.c).
func sleepers(n uint64) (float64, uint64, int64, int64) {
	var started, finished sync.WaitGroup
	var woke uint64
	started.Add(int(n))
	finished.Add(int(n))
	runtime.GC()
	before := procKB("/proc/self/status", "VmRSS")
	pte := procKB("/proc/self/status", "VmPTE")
	t0 := time.Now()
	for i := uint64(0); i < n; i++ {
		go func() {
			started.Done()
			time.Sleep(500 * time.Millisecond)
			atomic.AddUint64(&woke, 1)
			finished.Done()
		}()
	}
	started.Wait()
	el := ms(time.Since(t0))
	after := procKB("/proc/self/status", "VmRSS")
	afterPte := procKB("/proc/self/status", "VmPTE")
	finished.Wait()
	return el, atomic.LoadUint64(&woke), after - before, afterPte - pte
}

// ---- mutex -------------------------------------------------------------------

func mutexRun(nthreads int, per uint64) (float64, uint64) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	var counter uint64 // protected by mu
	t0 := time.Now()
	wg.Add(nthreads)
	for j := 0; j < nthreads; j++ {
		go func() {
			for i := uint64(0); i < per; i++ {
				mu.Lock()
				counter++
				mu.Unlock()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	return ms(time.Since(t0)), counter
}

// ---- driver ------------------------------------------------------------------

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintf(os.Stderr, "usage: %s switch|yield|spawn|spawn-batch|parked|sleepers|mutex WORKERS REPS SIZE\n", os.Args[0])
		os.Exit(2)
	}
	bench := os.Args[1]
	workers, e1 := strconv.Atoi(os.Args[2])
	reps, e2 := strconv.Atoi(os.Args[3])
	size, e3 := strconv.ParseUint(os.Args[4], 10, 64)
	if e1 != nil || e2 != nil || e3 != nil || workers < 1 || reps < 1 || reps > 101 || size < 1 {
		fmt.Fprintf(os.Stderr, "%s: bad argument (workers >= 1, 1 <= reps <= 101, size >= 1)\n", os.Args[0])
		os.Exit(2)
	}
	procs := workers
	if bench == "mutex" {
		procs = 2 // WORKERS is the number of goroutines; they share 2 Ps
	}
	runtime.GOMAXPROCS(procs)
	t := make([]float64, reps)
	var check uint64

	switch bench {
	case "switch", "yield":
		run := pingPong
		if bench == "yield" {
			run = yield
		}
		want := size
		if bench == "yield" {
			want = 2 * size
		}
		run(size) // warm-up
		for r := range t {
			t[r], check = run(size)
			if check != want {
				fail(bench, "the goroutines did not run once per round trip / yield")
			}
		}
	case "spawn", "spawn-batch":
		run := spawnJoin
		if bench == "spawn-batch" {
			run = spawnBatch
		}
		flags := make([]byte, size)
		for r := -1; r < reps; r++ { // r == -1: warm-up
			for i := range flags {
				flags[i] = 0
			}
			el := run(flags)
			if r >= 0 {
				t[r] = el
			}
			check = 0
			for _, f := range flags {
				check += uint64(f)
			}
			if check != size {
				fail(bench, "not every goroutine ran exactly once")
			}
		}
	case "parked":
		if reps != 1 {
			fail(bench, "one run per process: REPS must be 1 (run.sh repeats the process)")
		}
		el, woke, bytes := parked(size)
		if woke != size {
			fail(bench, "not every parked goroutine woke exactly once")
		}
		fmt.Printf("RESULT %s go %d %.3f %d %d\n", bench, workers, el, woke, bytes)
		return
	case "sleepers":
		if reps != 1 {
			fail(bench, "one run per process: REPS must be 1 (run.sh repeats the process)")
		}
		el, woke, bytes, pte := sleepers(size)
		if woke != size {
			fail(bench, "not every sleeping goroutine woke exactly once")
		}
		fmt.Printf("RESULT %s go %d %.3f %d %d %d\n", bench, workers, el, woke, bytes, pte)
		return
	case "mutex":
		if size%uint64(workers) != 0 {
			fail(bench, "WORKERS goroutines must divide SIZE")
		}
		per := size / uint64(workers)
		mutexRun(workers, per) // warm-up
		for r := range t {
			t[r], check = mutexRun(workers, per)
			if check != size {
				fail(bench, "the counter is wrong: the mutex let two in")
			}
		}
	default:
		fail(bench, "unknown benchmark (switch, yield, spawn, spawn-batch, parked, sleepers, mutex)")
	}
	fmt.Printf("RESULT %s go %d %.3f %d\n", bench, workers, median(t), check)
}
