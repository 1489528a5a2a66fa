#!/bin/sh
# Workers become SCHED_EXT and are registered; destroy unregisters them.
. "$(dirname "$0")/lib.inc"
load_bg
mrvm workers || fail "registration check failed"
unload
exit 0
