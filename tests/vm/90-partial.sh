#!/bin/sh
# Partial switch: only the workers are SCHED_EXT; they register and run.
. "$(dirname "$0")/lib.inc"
load_bg --partial
mrvm workers || fail "registration in partial mode failed"
mrvm busy 2 4 || fail "workload failed in partial mode"
unload
exit 0
