#!/bin/sh
# tools/bench/vm/sched.sh - the sched_ext benchmark; runs INSIDE the VM guest
# (make bench-vm boots it), where mrvm and moiraictl are in /moirai/bin.
#
# Same boot, default scheduler first, then moirai:
#  - worker wake-up latency (post of a fiber from an outside thread to the
#    fiber running on an idle 4-worker runtime), p50 and p99, with 4
#    competing CPU hogs; median of ROUNDS runs of N wake-ups each;
#  - parallel_for throughput (rounds per second, median of 1 s windows) with
#    2 competing CPU hogs.
# Prints a table with the ratios (moirai / default). Under TCG absolute times
# mean little; the ratios are what to read.
PATH=/moirai/bin:$PATH
ROUNDS=${ROUNDS:-3}
N=${N:-300}
PFOR_SECS=${PFOR_SECS:-5}

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

run_set() { # label
	hogs 4
	: >/tmp/p50; : >/tmp/p99
	r=0
	while [ $r -lt "$ROUNDS" ]; do
		out=$(mrvm wake "$N")
		echo "# $1: $out"
		echo "$out" | field p50_ns >>/tmp/p50
		echo "$out" | field p99_ns >>/tmp/p99
		r=$((r + 1))
	done
	stop_hogs
	hogs 2
	out=$(mrvm pfor "$PFOR_SECS")
	echo "# $1: $out"
	stop_hogs
	eval "${1}_p50=$(median </tmp/p50)"
	eval "${1}_p99=$(median </tmp/p99)"
	eval "${1}_pfor=$(echo "$out" | field median_rounds_per_s)"
}

echo "# sched_ext benchmark: $(nproc) CPUs, kernel $(uname -r)"
run_set default
moiraictl load >/tmp/bench-loader.log 2>&1 &
LOADER=$!
i=0
while [ "$(state)" != enabled ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
if [ "$(state)" != enabled ]; then
	cat /tmp/bench-loader.log
	echo "bench: the moirai scheduler did not load"
	exit 1
fi
run_set moirai
moiraictl dump --json >/tmp/bench-dump.json 2>/dev/null
moiraictl unload >/dev/null
# What the scheduler saw (its own wake-up-to-run histogram of the workers, kicks).
tr -d ' \n' </tmp/bench-dump.json | grep -o '"latency":{[^}]*}' | sed 's/"log2_ns":\[[^]]*\],//; s/^/# scheduler: /'
tr -d ' \n' </tmp/bench-dump.json | grep -o '"\(preempt_kicks\|kicks\|direct\|dispatch_remote\|wake_preempts\)":[0-9]*' |
	awk -F: '{s[$1]+=$2} END {for (k in s) printf "# scheduler total %s %d\n", k, s[k]}'

awk -v dp50="$default_p50" -v dp99="$default_p99" -v dpf="$default_pfor" \
	-v mp50="$moirai_p50" -v mp99="$moirai_p99" -v mpf="$moirai_pfor" 'BEGIN {
	printf "| metric | default | moirai | moirai/default | target |\n"
	printf "|---|---|---|---|---|\n"
	printf "| wake-up p50, 4 hogs (us) | %.1f | %.1f | %.2f | - |\n", dp50/1000, mp50/1000, mp50/dp50
	printf "| wake-up p99, 4 hogs (us) | %.1f | %.1f | %.2f | <= 0.5 |\n", dp99/1000, mp99/1000, mp99/dp99
	printf "| parallel_for rounds/s, 2 hogs | %.1f | %.1f | %.2f | >= 1.1 |\n", dpf, mpf, mpf/dpf
}'
echo "RESULT bench-vm done"
