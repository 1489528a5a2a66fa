// The tokio side of tools/bench/io/run.sh: a minimal HTTP/1.1 keep-alive
// responder on a tokio TcpListener (multi-threaded runtime, 2 worker
// threads), answering every request with the response of examples/httpd
// (GET / -> "Hello, World!\n", text/plain). A request is counted at its
// blank line ("\r\n\r\n"), as the C epoll loop does; pipelined requests are
// answered in one write.
//
// With -c, the CPU job of examples/httpd runs in the same process on a
// rayon pool of 2 threads: fib(27) forked with rayon::join down to n < 18,
// again and again from one driver thread (pool.install), each completed
// fib(27) one chunk.
//
//	bench_io_tokio [-p PORT] [-w WORKERS] [-c] [-d SECONDS]
//
// Prints "listening on PORT" when ready and, after -d SECONDS,
// "tokio: requests=N cpu_chunks=M seconds=S" (as examples/httpd does) and
// exits; without -d it runs until killed.
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

static REQUESTS: AtomicU64 = AtomicU64::new(0);
static CHUNKS: AtomicU64 = AtomicU64::new(0);

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, World!\n";

fn fib_seq(n: u32) -> u64 {
    if n < 2 {
        n as u64
    } else {
        fib_seq(n - 1) + fib_seq(n - 2)
    }
}

// Both halves forked down to n < 18, as examples/httpd's mr_join does.
fn fib_par(n: u32) -> u64 {
    if n < 18 {
        return fib_seq(n);
    }
    let (a, b) = rayon::join(|| fib_par(n - 1), || fib_par(n - 2));
    a + b
}

async fn serve(mut s: tokio::net::TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; 16384];
    let mut out = Vec::with_capacity(64 * RESPONSE.len());
    let mut have = 0usize;
    loop {
        let r = match s.read(&mut buf[have..]).await {
            Ok(0) | Err(_) => return,
            Ok(r) => r,
        };
        have += r;
        let mut start = 0usize;
        out.clear();
        for i in 3..have {
            if &buf[i - 3..=i] == b"\r\n\r\n" {
                out.extend_from_slice(RESPONSE);
                start = i + 1;
            }
        }
        if start == 0 && have == buf.len() {
            return; // a request bigger than the buffer: wrk never sends one
        }
        buf.copy_within(start..have, 0);
        have -= start;
        if !out.is_empty() {
            // relaxed: a count read once at exit
            REQUESTS.fetch_add((out.len() / RESPONSE.len()) as u64, Ordering::Relaxed);
            if s.write_all(&out).await.is_err() {
                return;
            }
        }
    }
}

fn main() {
    let (mut port, mut workers, mut cpu, mut secs) = (8080u16, 2usize, false, 0u64);
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let val = || args.get(i + 1).and_then(|v| v.parse::<u64>().ok()).expect("a number after the option");
        match args[i].as_str() {
            "-p" => { port = val() as u16; i += 1; }
            "-w" => { workers = val() as usize; i += 1; }
            "-d" => { secs = val(); i += 1; }
            "-c" => cpu = true,
            _ => {
                eprintln!("usage: bench_io_tokio [-p PORT] [-w WORKERS] [-c] [-d SECONDS]");
                std::process::exit(2);
            }
        }
        i += 1;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_io()
        .build()
        .expect("tokio runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
        .expect("bind");
    let start = Instant::now();
    if cpu {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("rayon pool");
        std::thread::spawn(move || loop {
            assert_eq!(pool.install(|| fib_par(27)), 196418);
            CHUNKS.fetch_add(1, Ordering::Relaxed);
        });
    }
    if secs > 0 {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(secs));
            println!(
                "tokio: requests={} cpu_chunks={} seconds={:.3}",
                REQUESTS.load(Ordering::Relaxed),
                CHUNKS.load(Ordering::Relaxed),
                start.elapsed().as_secs_f64()
            );
            let _ = std::io::stdout().flush();
            std::process::exit(0);
        });
    }
    println!("listening on {}", listener.local_addr().expect("local_addr").port());
    let _ = std::io::stdout().flush();
    rt.block_on(async move {
        loop {
            if let Ok((s, _)) = listener.accept().await {
                tokio::spawn(serve(s));
            }
        }
    });
}
