#!/bin/sh
# A non-Moirai CPU hog gets at least half of its fair share while Moirai
# saturates the machine: 4 workers that never sleep + 1 hog on 4 CPUs, fair
# share 80% of one CPU, so at least 40%; and the workers must really have
# used the machine (at least 2 of the 4 CPUs; their fair share is 3.2).
# With 5 runnable threads on 4 CPUs someone always waits: the scheduler must
# mark waiting workers preempted in their load lines (the runtime reads that
# to stop relying on preempted searchers), seen in `moiraictl status`.
. "$(dirname "$0")/lib.inc"
load_bg
mrvm spin 8 4 2.0 &
MR=$!
sleep 1
(
	seen=0
	for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
		moiraictl status | grep -Eq " preempted$" && seen=$((seen + 1))
		sleep 0.2
	done
	echo "$seen" >/tmp/preempted-seen
) &
SAMPLER=$!
mrvm hog 6 40 || { wait "$MR"; fail "hog starved"; }
wait "$SAMPLER"
wait "$MR" || fail "the Moirai workers did not saturate the machine"
seen=$(cat /tmp/preempted-seen)
echo "# a worker was marked preempted in $seen of 20 samples"
[ "$seen" -gt 0 ] || fail "no worker was ever marked preempted while 5 threads shared 4 CPUs"
unload
exit 0
