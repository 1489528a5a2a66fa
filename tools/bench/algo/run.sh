#!/bin/sh
# tools/bench/algo/run.sh BUILD_DIR - Moirai's parallel sort side by side
# with qsort, std::sort, std::stable_sort and oneTBB's parallel_sort.
#
# Sorts SIZE (default 10^7) random 64-bit keys: each program runs once to
# warm up and BENCH_REPS (default 5) timed times, each time on a fresh copy
# of the same input, timing the sort alone; every answer is checked (the
# array ascending, and a position hash equal to the others'). Prints a
# markdown table of the medians with ratios against qsort and against
# Moirai, saved as BUILD_DIR/bench/algo.md; raw lines in
# BUILD_DIR/bench/algo.txt:
#
#	RESULT sort <impl> <workers> <median_ms> <check>
#
# Moirai and oneTBB run at 1 and 2 workers, the sequential sorts at 1.
# Moirai's comparator is the qsort-form function through a pointer (as
# for qsort), except for moirai-u64 (mr_parallel_sort_u64, compiled in);
# std::sort and TBB inline operator<, and std-sort-fnptr shows what the
# pointer costs std::sort. Needs gcc, g++ and libtbb-dev
# (tools/deps.sh bench); without oneTBB its rows are left out.
# Environment: BENCH_CC / BENCH_CXX, BENCH_REPS, SORT_N (keys),
# BENCH_QUICK=1 (10^5 keys, 1 repetition: checks that everything builds
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
if [ "${BENCH_QUICK:-0}" = 1 ]; then
	REPS=1 N=100000
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
"$CXX" -O2 -g -std=c++17 -Wall -Wextra "$HERE/sort.cpp" -o "$OUT/bench_sort_cxx" $TBB -pthread ||
	die "building the C++ sort benchmark failed"

RES=$OUT/algo.txt
: >"$RES"
run() {
	"$OUT/$1" "$2" "$3" "$REPS" "$N" >"$OUT/algo-last.out" || die "FAILED: $1 $2 $3"
	grep '^RESULT ' "$OUT/algo-last.out" | tee -a "$RES" | sed 's/^/  /' >&2
}
echo "algo/run.sh: sorting $N keys (median of $REPS after a warm-up)" >&2
run bench_sort_c qsort 1
run bench_sort_cxx std-sort 1
run bench_sort_cxx std-sort-fnptr 1
run bench_sort_cxx std-stable 1
for w in 1 2; do
	run bench_sort_c moirai "$w"
	run bench_sort_c moirai-stable "$w"
	run bench_sort_c moirai-u64 "$w"
	[ -n "$TBB" ] && run bench_sort_cxx tbb "$w"
done

commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")
awk -v n="$N" -v reps="$REPS" -v commit="$commit" -v ncpu="$(nproc)" -v out="$OUT/algo.md" '
$1 == "RESULT" { k = $3 " " $4; ms[k] = $5 + 0; chk[k] = $6; order[++nk] = k }
END {
	for (i = 1; i <= nk; i++)
		if (chk[order[i]] != chk[order[1]]) {
			print "algo/run.sh: CHECK FAILED: " order[i] " disagrees" > "/dev/stderr"
			bad = 1
		}
	q = ms["qsort 1"]
	printf "## Sort of %d random uint64 (commit %s, %d CPUs, median of %d)\n\n", n, commit, ncpu, reps > out
	print "| implementation | workers | median ms | qsort / this | this / Moirai (same workers) |" > out
	print "|---|---|---|---|---|" > out
	for (i = 1; i <= nk; i++) {
		k = order[i]; split(k, p, " ")
		m = ms["moirai " p[2]]
		printf "| %s | %s | %.1f | %.2f | %s |\n", p[1], p[2], ms[k], q / ms[k], \
			m ? sprintf("%.2f", ms[k] / m) : "-" > out
	}
	close(out)
	exit bad
}' "$RES" || die "answers disagree"
cat "$OUT/algo.md"
