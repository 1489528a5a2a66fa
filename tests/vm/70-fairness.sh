#!/bin/sh
# A non-Moirai CPU hog gets at least half of its fair share while Moirai
# saturates the machine: 4 workers + 1 hog on 4 CPUs, fair share 80% of one
# CPU, so at least 40%.
. "$(dirname "$0")/lib.inc"
load_bg
mrvm busy 8 4 &
MR=$!
sleep 1
mrvm hog 6 40 || { wait "$MR"; fail "hog starved"; }
wait "$MR" || fail "moirai workload failed"
unload
exit 0
