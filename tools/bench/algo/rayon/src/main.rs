//! The rayon side of Moirai's sort benchmark (tools/bench/algo/sort.h is the
//! C side: the same input, the same check, the same output line).
//!
//! Usage: bench_sort_rayon IMPL WORKERS REPS SIZE, with IMPL one of
//!   rayon-unstable   par_sort_unstable (a parallel pattern-defeating quicksort)
//!   rayon-stable     par_sort (a parallel merge sort)
//! and "rec:" before either sorts SIZE 16-byte records (key, input position)
//! by key. Every run happens inside a ThreadPool of WORKERS threads, timed
//! around pool.install(); one warm-up, then REPS timed runs, each on a fresh
//! copy of the input, and
//!   RESULT <sort|sort-rec> <impl> <workers> <median_ms> <check>
//! is printed. Keep this file buildable by rustc 1.63 and rayon 1.6.

use rayon::prelude::*;
use std::process::exit;
use std::time::Instant;

fn fail(bench: &str, imp: &str, what: &str) -> ! {
    eprintln!("FAIL {} {}: {}", bench, imp, what);
    exit(1);
}

/// The keys of sort.h's sort_input(): the same xorshift from the same seed.
fn input(n: usize) -> Vec<u64> {
    let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.push(s);
    }
    v
}

const P: u64 = 0x1_0000_0001_b3;

/// sort.h's sort_check: 0 if not ascending, else a hash of every position.
fn check(a: &[u64]) -> u64 {
    let mut h: u64 = 1;
    for i in 0..a.len() {
        if i > 0 && a[i - 1] > a[i] {
            return 0;
        }
        h = h.wrapping_mul(P).wrapping_add(a[i]);
    }
    h
}

/// sort.h's sort_rec_check.
fn check_rec(a: &[(u64, u64)]) -> u64 {
    let mut h: u64 = 1;
    for i in 0..a.len() {
        if i > 0 && a[i - 1].0 > a[i].0 {
            return 0;
        }
        h = h.wrapping_mul(P).wrapping_add(a[i].0);
        h = h.wrapping_mul(P).wrapping_add(a[i].1);
    }
    h
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

fn parse(s: &str, what: &str) -> usize {
    match s.parse() {
        Ok(v) => v,
        Err(_) => {
            eprintln!("bench_sort_rayon: bad {} '{}'", what, s);
            exit(2);
        }
    }
}

/// Time sort() on fresh copies of input; return the median and the check.
fn time_sorts<T: Copy + Send>(
    pool: &rayon::ThreadPool,
    input: &[T],
    reps: usize,
    sort: impl Fn(&mut [T]) + Sync,
    chk: impl Fn(&[T]) -> u64,
    bname: &str,
    imp: &str,
) -> (f64, u64) {
    let mut work: Vec<T> = input.to_vec();
    let mut t = Vec::with_capacity(reps);
    let mut first = 0;
    for r in 0..=reps {
        work.copy_from_slice(input);
        let t0 = Instant::now();
        pool.install(|| sort(&mut work));
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        let c = chk(&work);
        if c == 0 {
            fail(bname, imp, "not sorted");
        }
        if r == 0 {
            first = c;
        } else {
            t.push(ms);
        }
    }
    (median(&mut t), first)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: bench_sort_rayon [rec:]rayon-unstable|rayon-stable WORKERS REPS SIZE");
        exit(2);
    }
    let (rec, imp) = match args[1].strip_prefix("rec:") {
        Some(i) => (true, i),
        None => (false, args[1].as_str()),
    };
    let bench = if rec { "sort-rec" } else { "sort" };
    let workers = parse(&args[2], "WORKERS");
    let reps = parse(&args[3], "REPS");
    let n = parse(&args[4], "SIZE");
    if workers < 1 || reps < 1 || reps > 101 || n < 1 {
        eprintln!("bench_sort_rayon: bad argument (workers >= 1, 1 <= reps <= 101, size >= 1)");
        exit(2);
    }
    let stable = match imp {
        "rayon-unstable" => false,
        "rayon-stable" => true,
        _ => fail(bench, imp, "unknown implementation"),
    };
    let pool = match rayon::ThreadPoolBuilder::new().num_threads(workers).build() {
        Ok(p) => p,
        Err(e) => fail(bench, imp, &format!("cannot build the thread pool: {}", e)),
    };
    let keys = input(n);
    let (ms, c) = if rec {
        let recs: Vec<(u64, u64)> = keys.iter().enumerate().map(|(i, &k)| (k, i as u64)).collect();
        drop(keys);
        if stable {
            time_sorts(&pool, &recs, reps, |v| v.par_sort_by_key(|r| r.0), check_rec, bench, imp)
        } else {
            time_sorts(&pool, &recs, reps, |v| v.par_sort_unstable_by_key(|r| r.0), check_rec, bench, imp)
        }
    } else if stable {
        time_sorts(&pool, &keys, reps, |v| v.par_sort(), check, bench, imp)
    } else {
        time_sorts(&pool, &keys, reps, |v| v.par_sort_unstable(), check, bench, imp)
    };
    println!("RESULT {} {} {} {:.3} {}", bench, imp, workers, ms, c);
}
