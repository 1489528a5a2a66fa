#!/bin/sh
# A registered thread that runs execve (issue 16, item 3; found in review).
# A registration names the thread, and the thread survives an execve: the
# scheduler went on copying "hints" from the registered address, now in
# another program's memory (a setuid one, say), into a line the granted
# group can read. The registration now records the thread's exec id, and an
# entry of an older exec is void. mrvm execreg registers with depth 77,
# execs itself, and the new program writes depth 55 at the same address.
. "$(dirname "$0")/lib.inc"
load_bg
mrvm execreg
rc=$?
unload
[ $rc = 4 ] && { echo "SKIP: the new program could not map the old address"; exit 4; }
[ $rc = 0 ] || fail "the scheduler copied hints from memory of a program run by execve"
exit 0
