#!/bin/sh
# tools/bench/chan/run.sh BUILD_DIR - Moirai's channels side by side with Go's
# channels, Boost.Lockfree, Concurrency Kit's ck_ring, ZeroMQ inproc sockets
# and a mutex + condition variable ring.
#
# Builds the programs of this directory into BUILD_DIR/bench/chan (the
# Moirai one links BUILD_DIR/libmoirai.a: build the library first, `make
# bench` does), runs them, checks every count, prints a markdown table of
# million messages per second and ns per message with ratios against Go and
# the targets beside them, and saves it as BUILD_DIR/bench/chan.md. Raw
# lines: BUILD_DIR/bench/chan/results.txt,
#
#	RESULT <bench> <impl> <workers> <median_ms> <check>
#
# (bench.h explains them; workers 0 means plain threads). Benchmarks, all
# carrying 8-byte elements:
#   1p1c, 2p2c     throughput through a queue of capacity 1024 (ck_ring:
#                  1024 slots, 1023 usable; ZeroMQ: high-water marks of 512
#                  on each side), 1 producer/1 consumer and 2/2; producers
#                  send distinct values, consumers sum them and check each
#                  producer's order; count and sum must be exact. Moirai as
#                  fibers on a 2-worker runtime and as threads; Go
#                  goroutines with GOMAXPROCS=2; the rest threads (Boost and
#                  ck spin: pause, sched_yield every 64th try).
#   pingpong-cap1  A sends i on one channel, B echoes it on another, A checks
#   pingpong-rdv   it: ns per round trip, capacity 1 and rendezvous
#                  (capacity 0 / unbuffered). Moirai fibers on 1 and on 2
#                  workers and threads; Go at GOMAXPROCS=1 and 2; the mutex
#                  ring (capacity 1 only) with threads.
#   uncontended    one fiber / goroutine / thread sends then receives on a
#                  capacity-1024 queue: ns per send+receive pair.
#   cas            one thread's uncontended compare-and-swap (cas.c; on
#                  x86-64 `lock cmpxchg`): with the raw fiber switch it
#                  gives the floor under a rendezvous hand-off (two such
#                  atomic read-modify-writes and one switch), printed
#                  beside that target.
# Each program runs its benchmark once to warm up and REPS timed times and
# reports the median. The targets are printed, not asserted. The fiber
# ping-pong target compares with the raw context switch measured by
# tools/bench/fiber (BUILD_DIR/bench/fiber/results.txt, when it is there).
#
# While libmoirai.a has no channels yet (no mr_chan_send), the Moirai rows
# read "n/a" and everything else still runs.
#
# Needs gcc, g++, golang-go, libboost-context-dev (whose libboost1.74-dev
# has boost/lockfree), libck-dev and libzmq3-dev: tools/deps.sh bench. Go
# builds offline (GO111MODULE=off) with its cache and GOPATH in
# BUILD_DIR/bench/chan. Environment: BENCH_CC / BENCH_CXX (gcc / g++),
# BENCH_GO (go), BENCH_REPS (5), BENCH_TIMEOUT (seconds one program may
# take, 150), BENCH_QUICK=1 (tiny sizes, 1 repetition: checks that
# everything builds and agrees, in seconds; its timings mean nothing).
set -eu

die() {
	echo "chan/run.sh: $*" >&2
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
OUT=$BUILD/bench/chan
mkdir -p "$OUT"

# Two runs in one build directory would mix their result files (and skew
# each other's timings): the second waits for the first.
if command -v flock >/dev/null 2>&1; then
	exec 9>"$OUT/.lock"
	if ! flock -n 9; then
		echo "chan/run.sh: another run is using $1/bench/chan: waiting for it" >&2
		flock 9
	fi
fi

CC=${BENCH_CC:-gcc}
CXX=${BENCH_CXX:-g++}
GO=${BENCH_GO:-go}
REPS=${BENCH_REPS:-5}
# Sizes: elements (round trips, pairs) per timed run. 10 million elements
# for Moirai, Go and ck_ring; the peers that need 100 ns or more per element
# on a 2-CPU VM (Boost.Lockfree, the mutex ring, ZeroMQ) get 1 million, so
# that a run stays within about half a second. Ping-pong across threads or
# workers costs microseconds per round trip (a futex wake-up), on one
# worker or goroutine scheduler a few hundred ns.
if [ "${BENCH_QUICK:-0}" = 1 ]; then
	REPS=1
	TPUT_N=20000 SLOW_N=20000 PP_N=2000 PP2_N=2000 PPT_N=500 UC_N=20000 CAS_N=20000
else
	TPUT_N=10000000 SLOW_N=1000000 PP_N=1000000 PP2_N=500000 PPT_N=20000 UC_N=10000000
	CAS_N=50000000
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
		echo "chan/run.sh: building the $what benchmark failed ($hint). Last lines of $log:" >&2
		tail -n 25 "$log" | sed 's/^/    /' >&2
		exit 1
	fi
}

