#!/bin/sh
# Overload pulls across nodes (issue 16, item 6): 4 workers that never
# sleep, all homed on node 0 (the runtime is created on node 0's CPUs 0-1,
# then every thread may run on all 4 CPUs). Node 0 has 4 runnable workers
# for 2 CPUs, so node 1's idle CPUs must pull some of them: remote_pulls
# grows and a good part of the workers' run time is off their home node.
# The overload test reads each node's runnable workers and online CPUs
# (kept in the scheduler's node_ctxs); what moiraictl shows of them are
# sums of per-CPU copies, which must come back to no runnable worker and 2
# CPUs per node once the runtime is gone. (60-numa checks the other side:
# a node that is not overloaded keeps its workers.)
. "$(dirname "$0")/lib.inc"
[ -d /sys/devices/system/node/node1 ] || { echo "SKIP: one NUMA node"; exit 4; }
[ "$(nproc)" = 4 ] || { echo "SKIP: written for the 4-CPU lab (2 nodes of 2)"; exit 4; }
load_bg
taskset 3 mrvm affinity 4 f || { cat /tmp/loader.log; fail "a worker did not run"; }
moiraictl dump --json | tr -d ' \n' | grep -o '"node_stats":\[[^]]*\]' |
	sed 's/},{/}\n{/g' >/tmp/nodes.txt
unload
# field NAME LINE: the value of "NAME" in one node's JSON object.
field() { echo "$2" | sed -n "s/.*\"$1\":\(-\{0,1\}[0-9]*\).*/\1/p"; }
n0=$(sed -n 1p /tmp/nodes.txt)
n1=$(sed -n 2p /tmp/nodes.txt)
[ -n "$n1" ] || { cat /tmp/nodes.txt; fail "no node_stats for two nodes"; }
pulls=$(field remote_pulls "$n0")
home=$(field worker_home_ns "$n0")
remote=$(field worker_remote_ns "$n0")
[ $((home + remote)) -gt 0 ] || fail "no worker run time counted"
pct=$((100 * remote / (home + remote)))
echo "# node 0 workers: $pulls pulled by node 1, $pct% of their run time there"
echo "# at rest: runnable workers $(field runnable_workers "$n0") and $(field runnable_workers "$n1"), CPUs $(field cpus "$n0") and $(field cpus "$n1")"
[ "$pulls" -gt 0 ] || fail "node 1 never pulled a worker of the overloaded node 0"
[ "$pct" -ge 20 ] || fail "only $pct% of the overloaded node's worker time ran on the idle node"
for n in "$n0" "$n1"; do
	[ "$(field runnable_workers "$n")" = 0 ] || fail "runnable workers do not sum to 0 at rest: $n"
	[ "$(field cpus "$n")" = 2 ] || fail "CPUs of a node do not sum to 2: $n"
done
exit 0
