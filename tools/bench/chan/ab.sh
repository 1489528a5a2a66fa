#!/bin/sh
# tools/bench/chan/ab.sh A B [GO] - compare two builds of the Moirai channel
# benchmark program (bench_chan_moirai, built from moirai.c against two
# versions of libmoirai.a) in one run, with Go's program beside them.
#
# For every row each program runs REPS (5) timed repetitions after a
# warm-up and prints its median; the rows alternate A, B, (Go), A, B so that
# a change in the machine's load shows up in both. Prints ns per message
# (round trip, pair) and B's speed-up over A. Environment: AB_ROWS (which
# rows: "bench:workers:size ..."), BENCH_REPS.
#
# Meant for performance work on user/chan: keep a copy of the program built
# before a change (A), rebuild (B), run this under the CPU lock on a shared
# machine.
set -eu

[ $# -ge 2 ] || {
	echo "usage: $0 BENCH_A BENCH_B [BENCH_GO]" >&2
	exit 2
}
A=$1 B=$2 G=${3:-}
REPS=${BENCH_REPS:-5}
ROWS=${AB_ROWS:-"1p1c:2:10000000 1p1c:0:10000000 2p2c:2:10000000 2p2c:0:10000000
pingpong-cap1:1:1000000 pingpong-cap1:2:500000 pingpong-cap1:0:20000
pingpong-rdv:1:1000000 pingpong-rdv:2:500000 pingpong-rdv:0:20000
uncontended:1:10000000 uncontended:0:10000000"}

# one PROG BENCH WORKERS SIZE: ns per element of the median run
one() {
	"$1" "$2" "$3" "$REPS" "$4" | awk '$1 == "RESULT" { printf "%.2f", $5 * 1e6 / $6 }'
}

printf '%-16s %2s %10s %10s %8s %10s\n' bench w "A ns" "B ns" "A/B" "Go ns"
for row in $ROWS; do
	b=${row%%:*} rest=${row#*:}
	w=${rest%%:*} n=${rest#*:}
	a=$(one "$A" "$b" "$w" "$n")
	bb=$(one "$B" "$b" "$w" "$n")
	g=-
	if [ -n "$G" ]; then
		gw=$w
		[ "$gw" = 0 ] && gw=2
		case $b in uncontended) gw=1 ;; esac
		g=$(one "$G" "$b" "$gw" "$n")
	fi
	printf '%-16s %2s %10s %10s %8s %10s\n' "$b" "$w" "$a" "$bb" \
		"$(awk -v a="$a" -v b="$bb" 'BEGIN { printf "%.2f", a / b }')" "$g"
done