command -v "$CC" >/dev/null 2>&1 || die "no C compiler '$CC' (tools/deps.sh bench installs gcc)"
command -v "$CXX" >/dev/null 2>&1 || die "no C++ compiler '$CXX' (tools/deps.sh bench installs g++)"
command -v "$GO" >/dev/null 2>&1 || die "no Go compiler '$GO' (tools/deps.sh bench installs golang-go)"

echo "chan/run.sh: building into $1/bench/chan" >&2
build mutex "the C compiler" \
	"$CC" $CFLAGS "$HERE/mutex.c" -o "$OUT/bench_chan_mutex" -pthread
build cas "the C compiler" \
	"$CC" $CFLAGS "$HERE/cas.c" -o "$OUT/bench_chan_cas" -pthread
build ck "needs libck-dev: tools/deps.sh bench" \
	"$CC" $CFLAGS "$HERE/ck.c" -o "$OUT/bench_chan_ck" -pthread -lck
build zmq "needs libzmq3-dev: tools/deps.sh bench" \
	"$CC" $CFLAGS "$HERE/zmq.c" -o "$OUT/bench_chan_zmq" -pthread -lzmq
build boost "needs g++ and Boost.Lockfree (libboost-context-dev pulls in libboost1.74-dev): tools/deps.sh bench" \
	"$CXX" $CXXFLAGS "$HERE/boost.cpp" -o "$OUT/bench_chan_boost" -pthread
# Go: stdlib only, offline, nothing written outside the build directory.
build go "needs golang-go: tools/deps.sh bench" \
	env GO111MODULE=off GOPROXY=off GOFLAGS= CGO_ENABLED=0 \
	GOCACHE="$OUT/go-cache" GOPATH="$OUT/go-path" \
	"$GO" build -o "$OUT/bench_chan_go" "$HERE/go/main.go"

# The channels may not be in the library yet: then the Moirai rows are n/a.
HAVE_CHAN=1
for f in mr_chan_create mr_chan_destroy mr_chan_send mr_chan_recv mr_chan_close; do
	nm "$LIB" 2>/dev/null | grep -q " T $f\$" || HAVE_CHAN=0
done
if [ "$HAVE_CHAN" = 1 ]; then
	build moirai "does $1/libmoirai.a match include/?" \
		"$CC" $CFLAGS -I "$ROOT/include" "$HERE/moirai.c" "$LIB" \
		-o "$OUT/bench_chan_moirai" -pthread -lm
else
	echo "chan/run.sh: warning: $1/libmoirai.a has no channels (mr_chan_*) yet: the Moirai rows will read n/a" >&2
fi

# ---- run --------------------------------------------------------------------

RES=$OUT/results.txt
rm -f "$BUILD/bench/chan.md"
: >"$RES"
load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
	echo "chan/run.sh: warning: load average $load - other work on this machine skews the timings" >&2
fi
echo "chan/run.sh: running (median of $REPS runs after a warm-up)" >&2

# A hung program (a deadlock) fails the run instead of blocking it.
LIMIT=${BENCH_TIMEOUT:-150}
TIMEOUT=""
command -v timeout >/dev/null 2>&1 && TIMEOUT="timeout $LIMIT"

# bench PROG BENCH WORKERS SIZE: run one program, check that it counted SIZE
# elements (round trips, pairs), keep its RESULT line.
bench() {
	prog=$1 b=$2 w=$3 size=$4
	rc=0
	$TIMEOUT "$OUT/$prog" "$b" "$w" "$REPS" "$size" >"$OUT/last.out" 2>"$OUT/last.err" || rc=$?
	if [ $rc -ne 0 ]; then
		cat "$OUT/last.out" "$OUT/last.err" >&2
		[ $rc -eq 124 ] && die "FAILED: $prog $b $w $REPS $size did not finish in ${LIMIT}s"
		die "FAILED (exit $rc): $prog $b $w $REPS $size"
	fi
	grep '^RESULT ' "$OUT/last.out" >"$OUT/last.res" || die "no RESULT line from $prog $b"
	got=$(awk '{ print $6 }' "$OUT/last.res")
	[ "$got" = "$size" ] || die "CHECK FAILED: $prog $b $w: counted $got, expected $size"
	sed 's/^/  /' "$OUT/last.res" >&2
	cat "$OUT/last.res" >>"$RES"
}

