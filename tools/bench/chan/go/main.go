// The Go side of Moirai's channel benchmarks (tools/bench/chan/bench.h has
// the conventions): Go's channels are what mr_chan_t is measured against.
//
// Usage: bench_chan_go BENCH WORKERS REPS SIZE; WORKERS is GOMAXPROCS.
// BENCH is one of
//
//	1p1c, 2p2c     producers send their values on one chan uint64 of
//	               capacity 1024; when they have all returned the main
//	               goroutine closes it and the consumers range over it
//	pingpong-cap1  the main goroutine sends i on ping and receives it back
//	pingpong-rdv   on pong from an echo goroutine; channels of capacity 1 /
//	               unbuffered
//	uncontended    the main goroutine alone: send then receive on a channel
//	               of capacity 1024, SIZE times
//
// Producer p of P sends the values i*P + p + 1; every consumer sums what it
// receives and checks that each producer's values arrive in increasing
// order; counts and sums must come out exact. After one warm-up run, REPS
// runs are timed inside the main goroutine (from starting the first
// goroutine to the end of the last) and
//
//	RESULT <bench> go <workers> <median_ms> <check>
//
// is printed, check being the count the program verified. Standard library
// only, buildable by Go 1.19 with GO111MODULE=off.
package main

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"time"
)

const queueCap = 1024 // the C side's CB_QUEUE_CAP

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

// tally is what one consumer received (bench.h's struct cb_tally).
type tally struct {
	count, sum uint64
	last       [2]uint64
	outOfOrder bool
}

func (t *tally) take(v uint64, np uint64) {
	p := (v - 1) & (np - 1)
	if v <= t.last[p] {
		t.outOfOrder = true
	}
	t.last[p] = v
	t.count++
	t.sum += v
}

// ---- 1p1c, 2p2c --------------------------------------------------------------

func throughput(bench string, pairs int, size uint64) (float64, uint64) {
	ch := make(chan uint64, queueCap)
	np := uint64(pairs)
	per := size / np
	tallies := make([]tally, pairs)
	var prods, conss sync.WaitGroup
	t0 := time.Now()
	conss.Add(pairs)
	for c := 0; c < pairs; c++ {
		go func(t *tally) {
			for v := range ch {
				t.take(v, np)
			}
			conss.Done()
		}(&tallies[c])
	}
	prods.Add(pairs)
	for p := uint64(0); p < np; p++ {
		go func(p uint64) {
			for i := uint64(0); i < per; i++ {
				ch <- i*np + p + 1
			}
			prods.Done()
		}(p)
	}
	prods.Wait()
	close(ch)
	conss.Wait()
	el := ms(time.Since(t0))
	var count, sum uint64
	for _, t := range tallies {
		if t.outOfOrder {
			fail(bench, "a producer's values arrived out of order")
		}
		count += t.count
		sum += t.sum
	}
	if count != size {
		fail(bench, "the consumers received the wrong number of elements")
	}
	if sum != size*(size+1)/2 {
		fail(bench, "the sum of the received elements is wrong")
	}
	return el, count
}

// ---- pingpong-cap1, pingpong-rdv ---------------------------------------------

func pingPong(bench string, capacity int, n uint64) (float64, uint64) {
	ping, pong := make(chan uint64, capacity), make(chan uint64, capacity)
	var echoed uint64 // written by the echo goroutine, read after it is done
	done := make(chan struct{})
	t0 := time.Now()
	go func() {
		for v := range ping {
			pong <- v
			echoed++
		}
		close(done)
	}()
	for i := uint64(0); i < n; i++ {
		ping <- i
		if <-pong != i {
			fail(bench, "a round trip brought back the wrong value")
		}
	}
	close(ping)
	<-done
	el := ms(time.Since(t0))
	if echoed != n {
		fail(bench, "the echo goroutine did not echo once per round trip")
	}
	return el, echoed
}

// ---- uncontended -------------------------------------------------------------

func uncontended(bench string, n uint64) (float64, uint64) {
	ch := make(chan uint64, queueCap)
	var sum, pairs uint64
	t0 := time.Now()
	for i := uint64(0); i < n; i++ {
		ch <- i
		sum += <-ch
		pairs++
	}
	el := ms(time.Since(t0))
	if pairs != n || sum != n*(n-1)/2 {
		fail(bench, "received other values than were sent")
	}
	return el, pairs
}

// ---- driver ------------------------------------------------------------------

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintf(os.Stderr, "usage: %s 1p1c|2p2c|pingpong-cap1|pingpong-rdv|uncontended GOMAXPROCS REPS SIZE\n", os.Args[0])
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
	runtime.GOMAXPROCS(workers)

	var run func() (float64, uint64)
	switch bench {
	case "1p1c", "2p2c":
		pairs := 1
		if bench == "2p2c" {
			pairs = 2
		}
		if size%uint64(pairs) != 0 {
			fail(bench, "SIZE must be a multiple of the number of producers")
		}
		run = func() (float64, uint64) { return throughput(bench, pairs, size) }
	case "pingpong-cap1", "pingpong-rdv":
		capacity := 1
		if bench == "pingpong-rdv" {
			capacity = 0
		}
		run = func() (float64, uint64) { return pingPong(bench, capacity, size) }
	case "uncontended":
		run = func() (float64, uint64) { return uncontended(bench, size) }
	default:
		fail(bench, "unknown benchmark (1p1c, 2p2c, pingpong-cap1, pingpong-rdv, uncontended)")
	}
	t := make([]float64, reps)
	var check uint64
	run() // warm-up
	for r := range t {
		t[r], check = run()
	}
	fmt.Printf("RESULT %s go %d %.3f %d\n", bench, workers, median(t), check)
}
