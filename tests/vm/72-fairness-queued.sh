#!/bin/sh
# Fairness against workers that always report queued work (issue 16, item
# 4): 4 workers run 16 fibers that never yield and their load lines say
# "running, 8 jobs queued" all the time (MRVM_DEPTH), so every enqueue of a
# worker gets the scheduler's queued-work credit; a CPU hog beside them
# must still get at least half of its fair share (4 workers + 1 hog on 4
# CPUs: 80% of a CPU, so 40%), and the scheduler must stay enabled.
. "$(dirname "$0")/lib.inc"
load_bg
MRVM_DEPTH=8 mrvm spin 8 4 2.0 16 &
MR=$!
sleep 1
mrvm hog 6 40 || { wait "$MR"; cat /tmp/loader.log; fail "the hog got less than half its share"; }
wait "$MR" || fail "the Moirai workers did not use the machine"
[ "$(state)" = enabled ] || { cat /tmp/loader.log; fail "scheduler state $(state)"; }
unload
exit 0