# Moirai's program, only when the library has channels.
mbench() {
	[ "$HAVE_CHAN" = 1 ] && bench bench_chan_moirai "$@"
	return 0
}

for b in 1p1c 2p2c; do
	mbench "$b" 2 "$TPUT_N"
	mbench "$b" 0 "$TPUT_N"
	bench bench_chan_go "$b" 2 "$TPUT_N"
	bench bench_chan_boost "$b" 0 "$SLOW_N"
	[ "$b" = 1p1c ] && bench bench_chan_ck "$b" 0 "$TPUT_N"
	bench bench_chan_mutex "$b" 0 "$SLOW_N"
	bench bench_chan_zmq "$b" 0 "$SLOW_N"
done
for b in pingpong-cap1 pingpong-rdv; do
	mbench "$b" 1 "$PP_N"
	mbench "$b" 2 "$PP2_N"
	mbench "$b" 0 "$PPT_N"
	bench bench_chan_go "$b" 1 "$PP_N"
	bench bench_chan_go "$b" 2 "$PP_N"
	[ "$b" = pingpong-cap1 ] && bench bench_chan_mutex "$b" 0 "$PPT_N"
done
mbench uncontended 1 "$UC_N"
mbench uncontended 0 "$UC_N"
bench bench_chan_go uncontended 1 "$UC_N"
bench bench_chan_mutex uncontended 0 "$UC_N"
bench bench_chan_cas cas 0 "$CAS_N"

# ---- tabulate ---------------------------------------------------------------

# The raw fiber switch (ns per one-way switch) from tools/bench/fiber, if it ran.
RAW=""
FRES=$BUILD/bench/fiber/results.txt
if [ -f "$FRES" ]; then
	RAW=$(awk '$1 == "RESULT" && $2 == "switch" && $3 == "moirai-raw" && $6 > 0 {
		printf "%.3f", $5 * 1e6 / $6 / 2; exit }' "$FRES")
fi

cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: *//' || true)
ccv=$("$CC" --version | head -n 1)
gov=$("$GO" version 2>/dev/null | sed 's/^go version //')
boostv=$(dpkg-query -W -f='${Version}' libboost1.74-dev 2>/dev/null || echo "?")
ckv=$(dpkg-query -W -f='${Version}' libck-dev 2>/dev/null || echo "?")
zmqv=$(dpkg-query -W -f='${Version}' libzmq3-dev 2>/dev/null || echo "?")
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")

awk -v reps="$REPS" -v have="$HAVE_CHAN" -v ncpu="$NCPU" -v raw="$RAW" \
	-v tputn="$TPUT_N" -v slown="$SLOW_N" -v ppn="$PP_N" -v pp2n="$PP2_N" -v pptn="$PPT_N" -v ucn="$UC_N" \
	-v cpu="$cpu" -v ccv="$ccv" -v gov="$gov" -v boostv="$boostv" -v ckv="$ckv" -v zmqv="$zmqv" \
	-v commit="$commit" -v date="$(date -u '+%Y-%m-%d %H:%M UTC')" -v out="$BUILD/bench/chan.md" '
