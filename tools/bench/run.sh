#!/bin/sh
# tools/bench/run.sh BUILD_DIR - Moirai side by side with OpenMP, oneTBB and rayon.
#
# Builds the benchmark programs into BUILD_DIR/bench (the Moirai one links
# BUILD_DIR/libmoirai.a, so build the library first: `make bench` does both),
# runs each benchmark once to warm up and 5 timed times (inside each
# program), checks every answer against the sequential one, prints a
# markdown table of the medians and ratios and saves it as
# BUILD_DIR/bench/results.md. The raw lines are in BUILD_DIR/bench/results.txt:
#
#	RESULT <bench> <impl> <workers> <median_ms> <check>
#
# Benchmarks: fib(32) by fork-join without cutoff at 1 and 2 workers;
# 1,000,000 empty tasks spawned by one task into a group at 2 workers; a
# balanced loop (sum of sqrt(i), i < 200,000,000) and an unbalanced one
# (index i costs i units, i < 30,000) at 2 workers. The loop bodies are the
# same functions everywhere (work.h, and rayon/src/main.rs for Rust).
#
# Needs gcc (with libgomp), g++, libtbb-dev, cargo and librust-rayon-dev:
# tools/deps.sh bench installs them. Environment: BENCH_CC / BENCH_CXX
# (default gcc / g++), BENCH_REPS (timed repetitions, default 5),
# BENCH_TIMEOUT (seconds one program may take, default 150),
# BENCH_QUICK=1 (tiny sizes and 1 repetition: checks that everything
# builds and agrees, in seconds; its timings mean nothing).
set -eu

die() {
	echo "run.sh: $*" >&2
	exit 1
}

[ $# -eq 1 ] || {
	echo "usage: $0 BUILD_DIR   (the directory holding libmoirai.a, e.g. build)" >&2
	exit 2
}

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
[ -d "$1" ] || die "no build directory '$1': build the library first (make lib)"
BUILD=$(cd "$1" && pwd)
LIB=$BUILD/libmoirai.a
[ -f "$LIB" ] || die "'$1/libmoirai.a' is missing: build the library first (make lib)"
OUT=$BUILD/bench
mkdir -p "$OUT"

CC=${BENCH_CC:-gcc}
CXX=${BENCH_CXX:-g++}
REPS=${BENCH_REPS:-5}
WORKERS=2 # the workers of the spawn and loop benchmarks
if [ "${BENCH_QUICK:-0}" = 1 ]; then
	REPS=1 FIB_N=20 SPAWN_N=10000 BAL_N=1000000 UNBAL_N=2000
else
	FIB_N=32 SPAWN_N=1000000 BAL_N=200000000 UNBAL_N=30000
fi

CFLAGS="-O2 -g -std=gnu11 -Wall -Wextra"
CXXFLAGS="-O2 -g -std=c++17 -Wall -Wextra"

# ---- build ------------------------------------------------------------------

# build WHAT HINT COMMAND...: run COMMAND, and on failure say what failed and why.
build() {
	what=$1 hint=$2
	shift 2
	log=$OUT/build-$what.log
	if ! "$@" >"$log" 2>&1; then
		echo "run.sh: building the $what benchmark failed ($hint). Last lines of $log:" >&2
		tail -n 25 "$log" | sed 's/^/    /' >&2
		exit 1
	fi
}

command -v "$CC" >/dev/null 2>&1 || die "no C compiler '$CC' (tools/deps.sh bench installs gcc)"
command -v "$CXX" >/dev/null 2>&1 || die "no C++ compiler '$CXX' (tools/deps.sh bench installs g++)"

echo "run.sh: building into $1/bench" >&2
build sequential "the C compiler" \
	"$CC" $CFLAGS -fno-optimize-sibling-calls -c "$HERE/fib_seq.c" -o "$OUT/fib_seq.o"
build sequential "the C compiler" \
	"$CC" $CFLAGS -falign-functions=64 -c "$HERE/loops.c" -o "$OUT/loops.o"
build sequential "the C compiler" \
	"$CC" $CFLAGS "$HERE/seq.c" "$OUT/fib_seq.o" "$OUT/loops.o" -o "$OUT/bench_seq" -lm
build moirai "does $1/libmoirai.a match include/?" \
	"$CC" $CFLAGS -I "$ROOT/include" "$HERE/moirai.c" "$OUT/loops.o" "$LIB" -o "$OUT/bench_moirai" -pthread -lm
