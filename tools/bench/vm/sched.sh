#!/bin/sh
# tools/bench/vm/sched.sh - the sched_ext benchmark; runs INSIDE the VM guest
# (make bench-vm boots it), where mrvm and moiraictl are in /moirai/bin.
#
# Same boot, the default scheduler and moirai in alternating pairs (the
# default first in each), so that the host's load, which moves a lot under
# TCG, weighs on both alike:
#  - worker wake-up latency (post of a fiber from an outside thread to the
#    fiber running on an idle 4-worker runtime), p50 and p99 of N wake-ups,
#    with 4 competing CPU hogs;
#  - parallel_for throughput (rounds per second, median of 1 s windows over
#    PFOR_SECS) with 2 competing CPU hogs.
# PAIRS pairs of each. Prints a table: each scheduler's median over the
# pairs, and the median of the PAIRS paired ratios (moirai / default).
# Under TCG absolute times mean little; the ratios are what to read.
PATH=/moirai/bin:$PATH
PAIRS=${PAIRS:-5}
N=${N:-300}
PFOR_SECS=${PFOR_SECS:-4}

state() { cat /sys/kernel/sched_ext/state 2>/dev/null; }
hogs() { # start $1 hogs; pids in HOGS
	HOGS=""
	i=0
	while [ $i -lt "$1" ]; do
		mrvm hog 100000 0 >/dev/null &
		HOGS="$HOGS $!"
		i=$((i + 1))
	done
}
stop_hogs() { kill $HOGS 2>/dev/null; wait $HOGS 2>/dev/null; HOGS=""; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }

load() {
	moiraictl load >/tmp/bench-loader.log 2>&1 &
	i=0
	while [ "$(state)" != enabled ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
	if [ "$(state)" != enabled ]; then
		cat /tmp/bench-loader.log
		echo "bench: the moirai scheduler did not load"
		exit 1
	fi
}
unload() { # keep the last run's statistics for the summary below
	moiraictl dump --json >/tmp/bench-dump.json 2>/dev/null
	moiraictl unload >/dev/null
	i=0
	while [ "$(state)" = enabled ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
}

# One measurement under the current scheduler: wake|pfor LABEL; appends the
# numbers to /tmp/LABEL.{p50,p99,pfor}.
measure() {
	if [ "$1" = wake ]; then
		hogs 4
		out=$(mrvm wake "$N")
		stop_hogs
		echo "# $2: $out"
		echo "$out" | field p50_ns >>/tmp/$2.p50
		echo "$out" | field p99_ns >>/tmp/$2.p99
	else
		hogs 2
		out=$(mrvm pfor "$PFOR_SECS")
		stop_hogs
		echo "# $2: $out"
		echo "$out" | field median_rounds_per_s >>/tmp/$2.pfor
	fi
}

echo "# sched_ext benchmark: $(nproc) CPUs, kernel $(uname -r), $PAIRS pairs"
rm -f /tmp/default.* /tmp/moirai.*
p=0
while [ $p -lt "$PAIRS" ]; do
	for what in wake pfor; do
		measure $what default
		load
		measure $what moirai
		unload
	done
	p=$((p + 1))
done
# What the scheduler saw in its last run (a parallel_for): its own
# wake-up-to-run histogram of the workers, kicks.
tr -d ' \n' </tmp/bench-dump.json | grep -o '"latency":{[^}]*}' | sed 's/"log2_ns":\[[^]]*\],//; s/^/# scheduler: /'
tr -d ' \n' </tmp/bench-dump.json | grep -o '"\(preempt_kicks\|kicks\|direct\|dispatch_remote\|wake_preempts\)":[0-9]*' |
	awk -F: '{s[$1]+=$2} END {for (k in s) printf "# scheduler total %s %d\n", k, s[k]}'

# row NAME KEY SCALE TARGET: medians of both, median of the paired ratios.
row() {
	d=$(median </tmp/default.$2)
	m=$(median </tmp/moirai.$2)
	r=$(paste /tmp/default.$2 /tmp/moirai.$2 | awk '$1 > 0 {print $2 / $1}' | median)
	echo "# pairs $2: default $(tr '\n' ' ' </tmp/default.$2)/ moirai $(tr '\n' ' ' </tmp/moirai.$2)"
	awk -v n="$1" -v d="$d" -v m="$m" -v r="$r" -v s="$3" -v t="$4" \
		'BEGIN { printf "| %s | %.1f | %.1f | %.2f | %s |\n", n, d / s, m / s, r, t }' >>/tmp/bench-table
}
: >/tmp/bench-table
row "wake-up p50, 4 hogs (us)" p50 1000 -
row "wake-up p99, 4 hogs (us)" p99 1000 "<= 0.5"
row "parallel_for rounds/s, 2 hogs" pfor 1 ">= 1.1"
echo "| metric | default | moirai | moirai/default | target |"
echo "|---|---|---|---|---|"
cat /tmp/bench-table
echo "RESULT bench-vm done"
