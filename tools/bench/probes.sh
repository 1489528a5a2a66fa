#!/bin/sh
# tools/bench/probes.sh [BASE_REV] - what the observability costs.
#
# Builds libmoirai.a three ways into build/bench-probes: BASE (BASE_REV,
# default the commit before the counters landed, from a temporary git
# worktree: no counters, no probes), NOSDT (this tree with the counters but
# the USDT probes compiled out: HAVE_SDT=) and SDT (this tree as built:
# counters and probes). Each links the fork-join benchmark (fib(32) and
# 1,000,000 group spawns, tools/bench/moirai.c) and the channel benchmark
# (ping-pong between two fibers over a buffered channel of capacity 1, 1
# worker; tools/bench/chan/moirai.c). The three run interleaved, ROUNDS (7)
# times, each run reporting the median of 5 repetitions; printed are the
# medians over rounds and the ratios to BASE. Then, with root and bpftrace,
# the ping-pong again with bpftrace attached to fiber_run and fiber_stop:
# the extra time per message divided by the events per message is the cost
# of one traced event.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BASE_REV=${1:-e7a6fdd}
ROUNDS=${ROUNDS:-7}
OUT=$ROOT/build/bench-probes
CC=${BENCH_CC:-gcc}
CFLAGS="-O2 -g -std=gnu11 -Wall -Wextra"
mkdir -p "$OUT"

build_lib() { # NAME TREE [MAKE ARGS...]
	name=$1 tree=$2
	shift 2
	make -C "$tree" -s -j2 BUILD="$OUT/$name" "$OUT/$name/libmoirai.a" "$@" >/dev/null
	"$CC" $CFLAGS -fno-optimize-sibling-calls -c "$HERE/fib_seq.c" -o "$OUT/$name/fib_seq.o"
	"$CC" $CFLAGS -falign-functions=64 -c "$HERE/loops.c" -o "$OUT/$name/loops.o"
	"$CC" $CFLAGS -I "$tree/include" "$HERE/moirai.c" "$OUT/$name/loops.o" \
		"$OUT/$name/libmoirai.a" -o "$OUT/$name/bench_moirai" -pthread -lm
	"$CC" $CFLAGS -I "$tree/include" "$HERE/chan/moirai.c" "$OUT/$name/libmoirai.a" \
		-o "$OUT/$name/bench_chan_moirai" -pthread -lm
}

WT=$OUT/base-tree
rm -rf "$WT"
git -C "$ROOT" worktree add -q --detach "$WT" "$BASE_REV"
trap 'git -C "$ROOT" worktree remove --force "$WT" 2>/dev/null || true' EXIT
build_lib base "$WT"
build_lib nosdt "$ROOT" HAVE_SDT=
build_lib sdt "$ROOT"
git -C "$ROOT" worktree remove --force "$WT"
readelf -n "$OUT/sdt/bench_chan_moirai" | grep -q stapsdt ||
	echo "probes.sh: note: the SDT build has no probes (no <sys/sdt.h>?)" >&2

# one PROG BENCH WORKERS SIZE: the median (ms) of 5 repetitions
one() {
	"$1" "$2" "$3" 5 "$4" | awk '$1 == "RESULT" { print $5 }'
}

ROWS="fib:1:32 fib:2:32 spawn:2:1000000 pingpong-cap1:1:1000000"
: >"$OUT/raw.txt"
r=0
while [ $r -lt "$ROUNDS" ]; do
	for row in $ROWS; do
		b=${row%%:*} rest=${row#*:}
		w=${rest%%:*} n=${rest#*:}
		prog=bench_moirai
		case $b in pingpong*) prog=bench_chan_moirai ;; esac
		for v in base nosdt sdt; do
			echo "$b:$w $v $(one "$OUT/$v/$prog" "$b" "$w" "$n")" >>"$OUT/raw.txt"
		done
	done
	r=$((r + 1))
done

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
printf '%-18s %10s %10s %10s %9s %9s\n' "bench:workers" "base ms" "nosdt ms" "sdt ms" \
	"nosdt/b" "sdt/b"
for row in $ROWS; do
	key=${row%:*}
	b0=$(awk -v k="$key" '$1 == k && $2 == "base" { print $3 }' "$OUT/raw.txt" | median)
	b1=$(awk -v k="$key" '$1 == k && $2 == "nosdt" { print $3 }' "$OUT/raw.txt" | median)
	b2=$(awk -v k="$key" '$1 == k && $2 == "sdt" { print $3 }' "$OUT/raw.txt" | median)
	printf '%-18s %10s %10s %10s %9s %9s\n' "$key" "$b0" "$b1" "$b2" \
		"$(awk -v a="$b1" -v b="$b0" 'BEGIN { printf "%.3f", a / b }')" \
		"$(awk -v a="$b2" -v b="$b0" 'BEGIN { printf "%.3f", a / b }')"
done

# Attached: bpftrace on fiber_run and fiber_stop (2 events per switch, and
# a ping-pong round trip is 2 switches in each direction).
if [ "$(id -u)" -eq 0 ] && command -v bpftrace >/dev/null &&
	readelf -n "$OUT/sdt/bench_chan_moirai" | grep -q stapsdt; then
	P=$OUT/sdt/bench_chan_moirai
	N=200000
	plain=$(one "$P" pingpong-cap1 1 $N)
	bpftrace -q -c "$P pingpong-cap1 1 5 $N" -e "
usdt:$P:moirai:fiber_run { @runs = count(); }
usdt:$P:moirai:fiber_stop { @stops = count(); }" >"$OUT/traced.txt" 2>&1 || true
	traced=$(awk '$1 == "RESULT" { print $5 }' "$OUT/traced.txt")
	runs=$(sed -n 's/^@runs: //p' "$OUT/traced.txt")
	stops=$(sed -n 's/^@stops: //p' "$OUT/traced.txt")
	if [ -n "$traced" ] && [ -n "$runs" ]; then
		# runs and stops cover warm-up + 5 repetitions: events per run
		awk -v p="$plain" -v t="$traced" -v r="$runs" -v s="$stops" -v n="$N" 'BEGIN {
			ev = (r + s) / 6 / n
			printf "attached (bpftrace, fiber_run+fiber_stop): %.1f ms -> %.1f ms for %d round trips,\n", p, t, n
			printf "  %.1f events per round trip, %.2f us per event\n", ev, (t - p) * 1000 / n / ev }'
	else
		echo "attached: bpftrace did not run (see $OUT/traced.txt)"
	fi
else
	echo "attached: skipped (needs root, bpftrace and a build with probes)"
fi
