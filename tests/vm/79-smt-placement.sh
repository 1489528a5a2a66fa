#!/bin/sh
# SMT-aware placement (issue 16, item 6): a woken worker goes to an idle
# CPU whose whole core is idle before one whose sibling is busy. Needs a
# node whose first CPUs are two SMT cores, CPUs 0-1 and 2-3 (e.g.
# MOIRAI_VM_TOPO="16 4 2"); skips otherwise. A hog and the poster of
# `mrvm wake` run on CPU 1; the runtime's workers may use CPUs 0-3 and are
# woken over and over. CPU 0 (sibling of the busy CPU 1) must take less
# than a quarter of the worker runs that core 2-3 takes.
. "$(dirname "$0")/lib.inc"
t=/sys/devices/system/cpu
[ "$(cat $t/cpu0/topology/thread_siblings_list 2>/dev/null)" = 0-1 ] &&
	[ "$(cat $t/cpu2/topology/thread_siblings_list 2>/dev/null)" = 2-3 ] &&
	[ -e $t/cpu3/node0 ] && [ -e $t/cpu0/node0 ] ||
	{ echo "SKIP: no node whose CPUs 0-3 are two SMT cores"; exit 4; }
load_bg
taskset 2 mrvm hog 100000 0 >/dev/null &
HOG=$!
taskset f mrvm wake 1000 >/tmp/wake.out &
W=$!
sleep 0.5
taskset -p 2 "$W" >/dev/null || fail "cannot move the poster to CPU 1"
wait "$W" || { cat /tmp/wake.out; fail "mrvm wake failed"; }
kill "$HOG"
wait "$HOG" 2>/dev/null
moiraictl dump --json | tr -d ' \n' | grep -o '"worker_runs":[0-9]*' | cut -d: -f2 | head -4 >/tmp/wr
unload
set -- $(cat /tmp/wr)
echo "# worker runs on CPU 0 (sibling busy): $1, CPU 1: $2, CPUs 2-3 (idle core): $3 + $4"
[ $(($1 * 4)) -lt $(($3 + $4)) ] || fail "CPU 0, whose sibling was busy, took $1 worker runs against $(($3 + $4)) on the idle core"
exit 0
