#!/bin/sh
# tools/bench/fiber/run.sh BUILD_DIR - Moirai's fibers side by side with
# Boost.Context, ucontext, Go's goroutines, futexes and pthreads.
#
# Builds the programs of this directory into BUILD_DIR/bench/fiber (the
# Moirai ones link BUILD_DIR/libmoirai.a: build the library first, `make
# bench` does), runs them, checks every count, prints a markdown table of
# ns per operation with ratios and the targets beside them, and saves it as
# BUILD_DIR/bench/fiber.md. Raw lines: BUILD_DIR/bench/fiber/results.txt,
#
#	RESULT <bench> <impl> <workers> <median_ms> <check> [<bytes>]
#
# (bench.h explains them). Benchmarks:
#   switch       context switch ping-pong: Moirai's raw mr__ctx_switch,
#                Boost.Context jump_fcontext, ucontext swapcontext, Go
#                goroutines over unbuffered channels (GOMAXPROCS=1), futex
#                hand-offs between two threads on one and on two CPUs
#   yield        two fibers mr_yield() in turn on 1 worker; Go: Gosched()
#   spawn        mr_go + mr_fiber_join of an empty fiber, one at a time and
#                in batches of 1000, at 1 and 2 workers; Go: go f() + wg.Wait()
#   parked       1,000,000 fibers parked on one wait group: resident bytes
#                per fiber (one process per repetition: the median of REPS)
#   sleepers     100,000 fibers that each sleep 0.5 s, spawned one after
#                another on 1 worker (Go: GOMAXPROCS=1): time per fiber until
#                all have started, resident and page-table bytes per fiber
#                (a fresh process per repetition)
#   mutex        2, 4 and 8 fibers on 2 workers incrementing a counter under
#                mr_mutex_t; pthread_mutex_t threads; sync.Mutex goroutines
# Each program runs its benchmark once to warm up and REPS timed times and
# reports the median. The targets are printed, not asserted.
#
# While libmoirai.a has no fiber API yet (no mr_go), the Moirai fiber rows
# read "n/a" and everything else still runs.
#
# Needs gcc, g++, libboost-context-dev and golang-go (tools/deps.sh bench).
# Go builds offline (GO111MODULE=off) with its cache and GOPATH in
# BUILD_DIR/bench/fiber. Environment: BENCH_CC / BENCH_CXX (gcc / g++), BENCH_GO
# (go), BENCH_REPS (5), BENCH_TIMEOUT (seconds one program may take, 150),
# BENCH_QUICK=1 (tiny sizes, 1 repetition: checks that everything builds
# and agrees, in seconds; its timings mean nothing).
set -eu

