#!/bin/sh
# tools/bench/join/run.sh BUILD_DIR - what mr_join costs (issue 18).
#
# Builds bench_join (join.c, kernels.h) into BUILD_DIR/bench/join against
# BUILD_DIR/libmoirai.a and runs it: fib(30), fib(20) x 100, n-queens,
# merge sort, an unbalanced tree and a recursive matrix multiply, each
# sequential, at 1 worker (pinned to CPU 0 like the sequential run) and at
# 2 workers, without and with a hand-written cut-off, interleaved in one
# process (join.c explains the table). Then what a timer-thread heartbeat
# costs against the cycle counter Moirai reads (tick.c), and the heartbeat
# sweep: fib and
# the unbalanced tree with MOIRAI_BEAT_US = 20, 50 and 100. Then rayon::join
# on the same fib, when the rayon benchmark of tools/bench/run.sh has been
# built (BUILD_DIR/bench/bench_rayon), interleaved with Moirai's and the
# sequential fib at 1 and 2 workers.
#
# JOIN_BASE=OTHER_BUILD_DIR also builds against OTHER_BUILD_DIR/libmoirai.a
# and the headers of the checkout that holds it (say, a worktree of an
# older commit) and runs it the same way: the "before" of an A/B.
#
# Environment: JOIN_ROUNDS (31), JOIN_SWEEP_ROUNDS (11), BENCH_CC (gcc),
# JOIN_FIB and the other sizes join.c reads (the main table runs twice:
# with the 20 ms sleep between runs that lets the workers park, and with
# JOIN_GAP_US=0, workers warm), BENCH_QUICK=1 (3 rounds,
# small sizes). Output: BUILD_DIR/bench/join.md.
set -eu

die() {
	echo "join/run.sh: $*" >&2
	exit 1
}

[ $# -eq 1 ] || {
	echo "usage: $0 BUILD_DIR   (the directory holding libmoirai.a, e.g. build)" >&2
	exit 2
}

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
BUILD=$(cd "$1" && pwd) || die "no build directory $1"
OUT=$BUILD/bench/join
CC=${BENCH_CC:-gcc}
ROUNDS=${JOIN_ROUNDS:-31}
SWEEP=${JOIN_SWEEP_ROUNDS:-11}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
	ROUNDS=3 SWEEP=1
	export JOIN_FIB=${JOIN_FIB:-22} JOIN_MSORT=${JOIN_MSORT:-100000}
	export JOIN_UTS=${JOIN_UTS:-2000} JOIN_MM=${JOIN_MM:-64} JOIN_QUEENS=${JOIN_QUEENS:-8}
fi
[ -f "$BUILD/libmoirai.a" ] || die "no $BUILD/libmoirai.a: build the library first (make)"
mkdir -p "$OUT"

# build NAME LIB INCLUDE: bench_join against LIB with INCLUDE's headers.
build() {
	"$CC" -O2 -g -std=gnu11 -fno-optimize-sibling-calls -c "$HERE/../fib_seq.c" \
		-o "$OUT/fib_seq.o" || die "building fib_seq.o failed"
	"$CC" -O2 -g -std=gnu11 -Wall -Wextra -I "$3" "$HERE/join.c" "$OUT/fib_seq.o" "$2" \
		-o "$OUT/$1" -pthread -lm || die "building $1 against $2 failed"
}

build bench_join "$BUILD/libmoirai.a" "$ROOT/include"
"$CC" -O2 -g -std=gnu11 -Wall -Wextra "$HERE/tick.c" -o "$OUT/bench_tick" ||
	die "building bench_tick failed"
if [ -n "${JOIN_BASE:-}" ]; then
	BASE=$(cd "$JOIN_BASE" && pwd) || die "no JOIN_BASE directory $JOIN_BASE"
	BASE_ROOT=$(cd "$BASE/.." && pwd)
	[ -f "$BASE/libmoirai.a" ] || die "no $BASE/libmoirai.a"
	build bench_join_base "$BASE/libmoirai.a" "$BASE_ROOT/include"
fi

load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
	echo "join/run.sh: warning: load average $load - other work on this machine skews the timings" >&2
fi

MD=$BUILD/bench/join.md
{
	echo "# mr_join benchmarks (tools/bench/join/run.sh)"
	echo
	echo "Load average at the start: $load."
	echo
	"$OUT/bench_join" "$ROUNDS" 0
	echo "The same with warm workers (JOIN_GAP_US=0: runs back to back, no sleep"
	echo "between them for the workers to park in):"
	echo
	JOIN_GAP_US=0 "$OUT/bench_join" "$ROUNDS" 0
	if [ -n "${JOIN_BASE:-}" ]; then
		echo "The same, built against $JOIN_BASE (the \"before\"):"
		echo
		"$OUT/bench_join_base" "$ROUNDS" 0
	fi
	echo "### A timer thread against the cycle counter (tick.c)"
	echo
	"$OUT/bench_tick"
	echo
	echo "### Heartbeat interval sweep ($SWEEP rounds each)"
	echo
	for us in 20 50 100; do
		MOIRAI_BEAT_US=$us "$OUT/bench_join" "$SWEEP" 0 | grep -E '^## |^\| (fib|uts) '
		echo
	done
} >"$MD.tmp" || die "bench_join failed"

RAYON=$BUILD/bench/bench_rayon
if [ -x "$RAYON" ]; then
	FIBN=${JOIN_FIB:-30}
	{
		echo "### rayon::join on the same fib($FIBN) (medians of 5 interleaved programs of 11 runs)"
		echo
		for i in 1 2 3 4 5; do
			taskset -c 0 "$BUILD/bench/bench_seq" fib 1 11 "$FIBN"
			for w in 1 2; do
				if [ $w = 1 ]; then pin="taskset -c 0"; else pin=""; fi
				$pin "$RAYON" fib $w 11 "$FIBN"
				$pin "$BUILD/bench/bench_moirai" fib $w 11 "$FIBN"
			done
		done | awk '/^RESULT/ { k = $3 " " $4; v[k] = v[k] " " $5 }
		END {
			print "| implementation | workers | median ms (of 5 medians) |"
			print "|---|---:|---:|"
			for (k in v) {
				n = split(v[k], a, " ")
				for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
					if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
				print "| " k " | " a[int((n + 1) / 2)] " |"
			}
		}' | sed 's/^| \([a-z-]*\) \([0-9]\) |/| \1 | \2 |/'
		echo
		echo "bench_moirai and bench_seq time around mr_runtime_install (tools/bench/run.sh);"
		echo "the table above times inside the runtime."
	} >>"$MD.tmp"
else
	echo "(rayon not built: tools/bench/run.sh builds $RAYON)" >>"$MD.tmp"
fi
mv "$MD.tmp" "$MD"
cat "$MD"
echo "join/run.sh: saved $MD" >&2
