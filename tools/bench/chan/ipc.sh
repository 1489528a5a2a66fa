#!/bin/sh
# tools/bench/chan/ipc.sh BUILD_DIR - Moirai's shm:// channels between two
# processes side by side with a pipe, a Unix domain socket, a POSIX message
# queue, ZeroMQ ipc:// and NNG ipc://.
#
# Builds the ipc_*.c programs of this directory into BUILD_DIR/bench/ipc
# (the Moirai one links BUILD_DIR/libmoirai.a: build the library first,
# `make bench` does), runs them, checks every count, prints a markdown
# table of the medians with ratios and the targets of the cross-process
# channel work beside them, and saves it as BUILD_DIR/bench/ipc.md. Raw
# lines: BUILD_DIR/bench/ipc/results.txt,
#
#	RESULT <bench> <impl> <bytes> <median_ms> <count>
#
# (ipc.h explains them). Every program forks: A, the parent, sends; B, the
# child, receives; with 2+ CPUs each is pinned to a CPU of its own.
# Every message is checked (sequence number; big ones also a header line of
# hashed words, their last word and a checksum). Benchmarks:
#   rtt      A sends message i, B checks it and sends it back, A checks it:
#            ns per round trip of an 8-byte message. Beside them the floor:
#            two threads on two CPUs passing a value through one cache line
#            (ipc_line.c).
#   oneway   A sends COUNT messages, B receives and checks each: messages/s
#            (and GB/s), from A's first send to B's last receive; 8-byte
#            messages, 64 KiB and 1 MiB.
# Transports (impl):
#   moirai            mr_chan_send / mr_chan_recv on shm:// channels
#                     (capacity 1024; big messages: 16 MiB of ring), plain
#                     threads: a blocked call spins a little, then sleeps on
#                     a futex
#   moirai-spin       mr_chan_try_send / mr_chan_try_recv polled in a loop
#   moirai-loan       zero copy: mr_chan_loan, write in place,
#                     mr_chan_commit; mr_chan_borrow, check in place,
#                     mr_chan_release
#   moirai-loan-spin  the same with mr_chan_try_loan / mr_chan_try_borrow
#   pipe, uds, mq     ipc_sys.c: two pipes; a SOCK_STREAM socketpair; two
#                     message queues (8-byte messages only)
#   zmq, nng          ipc_zmq.c, ipc_nng.c: PAIR (pair0) sockets over ipc://
# Each program runs its benchmark once to warm up and REPS timed times and
# reports the median. The targets are printed, not asserted.
#
# While libmoirai.a has no shm:// channels yet (no mr_chan_open, loans and
# borrows, or an mr_chan_open that answers EPROTONOSUPPORT), the Moirai
# rows read "n/a" and everything else still runs.
#
# Needs gcc, libzmq3-dev and libnng-dev: tools/deps.sh bench. Environment:
# BENCH_CC (gcc), BENCH_REPS (5), BENCH_TIMEOUT (seconds one program may
# take, 150), BENCH_QUICK=1 (tiny counts, 1 repetition: checks that
# everything builds and agrees, in seconds; its timings mean nothing).
set -eu

