#!/bin/sh
# 20 s of hackbench + stress-ng CPU hogs + a Moirai parallel workload under
# the scheduler: no watchdog exit, every process finishes.
. "$(dirname "$0")/lib.inc"
SECS=${MOIRAI_VM_STRESS_SECS:-20}
load_bg
end=$(($(date +%s) + SECS))
(
	n=0
	while [ "$(date +%s)" -lt "$end" ]; do
		hackbench -g 4 -f 10 -l 200 >/dev/null || exit 1
		n=$((n + 1))
	done
	echo "hackbench: $n runs"
) &
HB=$!
stress-ng --cpu 2 --timeout "${SECS}s" --quiet &
SN=$!
mrvm busy "$SECS" 4 &
MR=$!
rc=0
wait "$HB" || { echo "hackbench failed"; rc=1; }
wait "$SN" || { echo "stress-ng failed"; rc=1; }
wait "$MR" || { echo "moirai workload failed"; rc=1; }
[ "$(state)" = enabled ] || { cat /tmp/loader.log; fail "scheduler exited during the stress (state $(state))"; }
[ $rc = 0 ] || fail "a process failed"
moiraictl dump --json >/tmp/dump.json || fail "dump failed"
grep -o '"kind": *[0-9]*' /tmp/dump.json | head -1
unload
exit 0
