#!/bin/sh
# tools/bench/algo/run.sh BUILD_DIR - Moirai's parallel sort side by side
# with qsort, std::sort, std::stable_sort, oneTBB's parallel_sort,
# libstdc++'s std::sort(std::execution::par) and __gnu_parallel::sort, and
# rayon's par_sort_unstable and par_sort; its scan against a loop and
# oneTBB's parallel_scan; its find_first against a loop; its pipelines
# against a loop, oneTBB's parallel_pipeline and pthreads with queues; its
# 2-D loop against a loop and oneTBB's blocked_range2d.
#
# Sorts SORT_N (default 10^7) random 64-bit keys, then REC_N (default
# 10^7) 16-byte records (the same keys with a payload) by key, then
# SORT_BIG_N keys (default 0: skipped; the issue's size is 10^8, which
# takes about 10 minutes and 2 GB): each program runs once to warm up and
# BENCH_REPS (default 5; BIG_REPS, default 1, for SORT_BIG_N) timed times,
# each time on a fresh copy of the same input, timing the sort alone; every
# answer is checked (the array ascending, and a position hash equal to the
# others'). Prints a markdown table per benchmark of the medians with
# ratios against its first row (qsort, the sequential loop) and against
# Moirai, saved as BUILD_DIR/bench/algo.md; raw lines in
# BUILD_DIR/bench/algo.txt:
#
#	RESULT <sort|sort-rec|sort-big|scan|find|pipe|grid> <impl> <workers> <median_ms> <check>
#
# Scan: an inclusive prefix sum of SCAN_N (default 10^8) doubles, Moirai's
# add called through the operation pointer, TBB's inlined. Find: the one
# nonzero byte at 1% of FIND_N (default 10^8) bytes, the predicate through
# a pointer for the loop and for Moirai. Answers are checked the same way
# (the last prefix, the index). moirai-sum is mr_parallel_scan_sum_double.
#
# Pipe: read a file of PIPE_MB (default 256) MiB in 64 KiB blocks (serial,
# in order), transform each word (parallel), write them to a file (serial,
# in order), at most 4 blocks per worker alive: a loop, mr_pipeline
# (moirai), mr_pipeline_fibers (moirai-fibers), tbb::parallel_pipeline,
# and by hand with pthreads and queues (WORKERS transform threads, plus a
# reader and the writer);
# the check is an order-dependent hash of what was written. The files are
# BUILD_DIR/bench/pipe.in (made once) and pipe.out. Grid: the transpose of
# a GRID_N x GRID_N (default 4096) matrix of doubles in 64 x 64 tiles: a
# loop over tiles, mr_parallel_for_2d, tbb::parallel_for on a
# blocked_range2d (grains 64, auto_partitioner).
#
# The parallel implementations run at 1 and 2 workers, the sequential
# sorts at 1. Moirai's comparator is the qsort-form function through a
# pointer (as for qsort), except for moirai-u64 (mr_parallel_sort_u64)
# and moirai-key / moirai-key-stable (mr_parallel_sort_key_u64 on 8-byte
# records, or with rec: on the 16-byte ones), radix sorts with no
# comparison at all; the C++
# and Rust sorts inline their comparison, and std-sort-fnptr shows what
# the pointer costs std::sort. Needs gcc, g++ (with libgomp), libtbb-dev,
# and for the rayon rows cargo and
# librust-rayon-dev (tools/deps.sh bench); without oneTBB or rayon their
# rows are left out. The rayon program builds offline against Debian's
# crates, from a copy of tools/bench/algo/rayon in BUILD_DIR/bench.
# Environment: BENCH_CC / BENCH_CXX, BENCH_REPS, SORT_N, REC_N, SORT_BIG_N,
# BIG_REPS, SCAN_N, FIND_N, PIPE_MB, GRID_N,
# BENCH_QUICK=1 (10^5 of each, 1 repetition: checks that everything builds
# and agrees; its timings mean nothing).
set -eu

die() {
	echo "algo/run.sh: $*" >&2
	exit 1
}

[ $# -eq 1 ] || {
	echo "usage: $0 BUILD_DIR   (the directory holding libmoirai.a, e.g. build)" >&2
	exit 2
}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
[ -f "$1/libmoirai.a" ] || die "'$1/libmoirai.a' is missing: build the library first (make lib)"
BUILD=$(cd "$1" && pwd)
OUT=$BUILD/bench
mkdir -p "$OUT"

CC=${BENCH_CC:-gcc}
CXX=${BENCH_CXX:-g++}
REPS=${BENCH_REPS:-5}
N=${SORT_N:-10000000}
REC_N=${REC_N:-10000000}
BIG_N=${SORT_BIG_N:-0}
BIG_REPS=${BIG_REPS:-1}
SCAN_N=${SCAN_N:-100000000}
FIND_N=${FIND_N:-100000000}
PIPE_MB=${PIPE_MB:-256}
GRID_N=${GRID_N:-4096}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
	REPS=1 N=100000 REC_N=100000 BIG_N=0 SCAN_N=100000 FIND_N=100000 PIPE_MB=2 GRID_N=300
