#!/bin/sh
# tools/bench/vm/run.sh BUILD_DIR STAGE_DIR - the sched_ext benchmark (sched.sh,
# run in the guest) in both TCG thread modes; `make bench-vm` calls it after
# staging the binaries into STAGE_DIR.
#
# Single-threaded TCG (the lab's default, as in `make check`) runs the 4
# vCPUs in turns on one host thread: a wake-up on another vCPU waits for that
# vCPU's turn, so tail latencies there are mostly the emulator's.
# Multi-threaded TCG runs the vCPUs in parallel (4 on however many host CPUs
# there are) and is closer to hardware, but its guest sometimes oopses at
# boot: it gets one retry, and its failure is reported without failing the
# benchmark. Writes BUILD_DIR/bench/sched.md (both tables) and keeps each
# boot's console as BUILD_DIR/bench/sched-{single,multi}.log.
set -u
HERE=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
ROOT=$(CDPATH='' cd -- "$HERE/../../.." && pwd)
[ $# -eq 2 ] || { echo "usage: $0 BUILD_DIR STAGE_DIR" >&2; exit 2; }
BUILD=$1
STAGE=$2
OUT=$BUILD/bench
mkdir -p "$OUT"
cp "$HERE/sched.sh" "$STAGE/tests/bench-sched.sh" || exit 1

boot() { # mode -> 0 when the guest's benchmark passed
	MOIRAI_VM_TCG=$1 MOIRAI_VM_ARGS="-t 1200 bench-sched" MOIRAI_VM_TIMEOUT=1500 \
		"$ROOT/tools/vm/check.sh" "$BUILD" "$STAGE"
	rc=$?
	cp "$BUILD/vm/console.log" "$OUT/sched-$1.log" 2>/dev/null
	return $rc
}
table() { sed -n 's/^# \(|.*|\)$/\1/p' "$OUT/sched-$1.log"; }
# How the numbers were taken, under each table.
how() {
	echo
	sed -n 's/^# # sched_ext benchmark: .*, \([0-9]*\) pairs$/Default and moirai alternate in \1 pairs in one boot (default first); each column is the median over the pairs, the ratio the median of the paired ratios./p' "$OUT/sched-$1.log"
}

boot single
rc=$?
{
	echo "## Single-threaded TCG (vCPUs take turns on one host thread)"
	echo
	table single
	how single
} >"$OUT/sched.md"
if [ $rc -ne 0 ]; then
	cat "$OUT/sched.md"
	exit $rc
fi
boot multi || boot multi
mrc=$?
{
	echo
	echo "## Multi-threaded TCG (vCPUs in parallel on the host's CPUs)"
	echo
	if [ $mrc -eq 0 ]; then
		table multi
		how multi
	else
		echo "(the guest failed twice: see sched-multi.log)"
	fi
} >>"$OUT/sched.md"
cat "$OUT/sched.md"
exit 0
