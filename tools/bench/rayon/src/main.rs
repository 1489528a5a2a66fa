//! The rayon side of Moirai's benchmarks (see tools/bench/work.h for the C
//! side and the shared conventions).
//!
//! Usage: bench_rayon BENCH WORKERS REPS SIZE, with BENCH one of
//!   fib            fib(SIZE) by rayon::join on both halves, no cutoff
//!   spawn          one task spawns SIZE empty tasks into a rayon::scope
//!   balanced       sum of sqrt(i), i < SIZE
//!   unbalanced     index i costs i units of work, i < SIZE
//!   balanced-seq, unbalanced-seq
//!                  the same loop run sequentially in Rust on one thread: a
//!                  reference for how this compiler does the loop body
//! Every run happens inside a ThreadPool of WORKERS threads and is timed
//! around pool.install(). After one warm-up run, REPS runs are timed and
//!   RESULT <bench> <impl> <workers> <median_ms> <check>
//! is printed. Keep this file buildable by rustc 1.63 and rayon 1.6.

use rayon::prelude::*;
use std::process::exit;
use std::time::Instant;

/// Hide a value from the optimiser so that repeated runs really recompute.
fn opaque<T: Copy>(v: T) -> T {
    // std::hint::black_box needs rustc 1.66.
    unsafe { std::ptr::read_volatile(&v) }
}

// ---- the loop bodies: the same functions as bal_range / unbal_range in work.h

fn bal_range(lo: usize, hi: usize) -> f64 {
    let mut s = 0.0f64;
    for i in lo..hi {
        s += (i as f64).sqrt();
    }
    s
}

fn unbal_one(i: u64) -> u64 {
    let mut x = i;
    for j in 0..i {
        x = (x ^ (x >> 31))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(j);
    }
    x
}

fn unbal_range(lo: usize, hi: usize) -> u64 {
    let mut s = 0u64;
    for i in lo..hi {
        s = s.wrapping_add(unbal_one(i as u64));
    }
    s
}

/// [lo, hi) as a parallel iterator of sub-ranges that rayon splits adaptively
/// (the same splitting as a range's par_iter), so that every piece is folded
/// by the shared range function.
fn ranges(n: usize) -> impl ParallelIterator<Item = (usize, usize)> {
    rayon::iter::split((0usize, n), |(lo, hi)| {
        if hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            ((lo, mid), Some((mid, hi)))
        } else {
            ((lo, hi), None)
        }
    })
}

fn bal_par(n: usize) -> f64 {
    ranges(n).map(|(lo, hi)| bal_range(lo, hi)).sum::<f64>()
}

fn unbal_par(n: usize) -> u64 {
    ranges(n)
        .map(|(lo, hi)| unbal_range(lo, hi))
        .reduce(|| 0u64, |a, b| a.wrapping_add(b))
}

// ---- fib

fn fib(n: u32) -> u64 {
    if n < 2 {
        return n as u64;
    }
    let (a, b) = rayon::join(|| fib(n - 1), || fib(n - 2));
    a + b
}

// ---- spawn

fn spawn_all(flags: &mut [u8]) {
    rayon::scope(|s| {
        for f in flags.iter_mut() {
            s.spawn(move |_| *f = 1);
        }
    });
}

// ---- driver

fn fail(bench: &str, imp: &str, what: &str) -> ! {
    eprintln!("FAIL {} {}: {}", bench, imp, what);
    exit(1);
}

fn median(t: &mut Vec<f64>) -> f64 {
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = t.len();
    if n % 2 == 1 {
        t[n / 2]
    } else {
        (t[n / 2 - 1] + t[n / 2]) / 2.0
    }
}

fn ms_since(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1e3
}

fn parse<T: std::str::FromStr>(s: &str, what: &str) -> T {
    match s.parse::<T>() {
        Ok(v) => v,
        Err(_) => {
            eprintln!("bench_rayon: bad {}: {}", what, s);
            exit(2);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!(
            "usage: bench_rayon fib|spawn|balanced|unbalanced|balanced-seq|unbalanced-seq WORKERS REPS SIZE"
        );
        exit(2);
    }
    let bench = args[1].as_str();
    let workers: usize = parse(&args[2], "WORKERS");
    let reps: usize = parse(&args[3], "REPS");
    let size: usize = parse(&args[4], "SIZE");
    if workers < 1 || reps < 1 || reps > 101 || size < 1 {
        eprintln!("bench_rayon: bad argument (workers >= 1, 1 <= reps <= 101, size >= 1)");
        exit(2);
    }

    let pool = match rayon::ThreadPoolBuilder::new().num_threads(workers).build() {
        Ok(p) => p,
        Err(e) => fail(bench, "rayon", &format!("cannot build the thread pool: {}", e)),
    };
    if pool.current_num_threads() != workers {
        fail(bench, "rayon", "the pool does not have WORKERS threads");
    }

    let mut t: Vec<f64> = Vec::with_capacity(reps);
    let (name, imp, check): (&str, &str, String) = match bench {
        "fib" => {
            let n = size as u32;
            let first = pool.install(|| fib(n));
            for _ in 0..reps {
                let t0 = Instant::now();
                let v = pool.install(|| fib(opaque(n)));
                t.push(ms_since(t0));
                if v != first {
                    fail(bench, "rayon", "results differ between repetitions");
                }
            }
            ("fib", "rayon", first.to_string())
        }
        "spawn" => {
            let mut flags = vec![0u8; size];
            let mut ran = 0usize;
            for r in 0..=reps {
                // r == 0: warm-up
                for f in flags.iter_mut() {
                    *f = 0;
                }
                let t0 = Instant::now();
                pool.install(|| spawn_all(&mut flags));
                let ms = ms_since(t0);
                if r > 0 {
                    t.push(ms);
                }
                ran = flags.iter().map(|&f| f as usize).sum();
                if ran != size {
                    fail(bench, "rayon", "not every task ran exactly once");
                }
            }
            ("spawn", "rayon", ran.to_string())
        }
        "balanced" | "balanced-seq" => {
            let seq = bench == "balanced-seq";
            let run = |n: usize| if seq { bal_range(0, n) } else { pool.install(|| bal_par(n)) };
            let first = run(size);
            for _ in 0..reps {
                let t0 = Instant::now();
                let v = run(opaque(size));
                t.push(ms_since(t0));
                if (v - first).abs() > 1e-9 * first.abs() {
                    fail(bench, "rayon", "results differ between repetitions");
                }
            }
            // {:e} prints the shortest exact round-trip form, as %.17g does in C.
            ("balanced", if seq { "rust-seq" } else { "rayon" }, format!("{:e}", first))
        }
        "unbalanced" | "unbalanced-seq" => {
            let seq = bench == "unbalanced-seq";
            let run = |n: usize| if seq { unbal_range(0, n) } else { pool.install(|| unbal_par(n)) };
            let first = run(size);
            for _ in 0..reps {
                let t0 = Instant::now();
                let v = run(opaque(size));
                t.push(ms_since(t0));
                if v != first {
                    fail(bench, "rayon", "results differ between repetitions");
                }
            }
            ("unbalanced", if seq { "rust-seq" } else { "rayon" }, first.to_string())
        }
        _ => fail(bench, "rayon", "unknown benchmark"),
    };
    let w = if imp == "rust-seq" { 1 } else { workers };
    println!("RESULT {} {} {} {:.3} {}", name, imp, w, median(&mut t), check);
}