fi

echo "algo/run.sh: building into $1/bench" >&2
"$CC" -O2 -g -std=gnu11 -Wall -Wextra -I "$ROOT/include" "$HERE/sort.c" "$BUILD/libmoirai.a" \
	-o "$OUT/bench_sort_c" -pthread -lm || die "building the C sort benchmark failed"
TBB=""
if [ -f /usr/include/oneapi/tbb/parallel_sort.h ]; then
	TBB="-DHAVE_TBB -ltbb"
else
	echo "algo/run.sh: no oneTBB (libtbb-dev): its rows are left out" >&2
fi
# shellcheck disable=SC2086 # TBB is two words or none
"$CXX" -O2 -g -std=c++17 -Wall -Wextra -fopenmp "$HERE/sort.cpp" -o "$OUT/bench_sort_cxx" $TBB \
	-pthread || die "building the C++ sort benchmark failed"
# rayon: Debian's cargo and crates, offline (as tools/bench/run.sh). cargo
# reads .cargo/config.toml from where it runs and writes Cargo.lock beside
# Cargo.toml, so it builds a copy: the source tree stays clean.
RAYON=""
if [ -x /usr/bin/cargo ]; then
	CARGO=/usr/bin/cargo
else
	CARGO=$(command -v cargo 2>/dev/null) || CARGO=""
fi
if [ -n "$CARGO" ] && ls -d /usr/share/cargo/registry/rayon-1.* >/dev/null 2>&1; then
	rm -rf "$OUT/sort-rayon-src"
	mkdir -p "$OUT/sort-rayon-src"
	cp -R "$HERE/rayon/Cargo.toml" "$HERE/rayon/src" "$HERE/rayon/.cargo" "$OUT/sort-rayon-src/"
	if (cd "$OUT/sort-rayon-src" &&
		CARGO_TARGET_DIR="$OUT/sort-rayon-target" "$CARGO" build --release --offline) \
		>"$OUT/build-sort-rayon.log" 2>&1; then
		cp "$OUT/sort-rayon-target/release/bench_sort_rayon" "$OUT/bench_sort_rayon"
		RAYON=1
	else
		echo "algo/run.sh: building the rayon sort failed (see $OUT/build-sort-rayon.log): its rows are left out" >&2
	fi
else
	echo "algo/run.sh: no cargo or no librust-rayon-dev: the rayon rows are left out" >&2
fi
"$CC" -O2 -g -std=gnu11 -Wall -Wextra -I "$ROOT/include" "$HERE/scan.c" "$BUILD/libmoirai.a" \
	-o "$OUT/bench_scan_c" -pthread -lm || die "building the C scan benchmark failed"
for b in pipe grid; do
	"$CC" -O2 -g -std=gnu11 -Wall -Wextra -I "$ROOT/include" "$HERE/$b.c" "$BUILD/libmoirai.a" \
		-o "$OUT/bench_${b}_c" -pthread -lm || die "building the C $b benchmark failed"
done
if [ -n "$TBB" ]; then
	for b in scan pipe grid; do
		"$CXX" -O2 -g -std=c++17 -Wall -Wextra "$HERE/$b.cpp" -o "$OUT/bench_${b}_tbb" -ltbb \
			-pthread || die "building the oneTBB $b benchmark failed"
	done
fi

RES=$OUT/algo.txt
: >"$RES"
# run PROG IMPL WORKERS [SIZE [REPS [BENCH]]]: BENCH renames the RESULT's benchmark
run() {
	"$OUT/$1" "$2" "$3" "${5:-$REPS}" "${4:-$N}" >"$OUT/algo-last.out" || die "FAILED: $1 $2 $3"
	grep '^RESULT ' "$OUT/algo-last.out" | awk -v b="${6:-}" 'b != "" { $2 = b } { print }' |
		tee -a "$RES" | sed 's/^/  /' >&2
}
# sorts PREFIX SIZE REPS [BENCH]: every sort of keys (PREFIX "") or records ("rec:")
sorts() {
	run bench_sort_c "${1}qsort" 1 "$2" "$3" "${4:-}"
	run bench_sort_cxx "${1}std-sort" 1 "$2" "$3" "${4:-}"
	[ -z "$1" ] && run bench_sort_cxx std-sort-fnptr 1 "$2" "$3" "${4:-}"
	run bench_sort_cxx "${1}std-stable" 1 "$2" "$3" "${4:-}"
	for w in 1 2; do
		run bench_sort_c "${1}moirai" "$w" "$2" "$3" "${4:-}"
		run bench_sort_c "${1}moirai-stable" "$w" "$2" "$3" "${4:-}"
		[ -z "$1" ] && run bench_sort_c moirai-u64 "$w" "$2" "$3" "${4:-}"
		run bench_sort_c "${1}moirai-key" "$w" "$2" "$3" "${4:-}"
		run bench_sort_c "${1}moirai-key-stable" "$w" "$2" "$3" "${4:-}"
		if [ -n "$TBB" ]; then
			run bench_sort_cxx "${1}tbb" "$w" "$2" "$3" "${4:-}"
			run bench_sort_cxx "${1}std-par" "$w" "$2" "$3" "${4:-}"
		fi
		run bench_sort_cxx "${1}gnu-par" "$w" "$2" "$3" "${4:-}"
		if [ -n "$RAYON" ]; then
			run bench_sort_rayon "${1}rayon-unstable" "$w" "$2" "$3" "${4:-}"
			run bench_sort_rayon "${1}rayon-stable" "$w" "$2" "$3" "${4:-}"
		fi
	done
}
echo "algo/run.sh: sorting $N keys, then $REC_N records (median of $REPS after a warm-up)" >&2
sorts "" "$N" "$REPS"
sorts rec: "$REC_N" "$REPS"
if [ "$BIG_N" -gt 0 ]; then
	echo "algo/run.sh: sorting $BIG_N keys (median of $BIG_REPS after a warm-up)" >&2
	sorts "" "$BIG_N" "$BIG_REPS" sort-big
