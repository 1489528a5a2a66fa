#!/bin/sh
# Affinity changes (issue 16, item 1): a 4-worker runtime homed on both nodes
# is restricted, all threads at once as `taskset -a -p` does, to node 1's
# CPUs (0xc), then to CPU 0 alone (0x1: a single-CPU task on node 0, where
# half of the workers are not at home), then given every CPU back (0xf). In
# every phase each worker must run (at least a tenth of its share of the
# allowed CPUs within 4 s, far below the watchdog's timeout) and only on
# allowed CPUs, and the scheduler must still be enabled at the end. Before
# ops.set_cpumask and a home node re-chosen from the allowed CPUs, the
# workers homed on the other node sat in their home node's queue, which no
# allowed CPU reads, until the watchdog disabled sched_ext.
. "$(dirname "$0")/lib.inc"
[ -d /sys/devices/system/node/node1 ] || { echo "SKIP: one NUMA node"; exit 4; }
load_bg
seq0=$(cat /sys/kernel/sched_ext/enable_seq)
mrvm affinity 4 c 1 f || { cat /tmp/loader.log; fail "a worker did not run after an affinity change"; }
[ "$(state)" = enabled ] || { cat /tmp/loader.log; fail "scheduler state $(state) after the affinity changes"; }
[ "$(cat /sys/kernel/sched_ext/enable_seq)" = "$seq0" ] || fail "the scheduler was restarted"
kill -0 "$LOADER" 2>/dev/null || { cat /tmp/loader.log; fail "the loader exited"; }
unload
exit 0