function has(b, i, w) { return ((b SUBSEP i SUBSEP w) in ms) }
# ns per element (round trip, pair); -1 when not measured
function ns(b, i, w) { return has(b, i, w) && n[b, i, w] > 0 ? ms[b, i, w] * 1e6 / n[b, i, w] : -1 }
function fmt(x) { return x < 0 ? "n/a" : sprintf(x < 10 ? "%.2f" : x < 1000 ? "%.1f" : "%.0f", x) }
# million per second from ns per element
function mps(x) { return x <= 0 ? "n/a" : sprintf(1e3 / x < 10 ? "%.2f" : "%.1f", 1e3 / x) }
# how many times faster than the reference: time_ref / time
function faster(x, ref) { return (x <= 0 || ref <= 0) ? "n/a" : sprintf("%.2f", ref / x) }
function target(ok, x) { return x < 0 ? "not measured" : ok ? "met" : "**missed**" }
$1 == "RESULT" { ms[$2, $3, $4] = $5 + 0; n[$2, $3, $4] = $6 + 0 }
END {
	o = "# Moirai channels side by side\n\n"
	o = o sprintf("%s, commit %s. %s CPUs (%s). %s; %s; Boost %s; Concurrency Kit %s; ZeroMQ %s.\n", date, commit, ncpu, cpu, ccv, gov, boostv, ckv, zmqv)
	o = o sprintf("Every time is the median of %d timed runs after one warm-up; every count, sum and per-producer order was checked. ", reps)
	o = o "Elements are 8 bytes. \"x Go\" is Go'"'"'s time over the row'"'"'s time: above 1.00 the row is faster than Go. Targets are shown, not enforced.\n"
	if (!have) o = o "\n**libmoirai.a had no channels (mr_chan_*) when this ran: the Moirai rows read n/a.**\n"

	o = o "\n## Throughput through a queue of capacity 1024\n\n"
	o = o sprintf("Producers send distinct values, consumers receive, sum and check them; timed from starting the first consumer to joining the last. %d elements per run (Boost.Lockfree, the mutex ring and ZeroMQ: %d). ", tputn, slown)
	o = o "Moirai and Go close the channel once every producer has returned and the consumers receive until it is closed (`-EPIPE` / `range`). "
	o = o "Boost.Lockfree `queue<uint64_t, capacity<1024>>` and `ck_ring_enqueue_spsc`/`ck_ring_dequeue_spsc` (1024 slots) never sleep: threads spin (pause, `sched_yield` every 64th try). "
	o = o "The mutex ring is one `pthread_mutex_t` and two condition variables. ZeroMQ: inproc PUSH/PULL, high-water marks of 512 on each side; for 2P/2C each producer deals its values to the two consumers'"'"' PULL sockets in turn and ends with a marker carrying its count.\n\n"
	o = o "| implementation | 1P/1C M msg/s | ns/msg | x Go | 2P/2C M msg/s | ns/msg | x Go |\n|---|---:|---:|---:|---:|---:|---:|\n"
	rows = "moirai 2|**Moirai** `mr_chan_t`, fibers, 2 workers;moirai 0|**Moirai** `mr_chan_t`, threads;go 2|Go buffered channel, GOMAXPROCS=2;"
	rows = rows "boost 0|Boost.Lockfree `queue`, threads spinning;ck 0|ck_ring SPSC, threads spinning;mutex 0|mutex + condvar ring (naive), threads;zmq 0|ZeroMQ inproc PUSH/PULL, threads"
	g1 = ns("1p1c", "go", 2); g2 = ns("2p2c", "go", 2)
	nr = split(rows, row, ";")
	for (j = 1; j <= nr; j++) {
		split(row[j], rw, "|"); split(rw[1], key, " ")
		x1 = ns("1p1c", key[1], key[2]); x2 = ns("2p2c", key[1], key[2])
		s2 = key[1] == "ck" ? "- | - | -" : mps(x2) " | " fmt(x2) " | " faster(x2, g2)
		o = o "| " rw[2] " | " mps(x1) " | " fmt(x1) " | " faster(x1, g1) " | " s2 " |\n"
	}

	o = o "\n## Ping-pong\n\n"
	o = o "A sends i on one channel, B receives it and sends it back on a second one, A checks it; ns per round trip (two messages, two hand-offs). "
	o = o sprintf("%d round trips per run on one worker and for Go, %d for Moirai on two workers, %d across threads. ", ppn, pp2n, pptn)
	o = o "\"x Go\" compares with Go at the same number of Ps (threads: with GOMAXPROCS=2).\n\n"
	o = o "| implementation | capacity 1: ns per round trip | x Go | rendezvous: ns per round trip | x Go |\n|---|---:|---:|---:|---:|\n"
	rows = "moirai 1 1|**Moirai** fibers, 1 worker;moirai 2 2|**Moirai** fibers, 2 workers;moirai 0 2|**Moirai** threads;"
	rows = rows "go 1 1|Go, GOMAXPROCS=1;go 2 2|Go, GOMAXPROCS=2;mutex 0 2|mutex + condvar ring, threads"
	nr = split(rows, row, ";")
	for (j = 1; j <= nr; j++) {
		split(row[j], rw, "|"); split(rw[1], key, " ")
		x1 = ns("pingpong-cap1", key[1], key[2]); x0 = ns("pingpong-rdv", key[1], key[2])
		s0 = key[1] == "mutex" ? "- | -" : fmt(x0) " | " faster(x0, ns("pingpong-rdv", "go", key[3]))
		o = o "| " rw[2] " | " fmt(x1) " | " faster(x1, ns("pingpong-cap1", "go", key[3])) " | " s0 " |\n"
	}

	o = o "\n## Uncontended send + receive\n\n"
	o = o sprintf("One fiber (goroutine, thread) sends then receives on a capacity-1024 queue nobody else touches, %d times per run: ns per send+receive pair.\n\n", ucn)
	o = o "| implementation | ns per pair | M pairs/s | x Go |\n|---|---:|---:|---:|\n"
	rows = "moirai 1|**Moirai** `mr_chan_t`, one fiber;moirai 0|**Moirai** `mr_chan_t`, one thread;go 1|Go buffered channel, one goroutine;mutex 0|mutex + condvar ring, one thread"
	gu = ns("uncontended", "go", 1)
	nr = split(rows, row, ";")
	for (j = 1; j <= nr; j++) {
		split(row[j], rw, "|"); split(rw[1], key, " ")
		x = ns("uncontended", key[1], key[2])
		o = o "| " rw[2] " | " fmt(x) " | " mps(x) " | " faster(x, gu) " |\n"
	}

	o = o "\n## Targets\n\n"
	m1 = ns("1p1c", "moirai", 2); m2 = ns("2p2c", "moirai", 2)
	r1 = (m1 > 0 && g1 > 0) ? g1 / m1 : -1; r2 = (m2 > 0 && g2 > 0) ? g2 / m2 : -1
	o = o "| target | measured | |\n|---|---:|---|\n"
	o = o "| 1P/1C fibers >= 2x Go buffered | " (r1 < 0 ? "n/a" : sprintf("%.2fx", r1)) " | " target(r1 >= 2, r1) " |\n"
	o = o "| 2P/2C fibers >= 1.5x Go buffered | " (r2 < 0 ? "n/a" : sprintf("%.2fx", r2)) " | " target(r2 >= 1.5, r2) " |\n"
	u = ns("uncontended", "moirai", 1)
	o = o "| uncontended send+recv on one fiber <= 25 ns | " (u < 0 ? "n/a" : fmt(u) " ns") " | " target(u <= 25, u) " |\n"
	p = ns("pingpong-rdv", "moirai", 1)
	h = p < 0 ? -1 : p / 2
	rs = raw + 0
	rr = (h > 0 && rs > 0) ? h / rs : -1
	o = o "| rendezvous ping-pong on 1 worker <= 3x the raw fiber switch, per hand-off | "
	o = o (rr < 0 ? "n/a" : sprintf("%.2fx (%s ns per hand-off / %s ns)", rr, fmt(h), fmt(rs))) " | "
	o = o (rs <= 0 ? "n/a: no raw switch time (run tools/bench/fiber/run.sh first)" : target(rr <= 3, rr)) " |\n"
	o = o "\nA round trip is two hand-offs (A to B, B to A), each a channel operation that wakes the other fiber plus a switch; "
	o = o "the raw switch is `mr__ctx_switch` as measured by tools/bench/fiber" (rs > 0 ? sprintf(" (%s ns, read from its results.txt)", fmt(rs)) : " (not found)") ".\n"
	# The floor under a hand-off: two atomic read-modify-writes and a switch.
	c = ns("cas", "c11", 0)
	fl = (c > 0 && rs > 0) ? 2 * c + rs : -1
	o = o "\nfloor: 2 locked RMW + 1 raw switch = "
	o = o (fl < 0 ? "n/a" : sprintf("%s ns = %.2f x the switch", fmt(fl), fl / rs))
	o = o (c < 0 ? " (no CAS time)" : sprintf(" (one uncontended `lock cmpxchg`: %s ns, cas.c, median of %d runs)", fmt(c), reps))
	if (fl > 0 && h > 0)
		o = o sprintf("; the measured hand-off is %s ns above it", fmt(h - fl))
	o = o ".\n\n"
	o = o "Why no hand-off can cost less: when any number of fibers or threads may send and receive on a channel at once, "
	o = o "(1) the sender must claim the waiting receiver (or the receiver the waiting sender) with one atomic read-modify-write, "
	o = o "or two of them could pair with the same waiter; "
	o = o "(2) a fiber that finds no partner must put itself where partners look with another one, "
	o = o "or two waiters arriving at once could overwrite each other (a plain store would need a full fence after it, which costs about as much); "
	o = o "(3) the waiting fiber must switch out. "
	o = o "On x86-64 each such RMW is a `lock cmpxchg` (or `xchg`) that also waits until the earlier stores of its CPU have drained, so in a real hand-off it costs at least what cas.c measures alone."
	if (fl > 0 && fl / rs > 3)
		o = o sprintf(" Here the floor is %.2fx the switch: the 3x target lies below it.", fl / rs)
	o = o "\n"
	printf "%s", o > out
	close(out)
}' "$RES" || die "tabulating the results failed"

echo >&2
cat "$BUILD/bench/chan.md"
echo >&2
echo "chan/run.sh: saved $1/bench/chan.md" >&2
