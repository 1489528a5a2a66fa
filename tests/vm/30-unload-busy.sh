#!/bin/sh
# Unload while a runtime is busy: the workers continue on the fair class and
# the work completes correctly.
. "$(dirname "$0")/lib.inc"
load_bg
mrvm busy 6 4 &
BUSY=$!
sleep 2
unload
wait "$BUSY" || fail "busy workload failed after unload"
[ "$(state)" = disabled ] || fail "state $(state)"
exit 0