fi
echo "algo/run.sh: scan of $SCAN_N doubles, find_first in $FIND_N bytes" >&2
run bench_scan_c scan:seq 1 "$SCAN_N"
for w in 1 2; do
	run bench_scan_c scan:moirai "$w" "$SCAN_N"
	run bench_scan_c scan:moirai-sum "$w" "$SCAN_N"
	[ -n "$TBB" ] && run bench_scan_tbb scan:tbb "$w" "$SCAN_N"
done
run bench_scan_c find:seq 1 "$FIND_N"
for w in 1 2; do
	run bench_scan_c find:moirai "$w" "$FIND_N"
done
echo "algo/run.sh: pipeline over $PIPE_MB MiB, transpose of $GRID_N^2 doubles" >&2
export PIPE_IN="$OUT/pipe.in" PIPE_OUT="$OUT/pipe.out"
run bench_pipe_c pipe:seq 1 "$PIPE_MB"
for w in 1 2; do
	run bench_pipe_c pipe:moirai "$w" "$PIPE_MB"
	run bench_pipe_c pipe:moirai-fibers "$w" "$PIPE_MB"
	run bench_pipe_c pipe:pthreads "$w" "$PIPE_MB"
	[ -n "$TBB" ] && run bench_pipe_tbb pipe:tbb "$w" "$PIPE_MB"
done
rm -f "$PIPE_OUT"
run bench_grid_c grid:seq 1 "$GRID_N"
for w in 1 2; do
	run bench_grid_c grid:moirai "$w" "$GRID_N"
	[ -n "$TBB" ] && run bench_grid_tbb grid:tbb "$w" "$GRID_N"
done

commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")
awk -v reps="$REPS" -v commit="$commit" -v ncpu="$(nproc)" -v out="$OUT/algo.md" \
	-v title_sort="Sort of $N random uint64" \
	-v title_rec="Sort of $REC_N 16-byte records (uint64 key, payload) by key" \
	-v title_big="Sort of $BIG_N random uint64" \
	-v title_scan="Inclusive prefix sum of $SCAN_N doubles" \
	-v title_find="find_first of the one hit at 1% of $FIND_N bytes" \
	-v title_pipe="Pipeline read / transform / write of $PIPE_MB MiB in 64 KiB blocks" \
	-v title_grid="Transpose of a $GRID_N x $GRID_N matrix of doubles in 64 x 64 tiles" '
$1 == "RESULT" {
	k = $2 " " $3 " " $4; ms[k] = $5 + 0; chk[k] = $6
	if (!($2 in first)) { first[$2] = k; border[++nb] = $2 }
	else if (chk[k] != chk[first[$2]]) {
		print "algo/run.sh: CHECK FAILED: " k " disagrees with " first[$2] > "/dev/stderr"
		bad = 1
	}
	rows[$2] = rows[$2] SUBSEP k
}
END {
	printf "Commit %s, %d CPUs, median of %d runs after a warm-up.\n", commit, ncpu, reps > out
	for (b = 1; b <= nb; b++) {
		bn = border[b]
		t = bn == "sort" ? title_sort : bn == "sort-rec" ? title_rec : bn == "sort-big" ? title_big : \
		    bn == "scan" ? title_scan : bn == "find" ? title_find : \
		    bn == "pipe" ? title_pipe : title_grid
		split(first[bn], fp, " ")
		printf "\n## %s\n\n", t > out
		printf "| implementation | workers | median ms | %s / this | this / Moirai (same workers) |\n", fp[2] > out
		print "|---|---|---|---|---|" > out
		nr = split(substr(rows[bn], 2), r, SUBSEP)
		for (i = 1; i <= nr; i++) {
			split(r[i], p, " ")
			m = ms[bn " moirai " p[3]]
			printf "| %s | %s | " (ms[r[i]] < 10 ? "%.3f" : "%.1f") " | %.2f | %s |\n", p[2], p[3], ms[r[i]], \
				ms[first[bn]] / ms[r[i]], m ? sprintf("%.2f", ms[r[i]] / m) : "-" > out
		}
	}
	close(out)
	exit bad
}' "$RES" || die "answers disagree"
cat "$OUT/algo.md"
