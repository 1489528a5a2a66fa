#!/bin/sh
# NUMA: 4 workers homed 2 per node keep >= 99% of their run time on their
# home node (scheduler stats, cross-checked by sampling /proc/<tid>/stat).
. "$(dirname "$0")/lib.inc"
[ -d /sys/devices/system/node/node1 ] || { echo "SKIP: one NUMA node"; exit 4; }
load_bg
mrvm numa 6 || fail "locality below 99%"
unload
exit 0
