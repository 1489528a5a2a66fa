#!/bin/sh
# A non-Moirai CPU hog gets at least half of its fair share while Moirai
# saturates the machine: 4 workers that never sleep + 1 hog on 4 CPUs, fair
# share 80% of one CPU, so at least 40%; and the workers must really have
# used the machine (at least 2 of the 4 CPUs; their fair share is 3.2).
. "$(dirname "$0")/lib.inc"
load_bg
mrvm spin 8 4 2.0 &
MR=$!
sleep 1
mrvm hog 6 40 || { wait "$MR"; fail "hog starved"; }
wait "$MR" || fail "the Moirai workers did not saturate the machine"
unload
exit 0
