#!/bin/sh
# Wake-ups on a machine whose CPUs are all busy (issue 16, item 6): one
# non-Moirai hog per CPU, and workers of an otherwise idle runtime woken
# over and over (mrvm wake): every wake-up finds no idle CPU on the
# worker's node and picks a CPU to preempt. The victims must not all be the
# same CPU of a node: with at least 20 preemption kicks in a node, no CPU
# may take all of them (the waker's own CPU is rightly preferred when it
# may be preempted, so a stricter share would test the workload). Prints what each
# callback cost per call (kernel.bpf_stats_enabled: run_time_ns/run_cnt),
# to compare topologies (MOIRAI_VM_TOPO).
. "$(dirname "$0")/lib.inc"
ncpu=$(nproc)
echo 1 >/proc/sys/kernel/bpf_stats_enabled 2>/dev/null
load_bg
HOGS=""
i=0
while [ $i -lt "$ncpu" ]; do
	mrvm hog 100000 0 >/dev/null &
	HOGS="$HOGS $!"
	i=$((i + 1))
done
sleep 1
mrvm wake 300 | grep -E '^# ' | head -3
kill $HOGS 2>/dev/null
wait $HOGS 2>/dev/null
moiraictl dump --json | tr -d ' \n' >/tmp/dump.json
bpftool prog show 2>/dev/null | tr '\n' ' ' | sed 's/ \([0-9][0-9]*\): /\n\1: /g' |
	grep -E 'name moirai_(select_cpu|enqueue|dispatch|runnable|running|stopping|quiescent) ' |
	sed -n 's/.*name \(moirai_[a-z_]*\) .*run_time_ns \([0-9]*\) run_cnt \([0-9]*\).*/\1 \2 \3/p' |
	while read -r name ns cnt; do
		[ "$cnt" -gt 0 ] && echo "# cost: $name $((ns / cnt)) ns per call over $cnt calls ($ncpu CPUs)"
	done
unload
echo 0 >/proc/sys/kernel/bpf_stats_enabled 2>/dev/null

# Preemption kicks per CPU, grouped by node.
grep -o '"preempt_kicks":[0-9]*' /tmp/dump.json | cut -d: -f2 >/tmp/pk
bad=0
for nd in /sys/devices/system/node/node[0-9]*; do
	n=${nd##*node}
	tot=0
	max=0
	line=""
	c=0
	while read -r k; do
		if [ -e "/sys/devices/system/cpu/cpu$c/node$n" ]; then
			tot=$((tot + k))
			[ "$k" -gt "$max" ] && max=$k
			line="$line $c:$k"
		fi
		c=$((c + 1))
	done </tmp/pk
	echo "# node $n preempt kicks (cpu:kicks):$line"
	[ "$tot" -ge 20 ] && [ "$max" -eq "$tot" ] && bad=1
done
[ "$bad" = 0 ] || fail "one CPU of a node took all of its preemption kicks"
exit 0