die() {
	echo "chan/ipc.sh: $*" >&2
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
OUT=$BUILD/bench/ipc
mkdir -p "$OUT"

# Two runs in one build directory would mix their result files (and skew
# each other's timings): the second waits for the first.
if command -v flock >/dev/null 2>&1; then
	exec 9>"$OUT/.lock"
	if ! flock -n 9; then
		echo "chan/ipc.sh: another run is using $1/bench/ipc: waiting for it" >&2
		flock 9
	fi
fi

CC=${BENCH_CC:-gcc}
REPS=${BENCH_REPS:-5}
# Counts per timed run, chosen so that a run takes a few tenths of a second
# on a quiet 2-CPU VM: a round trip through the kernel costs 15-25 us,
# through ZeroMQ or NNG 70-110 us, through a cache line under 0.1 us;
# one-way 8-byte messages 1.5-2.5 us (pipe, socket, queue), 0.2 us
# (ZeroMQ, which batches), 10 us (NNG); 64 KiB 10 us (pipe, socket), 50
# us (ZeroMQ, NNG); 1 MiB 70 us (socket) to 2 ms (ZeroMQ). Moirai: a round
# trip 0.8-1.3 us, an 8-byte message 0.15 us, a loan of any size 0.2-0.5
# us, a copied 64 KiB message 2.6 us, 1 MiB 100 us. Under load all take
# several times as long.
if [ "${BENCH_QUICK:-0}" = 1 ]; then
	REPS=1
	LINE_N=2000 RTT_N=200 RTT_SLOW_N=200 RTT_M_N=200 RTT_MS_N=2000
	OW_N=2000 OW_ZMQ_N=2000 OW_NNG_N=2000 OW_M_N=20000
	K64_N=200 K64_SLOW_N=100 K64_M_N=200 K64_LOAN_N=2000
	M1_PIPE_N=20 M1_N=20 M1_SLOW_N=20 M1_ZMQ_N=10 M1_M_N=20 M1_LOAN_N=200
else
	LINE_N=2000000 RTT_N=10000 RTT_SLOW_N=2500 RTT_M_N=200000 RTT_MS_N=400000
	OW_N=100000 OW_ZMQ_N=1000000 OW_NNG_N=20000 OW_M_N=2000000
	K64_N=20000 K64_SLOW_N=4000 K64_M_N=40000 K64_LOAN_N=400000
	M1_PIPE_N=500 M1_N=2000 M1_SLOW_N=1000 M1_ZMQ_N=100 M1_M_N=2000 M1_LOAN_N=400000
fi
K64=65536
M1=1048576
NCPU=$(nproc 2>/dev/null || echo 1)

CFLAGS="-O2 -g -std=gnu11 -Wall -Wextra"

# ---- build ------------------------------------------------------------------

# build WHAT HINT COMMAND...: run COMMAND, and on failure say what failed and why.
build() {
	what=$1 hint=$2
	shift 2
	log=$OUT/build-$what.log
	if ! "$@" >"$log" 2>&1; then
		echo "chan/ipc.sh: building the $what benchmark failed ($hint). Last lines of $log:" >&2
		tail -n 25 "$log" | sed 's/^/    /' >&2
		exit 1
	fi
}

command -v "$CC" >/dev/null 2>&1 || die "no C compiler '$CC' (tools/deps.sh bench installs gcc)"

echo "chan/ipc.sh: building into $1/bench/ipc" >&2
build line "the C compiler" \
	"$CC" $CFLAGS "$HERE/ipc_line.c" -o "$OUT/bench_ipc_line" -pthread
build sys "the C compiler and librt" \
	"$CC" $CFLAGS "$HERE/ipc_sys.c" -o "$OUT/bench_ipc_sys" -lrt
build zmq "needs libzmq3-dev: tools/deps.sh bench" \
	"$CC" $CFLAGS "$HERE/ipc_zmq.c" -o "$OUT/bench_ipc_zmq" -lzmq
build nng "needs libnng-dev: tools/deps.sh bench" \
	"$CC" $CFLAGS "$HERE/ipc_nng.c" -o "$OUT/bench_ipc_nng" -lnng -pthread

# The shm:// channels may not be in the library yet: then the Moirai rows are n/a.
HAVE_SHM=1
for f in mr_chan_open mr_chan_unlink mr_chan_loan mr_chan_try_loan mr_chan_commit \
	mr_chan_borrow mr_chan_try_borrow mr_chan_release; do
	nm "$LIB" 2>/dev/null | grep -q " T $f\$" || HAVE_SHM=0
done
if [ "$HAVE_SHM" = 1 ]; then
	build moirai "does $1/libmoirai.a match include/?" \
		"$CC" $CFLAGS -I "$ROOT/include" "$HERE/ipc_moirai.c" "$LIB" \
		-o "$OUT/bench_ipc_moirai" -pthread -lm -lrt
else
	echo "chan/ipc.sh: warning: $1/libmoirai.a has no shm:// channels (mr_chan_open, loans) yet: the Moirai rows will read n/a" >&2
fi

# ---- run --------------------------------------------------------------------

RES=$OUT/results.txt
NOTES=$OUT/notes.txt
rm -f "$BUILD/bench/ipc.md"
: >"$RES"
: >"$NOTES"
load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
	echo "chan/ipc.sh: warning: load average $load - other work on this machine skews the timings" >&2
fi
echo "chan/ipc.sh: running (median of $REPS runs after a warm-up)" >&2

# A hung program (a deadlock) fails the run instead of blocking it.
LIMIT=${BENCH_TIMEOUT:-150}
TIMEOUT=""
command -v timeout >/dev/null 2>&1 && TIMEOUT="timeout $LIMIT"

# bench PROG BENCH IMPL COUNT BYTES: run one program, check that it counted
# COUNT messages (round trips), keep its RESULT line and its NOTE lines.
# Exit 77 (the library cannot do shm:// yet) leaves the row out: n/a.
bench() {
	prog=$1 b=$2 impl=$3 count=$4 bytes=$5
	rc=0
	$TIMEOUT "$OUT/bench_ipc_$prog" "$b" "$impl" "$REPS" "$count" "$bytes" \
		>"$OUT/last.out" 2>"$OUT/last.err" || rc=$?
	if [ $rc -eq 77 ]; then
		sed 's/^/  /' "$OUT/last.out" >&2
		SKIPPED=1
		return 0
	fi
	if [ $rc -ne 0 ]; then
		cat "$OUT/last.out" "$OUT/last.err" >&2
		[ $rc -eq 124 ] && die "FAILED: $prog $b $impl $REPS $count $bytes did not finish in ${LIMIT}s"
		die "FAILED (exit $rc): $prog $b $impl $REPS $count $bytes"
	fi
	grep '^RESULT ' "$OUT/last.out" >"$OUT/last.res" || die "no RESULT line from $prog $b $impl"
	got=$(awk '{ print $6 }' "$OUT/last.res")
	[ "$got" = "$count" ] || die "CHECK FAILED: $prog $b $impl $bytes: counted $got, expected $count"
	sed 's/^/  /' "$OUT/last.res" >&2
	cat "$OUT/last.res" >>"$RES"
	grep '^NOTE ' "$OUT/last.out" | sed 's/^NOTE //' >>"$NOTES" || true
}

# Moirai's program, only when the library has shm:// channels.
SKIPPED=0
mbench() {
	[ "$HAVE_SHM" = 1 ] && [ "$SKIPPED" = 0 ] && bench moirai "$@"
	return 0
}

bench line rtt line "$LINE_N" 8
mbench rtt moirai "$RTT_M_N" 8
mbench rtt moirai-spin "$RTT_MS_N" 8
bench sys rtt pipe "$RTT_N" 8
bench sys rtt uds "$RTT_N" 8
bench sys rtt mq "$RTT_N" 8
bench zmq rtt zmq "$RTT_SLOW_N" 8
bench nng rtt nng "$RTT_SLOW_N" 8

mbench oneway moirai "$OW_M_N" 8
mbench oneway moirai-spin "$OW_M_N" 8
mbench oneway moirai-loan "$OW_M_N" 8
bench sys oneway pipe "$OW_N" 8
bench sys oneway uds "$OW_N" 8
bench sys oneway mq "$OW_N" 8
bench zmq oneway zmq "$OW_ZMQ_N" 8
bench nng oneway nng "$OW_NNG_N" 8

mbench oneway moirai-loan "$K64_LOAN_N" $K64
mbench oneway moirai-loan-spin "$K64_LOAN_N" $K64
mbench oneway moirai "$K64_M_N" $K64
bench sys oneway pipe "$K64_N" $K64
bench sys oneway uds "$K64_N" $K64
bench zmq oneway zmq "$K64_SLOW_N" $K64
bench nng oneway nng "$K64_SLOW_N" $K64

mbench oneway moirai-loan "$M1_LOAN_N" $M1
mbench oneway moirai-loan-spin "$M1_LOAN_N" $M1
mbench oneway moirai "$M1_M_N" $M1
bench sys oneway pipe "$M1_PIPE_N" $M1
bench sys oneway uds "$M1_N" $M1
bench zmq oneway zmq "$M1_ZMQ_N" $M1
bench nng oneway nng "$M1_SLOW_N" $M1

[ "$SKIPPED" = 1 ] && HAVE_SHM=0

# ---- tabulate ---------------------------------------------------------------

cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: *//' || true)
ccv=$("$CC" --version | head -n 1)
zmqv=$(dpkg-query -W -f='${Version}' libzmq3-dev 2>/dev/null || echo "?")
nngv=$(dpkg-query -W -f='${Version}' libnng-dev 2>/dev/null || echo "?")
kern=$(uname -r)
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")
notes=$(sort -u "$NOTES" | tr '\n' ';' | sed 's/;$//; s/;/; /g')

awk -v reps="$REPS" -v have="$HAVE_SHM" -v ncpu="$NCPU" -v notes="$notes" \
	-v cpu="$cpu" -v ccv="$ccv" -v zmqv="$zmqv" -v nngv="$nngv" -v kern="$kern" \
	-v commit="$commit" -v date="$(date -u '+%Y-%m-%d %H:%M UTC')" -v out="$BUILD/bench/ipc.md" '
function has(b, i, s) { return ((b SUBSEP i SUBSEP s) in ms) }
# ns per message (round trip); -1 when not measured
function ns(b, i, s) { return has(b, i, s) && n[b, i, s] > 0 ? ms[b, i, s] * 1e6 / n[b, i, s] : -1 }
function fmt(x) { return x < 0 ? "n/a" : sprintf(x < 10 ? "%.2f" : x < 1000 ? "%.1f" : "%.0f", x) }
# messages per second, in units of u, from ns per message
function rate(x, u) { return x <= 0 ? "n/a" : fmt(1e9 / x / u) }
# GB/s (1e9 bytes) from ns per message of s bytes
function gbs(x, s) { return x <= 0 ? "n/a" : fmt(s / x) }
# a ratio a / b, or n/a
function ratio(a, b) { return (a <= 0 || b <= 0) ? "n/a" : sprintf(a / b < 0.01 ? "%.4f" : "%.2f", a / b) }
function target(ok, x) { return x < 0 ? "not measured" : ok ? "met" : "**missed**" }
$1 == "RESULT" { ms[$2, $3, $4] = $5 + 0; n[$2, $3, $4] = $6 + 0 }
END {
	name["moirai"] = "**Moirai** shm://, `mr_chan_send`/`recv`, blocking"
	name["moirai-spin"] = "**Moirai** shm://, `try_send`/`try_recv` spinning"
	name["moirai-loan"] = "**Moirai** shm://, loan/commit, borrow/release, blocking"
	name["moirai-loan-spin"] = "**Moirai** shm://, `try_loan`/`try_borrow` spinning"
	name["pipe"] = "pipe"
	name["uds"] = "Unix domain socket (stream)"
	name["mq"] = "POSIX message queue"
	name["zmq"] = "ZeroMQ ipc://, PAIR"
	name["nng"] = "NNG ipc://, pair0"

	o = "# Moirai channels between processes\n\n"
	o = o sprintf("%s, commit %s. %s CPUs (%s), Linux %s; %s; ZeroMQ %s; NNG %s.\n", date, commit, ncpu, cpu, kern, ccv, zmqv, nngv)
	o = o sprintf("Two processes, the sender A and the receiver B (a child A forks), %s. ", ncpu >= 2 ? "each pinned to a CPU of its own" : "sharing the one CPU")
	o = o sprintf("Every time is the median of %d timed runs after one warm-up; every message was checked (its sequence number; 64 KiB and 1 MiB messages also six hashed words in their first cache line, a seventh in their last word and the checksum of those, which is all the sender writes: the copying transports move every byte). ", reps)
	o = o "\"Moirai / this\" divides Moirai'"'"'s figure by the row'"'"'s: for round trips below 1.00 is Moirai faster, for rates above 1.00. Targets are shown, not enforced.\n"
	if (notes != "") o = o "Notes: " notes ".\n"
	if (!have) o = o "\n**libmoirai.a had no shm:// channels when this ran: the Moirai rows read n/a.**\n"

	o = o "\n## Round trip, 8-byte messages\n\n"
	o = o "A sends i, B receives it and sends it back (Moirai, pipes, queues: on a second channel; sockets: the same socket), A checks it. "
	o = o "The floor is two threads on two CPUs passing a value through one cache line (release store, acquire load, spinning): no message between processes comes back faster.\n\n"
	o = o "| transport | ns per round trip | x floor | Moirai blocking / this | Moirai spinning / this |\n|---|---:|---:|---:|---:|\n"
	fl = ns("rtt", "line", 8); mb = ns("rtt", "moirai", 8); msp = ns("rtt", "moirai-spin", 8)
	o = o "| floor: cache line between 2 CPUs, threads | " fmt(fl) " | 1.00 | " ratio(mb, fl) " | " ratio(msp, fl) " |\n"
	nr = split("moirai moirai-spin pipe uds mq zmq nng", row, " ")
	for (j = 1; j <= nr; j++) {
		x = ns("rtt", row[j], 8)
		o = o "| " name[row[j]] " | " fmt(x) " | " ratio(x, fl) " | " ratio(mb, x) " | " ratio(msp, x) " |\n"
	}

	o = o "\n## One way, 8-byte messages\n\n"
	o = o "A sends COUNT messages, B receives and checks each; timed from A'"'"'s first send to B'"'"'s last receive. Moirai channels of capacity 1024; ZeroMQ high-water marks 1000 each side; NNG send and receive buffers of 1024 messages; pipe and socket buffers as the kernel gives them.\n\n"
	o = o "| transport | M msg/s | ns/msg | Moirai blocking / this | Moirai spinning / this |\n|---|---:|---:|---:|---:|\n"
	ob = ns("oneway", "moirai", 8); os = ns("oneway", "moirai-spin", 8)
	nr = split("moirai moirai-spin moirai-loan pipe uds mq zmq nng", row, " ")
	for (j = 1; j <= nr; j++) {
		x = ns("oneway", row[j], 8)
		o = o "| " name[row[j]] " | " rate(x, 1e6) " | " fmt(x) " | " ratio(x, ob) " | " ratio(x, os) " |\n"
	}

	o = o "\n## One way, 64 KiB and 1 MiB messages\n\n"
	o = o "The sender writes a header line (sequence number, hashed words, checksum) and the last word of each message, the receiver checks them: in place with loans and borrows, in its own buffer with every other transport, which copies the whole message (the copying Moirai row too). Moirai rings of 16 MiB (64 KiB: 256 slots, 1 MiB: 16). GB/s is the message size times the rate (for loans, which move no bytes, a figure of speech). \"Moirai loans / this\" compares rates with the blocking loan row.\n\n"
	o = o "| transport | 64 KiB: k msg/s | GB/s | Moirai loans / this | 1 MiB: k msg/s | GB/s | Moirai loans / this |\n|---|---:|---:|---:|---:|---:|---:|\n"
	l1 = ns("oneway", "moirai-loan", 65536); l2 = ns("oneway", "moirai-loan", 1048576)
	nr = split("moirai-loan moirai-loan-spin moirai pipe uds zmq nng", row, " ")
	for (j = 1; j <= nr; j++) {
		x1 = ns("oneway", row[j], 65536); x2 = ns("oneway", row[j], 1048576)
		nm = row[j] == "moirai" ? "**Moirai** shm://, `mr_chan_send`/`recv` (copying), blocking" : name[row[j]]
		o = o "| " nm " | " rate(x1, 1e3) " | " gbs(x1, 65536) " | " ratio(x1, l1) " | " rate(x2, 1e3) " | " gbs(x2, 1048576) " | " ratio(x2, l2) " |\n"
	}

	o = o "\n## Targets\n\n"
	o = o "| target | Moirai | measured | |\n|---|---|---:|---|\n"
	p = ns("rtt", "pipe", 8)
	r = (mb > 0 && p > 0) ? mb / p : -1
	o = o "| round trip <= 0.1x the pipe'"'"'s | blocking | " (r < 0 ? "n/a" : sprintf("%.3fx (%s ns / %s ns)", r, fmt(mb), fmt(p))) " | " target(r <= 0.1, r) " |\n"
	r = (msp > 0 && p > 0) ? msp / p : -1
	o = o "| | spinning | " (r < 0 ? "n/a" : sprintf("%.3fx (%s ns / %s ns)", r, fmt(msp), fmt(p))) " | " target(r <= 0.1, r) " |\n"
	z = ns("oneway", "zmq", 8)
	r = (ob > 0 && z > 0) ? z / ob : -1
	o = o "| one-way 8-byte rate >= 10x ZeroMQ ipc | blocking | " (r < 0 ? "n/a" : sprintf("%.2fx (%s / %s M msg/s)", r, rate(ob, 1e6), rate(z, 1e6))) " | " target(r >= 10, r) " |\n"
	r = (os > 0 && z > 0) ? z / os : -1
	o = o "| | spinning | " (r < 0 ? "n/a" : sprintf("%.2fx (%s / %s M msg/s)", r, rate(os, 1e6), rate(z, 1e6))) " | " target(r >= 10, r) " |\n"
	# rates: the 8-byte rate over the 1 MiB one, i.e. the 1 MiB time over the 8-byte time
	r = (l2 > 0 && ob > 0) ? l2 / ob : -1
	o = o "| 1 MiB one-way rate within 2x of the 8-byte rate | loans vs `mr_chan_send`, blocking | " (r < 0 ? "n/a" : sprintf("%.2fx slower (%s / %s k msg/s)", r, rate(l2, 1e3), rate(ob, 1e3))) " | " target(r <= 2, r) " |\n"
	ls2 = ns("oneway", "moirai-loan-spin", 1048576)
	r = (ls2 > 0 && os > 0) ? ls2 / os : -1
	o = o "| | the same, spinning | " (r < 0 ? "n/a" : sprintf("%.2fx slower (%s / %s k msg/s)", r, rate(ls2, 1e3), rate(os, 1e3))) " | " target(r <= 2, r) " |\n"
	o = o "\nThe issue'"'"'s figures for this machine before the work: round trip pipe 16 us, UDS 50 us, ZeroMQ ipc 119 us, NNG 159 us; one-way ZeroMQ ipc 2.1 M msg/s, UDS 0.45 M msg/s.\n"
	printf "%s", o > out
	close(out)
}' "$RES" || die "tabulating the results failed"

echo >&2
cat "$BUILD/bench/ipc.md"
echo >&2
echo "chan/ipc.sh: saved $1/bench/ipc.md" >&2
