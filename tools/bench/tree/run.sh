#!/bin/sh
# tools/bench/tree/run.sh BUILD_DIR - task trees: Moirai's task groups side
# by side with OpenMP tasks (gcc's libgomp), per task spawned and waited for.
#
# Builds bench_tree into BUILD_DIR/bench/tree (it links BUILD_DIR/libmoirai.a:
# build the library first, `make bench` does), runs it for k = 2, 3, 4, 6,
# 8, 12 and 16 children per node at 1 and 2 workers, prints a markdown
# table and saves it as BUILD_DIR/bench/tree.md; raw lines in
# BUILD_DIR/bench/tree/results.txt (main.c explains them).
#
# Every inner node of a complete k-ary tree (the deepest one of at most
# TREE_NODES nodes) does TREE_WORK rounds of work, spawns one task per child,
# waits for them all and adds up their sums: Moirai mr_group_spawn + one
# mr_group_wait per node (group on the node's stack), OpenMP `omp task` +
# `omp taskwait` inside `parallel` + `single`, and the same OpenMP code
# outside any parallel region ("undeferred": libgomp runs each task at once). The sequential recursion runs
# in the same program, and all sides take turns in every round, so a
# neighbour's load hits them alike. "ns/task" is (time - sequential time) /
# tasks: what a task costs to spawn, run and wait for, beyond its work. The
# ratios are medians over the rounds of the per-round ratios. The target
# (issue 13): at 1 worker Moirai's ns/task at most OpenMP's.
#
# Needs gcc with OpenMP (libgomp): tools/deps.sh bench. Environment:
# BENCH_CC (gcc), BENCH_REPS (rounds, default 7), TREE_NODES (default
# 2000000: 270k to 1.4M tasks, depending on k), TREE_WORK (rounds of work
# per node, default 16), BENCH_TIMEOUT (seconds one program may take, 150),
# BENCH_QUICK=1 (tiny trees, 1 round).
set -eu

die() {
	echo "tree/run.sh: $*" >&2
	exit 1
}

[ $# -eq 1 ] || {
	echo "usage: $0 BUILD_DIR   (the directory holding libmoirai.a, e.g. build)" >&2
	exit 2
}

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
[ -d "$1" ] || die "no build directory '$1': build the library first (make lib)"
BUILD=$(cd "$1" && pwd)
LIB=$BUILD/libmoirai.a
[ -f "$LIB" ] || die "'$1/libmoirai.a' is missing: build the library first (make lib)"
OUT=$BUILD/bench/tree
mkdir -p "$OUT"

CC=${BENCH_CC:-gcc}
REPS=${BENCH_REPS:-7}
NODES=${TREE_NODES:-2000000}
WORK=${TREE_WORK:-16}
KS="2 3 4 6 8 12 16"
if [ "${BENCH_QUICK:-0}" = 1 ]; then
	REPS=1 NODES=2000
fi
CFLAGS="-O2 -g -std=gnu11 -Wall -Wextra"

command -v "$CC" >/dev/null 2>&1 || die "no C compiler '$CC' (tools/deps.sh bench installs gcc)"
echo "tree/run.sh: building into $1/bench/tree" >&2
log=$OUT/build.log
if ! { "$CC" $CFLAGS -c "$HERE/node.c" -o "$OUT/node.o" &&
	"$CC" $CFLAGS -fopenmp -I "$ROOT/include" "$HERE/main.c" "$HERE/moirai.c" "$HERE/omp.c" \
		"$OUT/node.o" "$LIB" -o "$OUT/bench_tree" -pthread; } >"$log" 2>&1; then
	echo "tree/run.sh: building failed (needs gcc with OpenMP: tools/deps.sh bench; does $1/libmoirai.a match include/?). Last lines of $log:" >&2
	tail -n 25 "$log" | sed 's/^/    /' >&2
	exit 1
fi

LIMIT=${BENCH_TIMEOUT:-150}
TIMEOUT=""
command -v timeout >/dev/null 2>&1 && TIMEOUT="timeout $LIMIT"
load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
	echo "tree/run.sh: warning: load average $load - other work on this machine skews the timings" >&2
fi
echo "tree/run.sh: running ($REPS rounds after a warm-up, at most $NODES nodes, work $WORK)" >&2

