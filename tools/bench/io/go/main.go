// The Go side of tools/bench/io/run.sh: net/http answering GET / with
// "Hello, World!\n" (text/plain, keep-alive), and with -c the CPU job of
// examples/httpd in the same process: fib(27) forked with goroutines and a
// sync.WaitGroup down to n < 18, again and again, each completed fib(27)
// one chunk.
//
//	bench_io_go [-p PORT] [-c] [-d SECONDS]
//
// GOMAXPROCS comes from the environment (run.sh sets 2). Prints
// "listening on PORT" when ready and, on exit (after -d SECONDS, or
// SIGINT/SIGTERM), "go: requests=N cpu_chunks=M seconds=S", as
// examples/httpd does.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var requests, chunks atomic.Uint64

func fibSeq(n int) int {
	if n < 2 {
		return n
	}
	return fibSeq(n-1) + fibSeq(n-2)
}

// fibPar forks both halves down to n < 18, as examples/httpd's mr_join does.
func fibPar(n int) int {
	if n < 18 {
		return fibSeq(n)
	}
	var a int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		a = fibPar(n - 1)
		wg.Done()
	}()
	b := fibPar(n - 2)
	wg.Wait()
	return a + b
}

func cpuJob() {
	for {
		if fibPar(27) != 196418 {
			panic("fib(27) is wrong")
		}
		chunks.Add(1)
	}
}

func main() {
	port := flag.Int("p", 8080, "port (0: ephemeral)")
	cpu := flag.Bool("c", false, "run the CPU job beside the server")
	secs := flag.Int("d", 0, "exit after SECONDS (0: run until signalled)")
	flag.Parse()

	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "go:", err)
		os.Exit(1)
	}
	body := []byte("Hello, World!\n")
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
		requests.Add(1)
	})
	start := time.Now()
	finish := func() {
		fmt.Printf("go: requests=%d cpu_chunks=%d seconds=%.3f\n", requests.Load(), chunks.Load(),
			time.Since(start).Seconds())
		os.Exit(0)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		finish()
	}()
	if *secs > 0 {
		time.AfterFunc(time.Duration(*secs)*time.Second, finish)
	}
	if *cpu {
		go cpuJob()
	}
	fmt.Printf("listening on %d\n", ln.Addr().(*net.TCPAddr).Port)
	http.Serve(ln, mux)
}