build openmp "needs gcc with OpenMP (libgomp): tools/deps.sh bench" \
	"$CC" $CFLAGS -fopenmp "$HERE/omp.c" "$OUT/loops.o" -o "$OUT/bench_omp" -lm
build tbb "needs g++ and oneTBB (libtbb-dev): tools/deps.sh bench" \
	"$CXX" $CXXFLAGS "$HERE/tbb.cpp" "$OUT/loops.o" -o "$OUT/bench_tbb" -ltbb -pthread

# rayon: Debian's cargo when there is one (that is what CI has), built
# offline against Debian's crates. cargo reads .cargo/config.toml from the
# directory it runs in, and writes Cargo.lock beside Cargo.toml, so it runs
# on a copy of the project in the build directory: the source tree stays clean.
if [ -x /usr/bin/cargo ]; then
	CARGO=/usr/bin/cargo
else
	CARGO=$(command -v cargo 2>/dev/null) ||
		die "building the rayon benchmark failed: no cargo (tools/deps.sh bench installs Debian's cargo)"
fi
ls -d /usr/share/cargo/registry/rayon-1.* >/dev/null 2>&1 ||
	die "building the rayon benchmark failed: no rayon in /usr/share/cargo/registry (tools/deps.sh bench installs librust-rayon-dev)"
rm -rf "$OUT/rayon-src"
mkdir -p "$OUT/rayon-src"
cp -R "$HERE/rayon/Cargo.toml" "$HERE/rayon/src" "$HERE/rayon/.cargo" "$OUT/rayon-src/"
build rayon "needs cargo and librust-rayon-dev: tools/deps.sh bench" \
	sh -c 'cd "$1" && CARGO_TARGET_DIR="$2" "$3" build --release --offline' sh \
	"$OUT/rayon-src" "$OUT/rayon-target" "$CARGO"
cp "$OUT/rayon-target/release/bench_rayon" "$OUT/bench_rayon"

# ---- run --------------------------------------------------------------------

RES=$OUT/results.txt
rm -f "$OUT/results.md"
: >"$RES"
load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
	echo "run.sh: warning: load average $load - other work on this machine skews the timings" >&2
fi
echo "run.sh: running (median of $REPS runs after a warm-up)" >&2

# A hung program (a deadlock) fails the run instead of blocking it.
LIMIT=${BENCH_TIMEOUT:-150}
TIMEOUT=""
command -v timeout >/dev/null 2>&1 && TIMEOUT="timeout $LIMIT"

# bench PROG BENCH WORKERS SIZE: run one program, keep its RESULT lines.
bench() {
	prog=$1
	shift
	rc=0
	$TIMEOUT "$OUT/$prog" "$1" "$2" "$REPS" "$3" >"$OUT/last.out" 2>"$OUT/last.err" || rc=$?
	if [ $rc -ne 0 ]; then
		cat "$OUT/last.out" "$OUT/last.err" >&2
		[ $rc -eq 124 ] && die "FAILED: $prog $1 $2 $REPS $3 did not finish in ${LIMIT}s"
		die "FAILED (exit $rc): $prog $1 $2 $REPS $3"
	fi
	grep '^RESULT ' "$OUT/last.out" >"$OUT/last.res" || die "no RESULT line from $prog $1"
	sed 's/^/  /' "$OUT/last.res" >&2
	cat "$OUT/last.res" >>"$RES"
}

bench bench_seq fib 1 "$FIB_N"
for w in 1 2; do
	for p in bench_moirai bench_omp bench_tbb bench_rayon; do
		bench "$p" fib "$w" "$FIB_N"
	done
done
for p in bench_moirai bench_omp bench_tbb bench_rayon; do
	bench "$p" spawn "$WORKERS" "$SPAWN_N"
done
for b in balanced unbalanced; do
	n=$BAL_N
	[ "$b" = unbalanced ] && n=$UNBAL_N
	bench bench_seq "$b" 1 "$n"
	for p in bench_moirai bench_omp bench_tbb bench_rayon; do
		bench "$p" "$b" "$WORKERS" "$n"
	done
	bench bench_rayon "$b-seq" 1 "$n"
done

# ---- check and tabulate -----------------------------------------------------

cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: *//' || true)
ccv=$("$CC" --version | head -n 1)
rustv=$("$CARGO" --version 2>/dev/null | head -n 1)
rustcv=$(rustc_bin=$(dirname "$CARGO")/rustc && [ -x "$rustc_bin" ] && "$rustc_bin" --version || echo "rustc ?")
tbbv=$(dpkg-query -W -f='${Version}' libtbb-dev 2>/dev/null || echo "?")
rayonv=$(ls -d /usr/share/cargo/registry/rayon-1.* | sed 's/.*rayon-//' | sort -V | tail -n 1)
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")