RES=$OUT/results.txt
: >"$RES"
for w in 1 2; do
	for k in $KS; do
		rc=0
		$TIMEOUT "$OUT/bench_tree" "$k" "$w" "$REPS" "$NODES" "$WORK" >"$OUT/last.out" 2>&1 || rc=$?
		if [ $rc -ne 0 ]; then
			cat "$OUT/last.out" >&2
			die "FAILED (exit $rc): bench_tree $k $w $REPS $NODES $WORK"
		fi
		grep -E '^(RESULT|PAIR) ' "$OUT/last.out" >>"$RES" || die "no result from bench_tree $k $w"
		grep -E '^(RESULT|PAIR) ' "$OUT/last.out" | sed 's/^/  /' >&2
	done
done

cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: *//' || true)
ccv=$("$CC" --version | head -n 1)
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")
awk -v reps="$REPS" -v nodes="$NODES" -v work="$WORK" -v cpu="$cpu" -v ccv="$ccv" \
	-v commit="$commit" -v ncpu="$(nproc 2>/dev/null || echo '?')" -v load="$load" \
	-v date="$(date -u '+%Y-%m-%d %H:%M UTC')" -v out="$BUILD/bench/tree.md" '
function f(x) { return sprintf(x < 10 ? "%.2f" : "%.1f", x) }
# A program prints seq, moirai, omp, omp-undeferred: seq and omp-undeferred
# (both on the calling thread) belong to the run of moirai workers.
$1 == "RESULT" && $3 == "seq" { lastseq = $5; next }
$1 == "RESULT" && $3 == "omp-undeferred" { ms[k, $3, runw] = $5; next }
$1 == "RESULT" { k = substr($2, 7); ms[k, $3, $4] = $5; tasks[k] = $7; if ($3 == "moirai") { runw = $4; ms[k, "seq", $4] = lastseq } }
$1 == "PAIR" { k = substr($2, 7); r[k, $3] = $4; ro[k, $3] = $5; ru[k, $3] = $6; rou[k, $3] = $7 }
END {
	o = "# Task trees: Moirai groups vs OpenMP tasks\n\n"
	o = o sprintf("%s, commit %s. %s CPUs (%s), load average %s at the start. %s.\n", date, commit, ncpu, cpu, load, ccv)
	o = o sprintf("Complete k-ary trees of at most %d nodes, %d rounds of work per node, one task per node below the root; medians of %d rounds, all sides in turn in each round.\n", nodes, work, reps)
	o = o "ns/task = (time - sequential time) / tasks. Ratios: medians of the per-round ratios Moirai / OpenMP (time; ns/task). "
	o = o "\"OpenMP undeferred\" is the same OpenMP code run outside any parallel region: libgomp has no team then and runs each task at once as a call (as it does inside a region for `if(0)` tasks or once more than 64 tasks per thread are queued); nothing can be stolen, so it is a floor for 1 worker, not a parallel run.\n\n"
	for (w = 1; w <= 2; w++) {
		o = o sprintf("## %d worker%s\n\n", w, w > 1 ? "s" : "")
		o = o "| k | tasks | sequential (ms, same run) | Moirai (ms) | OpenMP (ms) | Moirai ns/task | OpenMP ns/task | time ratio | ns/task ratio | OpenMP undeferred ns/task | time ratio | ns/task ratio |\n"
		o = o "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
		n = split("2 3 4 6 8 12 16", ks, " ")
		for (j = 1; j <= n; j++) {
			k = ks[j]
			if (!((k, "moirai", w) in ms)) continue
			s = ms[k, "seq", w]; m = ms[k, "moirai", w]; p = ms[k, "omp", w]; u = ms[k, "omp-undeferred", w]
			o = o sprintf("| %d | %d | %s | %s | %s | %.1f | %.1f | **%.2f** | %.2f | %.1f | %.2f | %.2f |\n", k, tasks[k], f(s), f(m), f(p), (m - s) * 1e6 / tasks[k], (p - s) * 1e6 / tasks[k], r[k, w], ro[k, w], (u - s) * 1e6 / tasks[k], ru[k, w], rou[k, w])
		}
		o = o "\n"
	}
	o = o "Target (issue 13): at 1 worker, Moirai ns/task <= OpenMP ns/task (deferred tasks, the first ratios), that is an ns/task ratio <= 1.00.\n"
	printf "%s", o > out
	close(out)
}' "$RES"
cat "$BUILD/bench/tree.md"
echo "tree/run.sh: saved $1/bench/tree.md" >&2