die() {
	echo "fiber/run.sh: $*" >&2
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
OUT=$BUILD/bench/fiber
mkdir -p "$OUT"

# Two runs in one build directory would mix their result files (and skew
# each other's timings): the second waits for the first.
if command -v flock >/dev/null 2>&1; then
	exec 9>"$OUT/.lock"
	if ! flock -n 9; then
		echo "fiber/run.sh: another run is using $1/bench/fiber: waiting for it" >&2
		flock 9
	fi
fi

CC=${BENCH_CC:-gcc}
CXX=${BENCH_CXX:-g++}
GO=${BENCH_GO:-go}
REPS=${BENCH_REPS:-5}
# Sizes: operations per timed run, chosen so that a run takes 0.1-0.5 s here.
if [ "${BENCH_QUICK:-0}" = 1 ]; then
	REPS=1
	RAW_N=10000 UC_N=1000 GOSW_N=10000 FUTEX_N=200 YIELD_N=10000
	SPAWN_N=10000 PARKED_N=10000 MUTEX_N=8000 SLEEPERS_N=1000
else
	RAW_N=10000000 UC_N=100000 GOSW_N=1000000 FUTEX_N=20000 YIELD_N=1000000
	SPAWN_N=1000000 PARKED_N=1000000 MUTEX_N=4000000 SLEEPERS_N=100000
fi
NCPU=$(nproc 2>/dev/null || echo 1)

CFLAGS="-O2 -g -std=gnu11 -Wall -Wextra"
CXXFLAGS="-O2 -g -std=c++17 -Wall -Wextra"

# ---- build ------------------------------------------------------------------

# build WHAT HINT COMMAND...: run COMMAND, and on failure say what failed and why.
build() {
	what=$1 hint=$2
	shift 2
	log=$OUT/build-$what.log
	if ! "$@" >"$log" 2>&1; then
		echo "fiber/run.sh: building the $what benchmark failed ($hint). Last lines of $log:" >&2
		tail -n 25 "$log" | sed 's/^/    /' >&2
		exit 1
	fi
}

command -v "$CC" >/dev/null 2>&1 || die "no C compiler '$CC' (tools/deps.sh bench installs gcc)"
command -v "$CXX" >/dev/null 2>&1 || die "no C++ compiler '$CXX' (tools/deps.sh bench installs g++)"
command -v "$GO" >/dev/null 2>&1 || die "no Go compiler '$GO' (tools/deps.sh bench installs golang-go)"

echo "fiber/run.sh: building into $1/bench/fiber" >&2
build moirai-raw "does $1/libmoirai.a have mr__ctx_switch (user/fiber/switch_*.S)?" \
	"$CC" $CFLAGS "$HERE/moirai_raw.c" "$LIB" -o "$OUT/bench_fiber_moirai_raw"
build ucontext "the C compiler" \
	"$CC" $CFLAGS "$HERE/ucontext.c" -o "$OUT/bench_fiber_ucontext"
build threads "the C compiler" \
	"$CC" $CFLAGS "$HERE/threads.c" -o "$OUT/bench_fiber_threads" -pthread
build boost "needs g++ and libboost-context-dev: tools/deps.sh bench" \
	"$CXX" $CXXFLAGS "$HERE/boost.cpp" -o "$OUT/bench_fiber_boost" -lboost_context
# Go: stdlib only, offline, nothing written outside the build directory.
build go "needs golang-go: tools/deps.sh bench" \
	env GO111MODULE=off GOPROXY=off GOFLAGS= CGO_ENABLED=0 \
	GOCACHE="$OUT/go-cache" GOPATH="$OUT/go-path" \
	"$GO" build -o "$OUT/bench_fiber_go" "$HERE/go/main.go"

# The fiber API may not be in the library yet: then the Moirai rows are n/a.
HAVE_FIBERS=0
if nm "$LIB" 2>/dev/null | grep -q ' T mr_go$'; then
	HAVE_FIBERS=1
	build moirai "does $1/libmoirai.a match include/?" \
		"$CC" $CFLAGS -I "$ROOT/include" "$HERE/moirai.c" "$LIB" \
		-o "$OUT/bench_fiber_moirai" -pthread -lm
else
	echo "fiber/run.sh: warning: $1/libmoirai.a has no mr_go yet: the Moirai fiber rows will read n/a" >&2
fi

# ---- run --------------------------------------------------------------------

RES=$OUT/results.txt
rm -f "$BUILD/bench/fiber.md"
: >"$RES"
load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
	echo "fiber/run.sh: warning: load average $load - other work on this machine skews the timings" >&2
fi
echo "fiber/run.sh: running (median of $REPS runs after a warm-up)" >&2

# A hung program (a deadlock) fails the run instead of blocking it.
LIMIT=${BENCH_TIMEOUT:-150}
TIMEOUT=""
command -v timeout >/dev/null 2>&1 && TIMEOUT="timeout $LIMIT"

# bench PROG BENCH WORKERS REPS SIZE EXPECT: run one program, check that it
# counted EXPECT operations, keep its RESULT line.
bench() {
	prog=$1 b=$2 w=$3 reps=$4 size=$5 expect=$6
	rc=0
	$TIMEOUT "$OUT/$prog" "$b" "$w" "$reps" "$size" >"$OUT/last.out" 2>"$OUT/last.err" || rc=$?
	if [ $rc -ne 0 ]; then
		cat "$OUT/last.out" "$OUT/last.err" >&2
		[ $rc -eq 124 ] && die "FAILED: $prog $b $w $reps $size did not finish in ${LIMIT}s"
		die "FAILED (exit $rc): $prog $b $w $reps $size"
	fi
	grep '^RESULT ' "$OUT/last.out" >"$OUT/last.res" || die "no RESULT line from $prog $b"
	got=$(awk '{ print $6 }' "$OUT/last.res")
	[ "$got" = "$expect" ] || die "CHECK FAILED: $prog $b $w: counted $got operations, expected $expect"
	sed 's/^/  /' "$OUT/last.res" >&2
	cat "$OUT/last.res" >>"$RES"
}

# Moirai's fiber programs, only when the library has fibers.
mbench() {
	[ "$HAVE_FIBERS" = 1 ] && bench bench_fiber_moirai "$@"
	return 0
}

# switch: SIZE round trips, counted by the other side
bench bench_fiber_moirai_raw switch 1 "$REPS" "$RAW_N" "$RAW_N"
bench bench_fiber_boost switch 1 "$REPS" "$RAW_N" "$RAW_N"
bench bench_fiber_ucontext switch 1 "$REPS" "$UC_N" "$UC_N"
bench bench_fiber_go switch 1 "$REPS" "$GOSW_N" "$GOSW_N"
bench bench_fiber_threads switch 1 "$REPS" "$FUTEX_N" "$FUTEX_N"
[ "$NCPU" -ge 2 ] && bench bench_fiber_threads switch 2 "$REPS" "$FUTEX_N" "$FUTEX_N"
# yield: SIZE yields by each of two fibers
mbench yield 1 "$REPS" "$YIELD_N" $((2 * YIELD_N))
bench bench_fiber_go yield 1 "$REPS" "$YIELD_N" $((2 * YIELD_N))
# spawn: SIZE fibers, each sets its own byte
for w in 1 2; do
	for b in spawn spawn-batch; do
		mbench "$b" "$w" "$REPS" "$SPAWN_N" "$SPAWN_N"
		bench bench_fiber_go "$b" "$w" "$REPS" "$SPAWN_N" "$SPAWN_N"
	done
done
# parked: a fresh process per repetition (freed stacks stay resident)
for r in $(seq "$REPS"); do
	mbench parked 2 1 "$PARKED_N" "$PARKED_N"
	bench bench_fiber_go parked 2 1 "$PARKED_N" "$PARKED_N"
done
# sleepers: a fresh process per repetition, the two side by side
for r in $(seq "$REPS"); do
	mbench sleepers 1 1 "$SLEEPERS_N" "$SLEEPERS_N"
	bench bench_fiber_go sleepers 1 1 "$SLEEPERS_N" "$SLEEPERS_N"
done
# mutex: WORKERS contenders share one lock; SIZE increments in all
for n in 2 4 8; do
	mbench mutex "$n" "$REPS" "$MUTEX_N" "$MUTEX_N"
	bench bench_fiber_threads mutex "$n" "$REPS" "$MUTEX_N" "$MUTEX_N"
	bench bench_fiber_go mutex "$n" "$REPS" "$MUTEX_N" "$MUTEX_N"
done

# ---- tabulate ---------------------------------------------------------------

cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: *//' || true)
ccv=$("$CC" --version | head -n 1)
boostv=$(dpkg-query -W -f='${Version}' libboost-context-dev 2>/dev/null || echo "?")
gov=$("$GO" version 2>/dev/null | sed 's/^go version //')
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")

awk -v reps="$REPS" -v parkedn="$PARKED_N" -v sleepn="$SLEEPERS_N" -v mutexn="$MUTEX_N" -v have="$HAVE_FIBERS" -v ncpu="$NCPU" \
	-v cpu="$cpu" -v ccv="$ccv" -v boostv="$boostv" -v gov="$gov" -v commit="$commit" \
	-v date="$(date -u '+%Y-%m-%d %H:%M UTC')" -v out="$BUILD/bench/fiber.md" '
function median(s,    n, a, i, j, t) {
	n = split(s, a, " ")
	for (i = 2; i <= n; i++)	# insertion sort: a handful of values
		for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
	return n % 2 ? a[(n + 1) / 2] + 0 : (a[n / 2] + a[n / 2 + 1]) / 2
}
function has(b, i, w) { return ((b SUBSEP i SUBSEP w) in ms) }
# ns per operation; a switch round trip is two switches
function ns(b, i, w) {
	if (!has(b, i, w)) return -1
	return ms[b, i, w] * 1e6 / ops[b, i, w] / (b == "switch" ? 2 : 1)
}
function fmt(x) { return x < 0 ? "n/a" : sprintf(x < 10 ? "%.2f" : x < 1000 ? "%.1f" : "%.0f", x) }
function ratio(x, y) { return (x < 0 || y <= 0) ? "n/a" : sprintf("%.2f", x / y) }
# "met" or "**missed**" for value x against limit (x <= limit), n/a when not measured
function target(x, limit) { return x < 0 ? "not measured" : x <= limit ? "met" : "**missed**" }
$1 == "RESULT" {
	k = $2 SUBSEP $3 SUBSEP $4
	if (!(k in n)) order[++nk] = k
	n[k]++; t[k] = t[k] " " $5; c[k] = $6; if (NF >= 7) by[k] = by[k] " " $7
	if (NF >= 8) pt[k] = pt[k] " " $8
}
END {
	for (j = 1; j <= nk; j++) {
		k = order[j]
		ms[k] = median(t[k]); ops[k] = c[k] + 0
		if (k in by) bytes[k] = median(by[k])
		if (k in pt) ptes[k] = median(pt[k])
	}
	o = "# Moirai fibers side by side\n\n"
	o = o sprintf("%s, commit %s. %s CPUs (%s). %s; Boost.Context %s; %s.\n", date, commit, ncpu, cpu, ccv, boostv, gov)
	o = o sprintf("Every time is the median of %d timed runs after one warm-up (memory: of %d fresh processes); every count was checked. ", reps, reps)
	o = o "Targets are those of the fiber issue, shown, not enforced.\n"
	if (!have) o = o "\n**libmoirai.a had no fiber API (mr_go) when this ran: the Moirai fiber rows read n/a.**\n"

	o = o "\n## Context switch ping-pong\n\n"
	o = o "Two contexts hand control to each other; ns per one-way switch. Raw switches run on one thread with a 64 KiB stack, and each returns to the call site of the other side (as a worker and its fibers do). "
	o = o "Boost.Context is `boost::context::detail::jump_fcontext`/`make_fcontext` (the layer under callcc and Boost.Fiber). "
	o = o "Futex hand-offs are raw FUTEX_WAIT/FUTEX_WAKE without spinning. The yield rows go through the scheduler: two fibers on one worker each call `mr_yield()` (Go: `runtime.Gosched()`, GOMAXPROCS=1).\n\n"
	o = o "| implementation | ns per switch | vs Moirai raw |\n|---|---:|---:|\n"
	raw = ns("switch", "moirai-raw", 1)
	rows = "switch moirai-raw 1|**Moirai** raw `mr__ctx_switch`;switch boost 1|Boost.Context `jump_fcontext`;switch ucontext 1|ucontext `swapcontext`;"
	rows = rows "switch go 1|Go goroutines, unbuffered channels, GOMAXPROCS=1;switch threads 1|futex ping-pong, 2 threads on 1 CPU;switch threads 2|futex ping-pong, 2 threads on 2 CPUs;"
	rows = rows "yield moirai 1|**Moirai** `mr_yield` ping-pong, 1 worker;yield go 1|Go `runtime.Gosched` ping-pong, GOMAXPROCS=1"
	nr = split(rows, row, ";")
	for (j = 1; j <= nr; j++) {
		split(row[j], rw, "|"); split(rw[1], key, " ")
		if (key[1] == "switch" && key[3] == 2 && ncpu < 2) continue
		x = ns(key[1], key[2], key[3])
		o = o "| " rw[2] " | " fmt(x) " | " ratio(x, raw) " |\n"
	}
	boost = ns("switch", "boost", 1); y = ns("yield", "moirai", 1)
	o = o "\nTargets: raw switch no slower than Boost.Context: Moirai / Boost = " ratio(raw, boost) " (target <= 1.00): " (boost < 0 ? "not measured" : target(raw / boost, 1.0)) ". "
	o = o "`mr_yield` ping-pong " fmt(y) " ns per switch (target <= 25): " target(y, 25) ".\n"

	o = o "\n## Spawn + join of an empty fiber\n\n"
	o = o "ns per fiber. One at a time: `mr_go` + `mr_fiber_join` (Go: `wg.Add(1); go f(); wg.Wait()`); batch: 1000 spawned, then 1000 joined (Go: one `wg.Wait()` per 1000). "
	o = o "Timed inside the main fiber / goroutine; each fiber sets its own byte and every byte is checked.\n\n"
	o = o "| implementation | 1 worker, one at a time | 1 worker, batches | 2 workers, one at a time | 2 workers, batches |\n|---|---:|---:|---:|---:|\n"
	sp = "| **Moirai** |"; sg = "| Go |"; sr = "| Moirai / Go (time) |"; st = "| target <= 150 ns and faster than Go |"
	for (w = 1; w <= 2; w++)
		for (b = 1; b <= 2; b++) {
			bn = b == 1 ? "spawn" : "spawn-batch"
			xm = ns(bn, "moirai", w); xg = ns(bn, "go", w)
			sp = sp " " fmt(xm) " |"; sg = sg " " fmt(xg) " |"; sr = sr " " ratio(xm, xg) " |"
			st = st " " (xm < 0 ? "not measured" : (xm <= 150 && (xg < 0 || xm < xg)) ? "met" : "**missed**") " |"
		}
	o = o sp "\n" sg "\n" sr "\n" st "\n"

	o = o sprintf("\n## %d parked fibers\n\n", parkedn)
	o = o "Each fiber calls `mr_wg_done(&started)` then parks in `mr_wg_wait(&gate)` (Go: the same with `sync.WaitGroup`), 2 workers / GOMAXPROCS=2, default stacks (Moirai 64 KiB, Go 2 KiB growing). "
	o = o "Resident memory is VmRSS once all are parked minus VmRSS before the first spawn, divided by the number of fibers. "
	o = o "The time is from the first spawn until all are parked; on these VMs it is dominated by first-touch page faults of fresh memory.\n\n"
	o = o "| implementation | resident bytes per fiber | KiB per fiber | vs Go | spawn and park, ns per fiber |\n|---|---:|---:|---:|---:|\n"
	bg = -1
	if (("parked" SUBSEP "go" SUBSEP 2) in bytes) bg = bytes["parked", "go", 2] / ops["parked", "go", 2]
	split("moirai go", im, " ")
	for (j = 1; j <= 2; j++) {
		k = "parked" SUBSEP im[j] SUBSEP 2
		bf = (k in bytes) ? bytes[k] / ops[k] : -1
		o = o "| " (im[j] == "go" ? "Go" : "**Moirai**") " | " (bf < 0 ? "n/a" : sprintf("%.0f", bf)) " | " (bf < 0 ? "n/a" : sprintf("%.1f", bf / 1024)) " | " ratio(bf, bg) " | " fmt(ns("parked", im[j], 2)) " |\n"
		if (im[j] == "moirai") bm = bf
	}
	o = o "\nTarget: at most 12 KiB resident per parked fiber: " target(bm, 12288) ".\n"

	o = o sprintf("\n## %d sleeping fibers\n\n", sleepn)
	o = o "The main fiber (goroutine) spawns fibers one after another, each of which sleeps 0.5 s (`mr_sleep_ns`; Go: `time.Sleep`), on 1 worker (GOMAXPROCS=1). "
	o = o "Time per fiber from the first spawn until every fiber has started its sleep; resident bytes (VmRSS growth) and page-table bytes (VmPTE growth) per fiber at that moment. "
	o = o "Medians of " reps " fresh processes each. Both are dominated by touching fresh pages (a Moirai fiber needs one page of its own, the top of its stack; a goroutine less than half of one).\n\n"
	o = o "| implementation | us per fiber | resident bytes per fiber | page-table bytes per fiber |\n|---|---:|---:|---:|\n"
	split("moirai go", im, " ")
	for (j = 1; j <= 2; j++) {
		k = "sleepers" SUBSEP im[j] SUBSEP 1
		us[j] = (k in ms) ? ms[k] * 1000 / ops[k] : -1
		rb[j] = (k in bytes) ? bytes[k] / ops[k] : -1
		pb[j] = (k in ptes) ? ptes[k] / ops[k] : -1
		o = o "| " (im[j] == "go" ? "Go" : "**Moirai**") " | " fmt(us[j]) " | " (rb[j] < 0 ? "n/a" : sprintf("%.0f", rb[j])) " | " (pb[j] < 0 ? "n/a" : sprintf("%.0f", pb[j])) " |\n"
	}
	o = o "| Moirai / Go | " ratio(us[1], us[2]) " | " ratio(rb[1], rb[2]) " | |\n"
	o = o "\nTargets: time per fiber at most that of Go: " (us[1] < 0 || us[2] < 0 ? "not measured" : target(us[1], us[2])) "; resident memory per fiber <= 4 KiB + 64 bytes: " target(rb[1], 4160) ".\n"

	o = o "\n## Mutex hand-off\n\n"
	o = o "N contenders each add 1 to a shared counter under one lock, " mutexn " increments in all (checked exact); ns per lock/unlock pair, from starting the contenders to joining them. "
	o = o "Moirai: N fibers on a 2-worker runtime with `mr_mutex_t`; pthreads: N threads with a default `pthread_mutex_t`; Go: N goroutines with `sync.Mutex`, GOMAXPROCS=2.\n\n"
	o = o "| implementation | 2 contenders | 4 contenders | 8 contenders |\n|---|---:|---:|---:|\n"
	split("moirai threads go", im, " ")
	for (j = 1; j <= 3; j++)
		o = o "| " (im[j] == "moirai" ? "**Moirai** `mr_mutex_t` (fibers)" : im[j] == "threads" ? "`pthread_mutex_t` (threads)" : "Go `sync.Mutex` (goroutines)") " | " fmt(ns("mutex", im[j], 2)) " | " fmt(ns("mutex", im[j], 4)) " | " fmt(ns("mutex", im[j], 8)) " |\n"
	o = o "| Moirai / pthread (time) |"
	for (j = 2; j <= 8; j *= 2)
		o = o " " ratio(ns("mutex", "moirai", j), ns("mutex", "threads", j)) " |"
	o = o "\n"
	o = o "\nRatios are time over time: below 1.00 the first is faster.\n"
	printf "%s", o > out
	close(out)
}' "$RES" || die "tabulating the results failed"

echo >&2
cat "$BUILD/bench/fiber.md"
echo >&2
echo "fiber/run.sh: saved $1/bench/fiber.md" >&2