awk -v reps="$REPS" -v fibn="$FIB_N" -v spawnn="$SPAWN_N" -v baln="$BAL_N" -v unbaln="$UNBAL_N" \
	-v w="$WORKERS" -v ncpu="$(nproc 2>/dev/null || echo '?')" -v cpu="$cpu" -v ccv="$ccv" \
	-v rustv="$rustcv, $rustv" -v tbbv="$tbbv" -v rayonv="$rayonv" -v commit="$commit" \
	-v date="$(date -u '+%Y-%m-%d %H:%M UTC')" -v out="$OUT/results.md" '
function name(i) {
	return i == "seq" ? "sequential C" : i == "moirai" ? "**Moirai**" : i == "omp" ? "OpenMP" : \
	    i == "omp-static" ? "OpenMP static" : i == "omp-dynamic" ? "OpenMP dynamic" : \
	    i == "tbb" ? "oneTBB" : i == "rayon" ? "rayon" : i == "rust-seq" ? "sequential Rust (reference)" : i
}
function bad(msg) { print "run.sh: CHECK FAILED: " msg | "cat 1>&2"; failed = 1 }
function has(b, i, k) { return ((b SUBSEP i SUBSEP k) in ms) }
function get(b, i, k) {
	if (!has(b, i, k)) { bad("no result for " b " " i " at " k " workers"); return 0 }
	return ms[b, i, k]
}
function f1(x) { return sprintf(x < 10 ? "%.2f" : "%.1f", x) }
function f2(x) { return sprintf("%.2f", x) }
# Moirai / best peer among the impls in list (space separated) for bench b at k workers.
function vsbest(b, list, k,    n, a, j, best, bi) {
	n = split(list, a, " ")
	best = -1
	for (j = 1; j <= n; j++)
		if (has(b, a[j], k) && (best < 0 || ms[b, a[j], k] < best)) { best = ms[b, a[j], k]; bi = a[j] }
	if (best <= 0 || !has(b, "moirai", k)) return "-"
	return "**" f2(ms[b, "moirai", k] / best) "** (vs " name(bi) ")"
}
$1 == "RESULT" { ms[$2, $3, $4] = $5 + 0; chk[$2, $3, $4] = $6 ""; key[++nk] = $2 SUBSEP $3 SUBSEP $4 }
END {
	# every answer against the sequential one
	a = 0; b = 1
	for (j = 0; j < fibn; j++) { t = a + b; a = b; b = t }
	fibv = sprintf("%.0f", a)
	if (!has("fib", "seq", 1) || chk["fib", "seq", 1] != fibv)
		bad("sequential fib(" fibn ") is " chk["fib", "seq", 1] ", expected " fibv)
	bs = chk["balanced", "seq", 1] + 0
	us = chk["unbalanced", "seq", 1] ""
	for (j = 1; j <= nk; j++) {
		split(key[j], p, SUBSEP)
		c = chk[key[j]]
		if (p[1] == "fib" && c != fibv)
			bad("fib " p[2] " " p[3] " workers: " c ", expected " fibv)
		if (p[1] == "spawn" && c != spawnn "")
			bad("spawn " p[2] ": " c " tasks ran, expected " spawnn)
		if (p[1] == "balanced") {
			d = c - bs; if (d < 0) d = -d
			if (d > 1e-9 * (bs < 0 ? -bs : bs))
				bad("balanced " p[2] ": sum " c " differs from the sequential " bs)
		}
		if (p[1] == "unbalanced" && c != us)
			bad("unbalanced " p[2] ": sum " c " differs from the sequential " us)
	}
	peers = "omp tbb rayon"
	loopers = "omp-static omp-dynamic tbb rayon"

	o = "# Moirai benchmarks\n\n"
	o = o sprintf("%s, commit %s. %s CPUs (%s). %s; oneTBB %s; rayon %s (%s).\n", date, commit, ncpu, cpu, ccv, tbbv, rayonv, rustv)
	o = o sprintf("Every number is the median of %d timed runs after one warm-up; every answer was checked against the sequential one.\n\n", reps)

	o = o sprintf("## fib(%d): recursive fork-join, no cutoff\n\n", fibn)
	o = o "Both halves of every call are forked: Moirai `mr_join`, OpenMP `task` + `taskwait`, oneTBB `parallel_invoke`, `rayon::join`. "
	o = o "\"vs seq\" is the time divided by the sequential C time (both recursive calls kept).\n\n"
	o = o "| implementation | 1 worker (ms) | vs seq | 2 workers (ms) | vs seq | 1 -> 2 speedup |\n"
	o = o "|---|---:|---:|---:|---:|---:|\n"
	s = get("fib", "seq", 1)
	o = o "| " name("seq") " | " f1(s) " | 1.00 | - | - | - |\n"
	n = split("moirai " peers, im, " ")
	for (j = 1; j <= n; j++) {
		t1 = get("fib", im[j], 1); t2 = get("fib", im[j], 2)
		o = o "| " name(im[j]) " | " f1(t1) " | " f2(t1 / s) " | " f1(t2) " | " f2(t2 / s) " | " (t2 > 0 ? f2(t1 / t2) : "-") " |\n"
	}
	o = o "| Moirai / best peer (time) | " vsbest("fib", peers, 1) " | | " vsbest("fib", peers, 2) " | | |\n\n"

	o = o sprintf("## spawn: %d empty tasks from one task into a group, %d workers\n\n", spawnn, w)
	o = o "Moirai `mr_group_spawn` + `mr_group_wait` (in `mr_runtime_install`), OpenMP `single` + `task` loop + `taskwait`, oneTBB `task_group`, rayon `scope` + `spawn`. Each task sets its own byte.\n\n"
	o = o "| implementation | total (ms) | ns per task | time / Moirai |\n|---|---:|---:|---:|\n"
	m = get("spawn", "moirai", w)
	n = split("moirai " peers, im, " ")
	for (j = 1; j <= n; j++) {
		t = get("spawn", im[j], w)
		o = o "| " name(im[j]) " | " f1(t) " | " sprintf("%.0f", t * 1e6 / spawnn) " | " (m > 0 ? f2(t / m) : "-") " |\n"
	}
	o = o "| Moirai / best peer (time) | " vsbest("spawn", peers, w) " | | |\n\n"

	o = o sprintf("## parallel loops, %d workers\n\n", w)
	o = o sprintf("Balanced: sum of sqrt(i) for i < %d (double). Unbalanced: index i costs i rounds of a dependent xor-shift-multiply, i < %d (exact 64-bit sum). ", baln, unbaln)
	o = o "Moirai `mr_parallel_reduce` with grain 0; OpenMP `parallel for reduction` with `schedule(static)` and `schedule(dynamic)` (over chunks of 65536 indices for the balanced loop, single indices for the unbalanced one); "
	o = o "oneTBB `parallel_reduce` (auto partitioner); rayon adaptive splitting (`rayon::iter::split` + `map` + `sum`/`reduce`). Speedup is sequential C time / time. "
	o = o "The sequential Rust row is the same loop compiled by rustc, for reference.\n\n"
	o = o "| implementation | balanced (ms) | speedup | unbalanced (ms) | speedup |\n|---|---:|---:|---:|---:|\n"
	sb = get("balanced", "seq", 1); su = get("unbalanced", "seq", 1)
	n = split("seq moirai " loopers " rust-seq", im, " ")
	for (j = 1; j <= n; j++) {
		k = (im[j] == "seq" || im[j] == "rust-seq") ? 1 : w
		tb = get("balanced", im[j], k); tu = get("unbalanced", im[j], k)
		o = o "| " name(im[j]) " | " f1(tb) " | " (tb > 0 ? f2(sb / tb) : "-") " | " f1(tu) " | " (tu > 0 ? f2(su / tu) : "-") " |\n"
	}
	o = o "| Moirai / best peer (time) | " vsbest("balanced", loopers, w) " | | " vsbest("unbalanced", loopers, w) " | |\n\n"
	o = o "Ratios \"Moirai / best peer\" are Moirai time over the fastest peer time: below 1.00 Moirai is faster.\n"

	if (failed) exit 1
	printf "%s", o > out
	close(out)
}' "$RES" || die "the results do not agree (see CHECK FAILED above); results.md not written"

echo >&2
cat "$OUT/results.md"
echo >&2
echo "run.sh: saved $1/bench/results.md" >&2
"$HERE/fiber/run.sh" "$1" # the fiber benchmarks: BUILD_DIR/bench/fiber.md
"$HERE/tree/run.sh" "$1"  # task trees, groups vs OpenMP tasks: BUILD_DIR/bench/tree.md
"$HERE/join/run.sh" "$1"  # mr_join vs the plain recursion, rayon: BUILD_DIR/bench/join.md
"$HERE/placement.sh" "$1" # 2-worker placement vs the ideal: BUILD_DIR/bench/placement.md
