#!/bin/sh
# SIGKILL of moiraictl: the kernel disables the scheduler when the link goes
# away, and the runtime keeps running on the default scheduler.
. "$(dirname "$0")/lib.inc"
load_bg
mrvm busy 6 4 &
BUSY=$!
sleep 2
kill -9 "$LOADER"
wait "$LOADER" 2>/dev/null
LOADER=
wait_state disabled 100 || fail "state stays $(state) after SIGKILL of the loader"
echo "state after SIGKILL: $(state)"
wait "$BUSY" || fail "busy workload failed"
mrvm busy 1 2 || fail "a new runtime fails after the SIGKILL"
# And the scheduler can be loaded again (stale pid file handled).
load_bg
unload
exit 0
