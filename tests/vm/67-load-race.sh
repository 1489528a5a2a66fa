#!/bin/sh
# Two loads racing (issue 16, item 7): both pass the early checks, one
# attaches, the other fails its attach. The statistics pinned under
# /sys/fs/bpf/moirai must be the running scheduler's: its ops.init counts
# each node's CPUs in node_stats (2 and 2 here), while the loser's maps stay
# zero. Before, each load pinned its maps before attaching, so the loser,
# pinning last, usually left the pins pointing at its own dead maps.
. "$(dirname "$0")/lib.inc"
bad=0
for round in 1 2 3 4 5; do
	moiraictl load >/tmp/a.log 2>&1 &
	A=$!
	moiraictl load >/tmp/b.log 2>&1 &
	B=$!
	LOADER=$A
	wait_state enabled 200 || { cat /tmp/a.log /tmp/b.log; fail "round $round: not enabled"; }
	# The loser exits; wait until only one loader is left.
	i=0
	while kill -0 $A 2>/dev/null && kill -0 $B 2>/dev/null; do
		i=$((i + 1))
		[ $i -gt 100 ] && { cat /tmp/a.log /tmp/b.log; fail "round $round: two loaders stay"; }
		sleep 0.1
	done
	raced=no
	grep -q "attaching the scheduler failed" /tmp/a.log /tmp/b.log && raced=yes
	# node_stats is per-CPU: moiraictl sums each node's copies.
	n=$(moiraictl dump --json | grep -c '"cpus": 2')
	echo "# round $round: raced to the attach: $raced; nodes with 2 CPUs in the pinned node_stats: $n"
	[ "$n" = 2 ] || bad=$((bad + 1))
	moiraictl unload >/dev/null || fail "unload failed"
	wait $A $B 2>/dev/null
	LOADER=
done
[ $bad = 0 ] || fail "in $bad of 5 rounds the pinned statistics were not the running scheduler's"
exit 0
