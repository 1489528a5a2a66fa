#!/bin/sh
# Load and unload: state, ops name, refusal of a second load, partial mode.
. "$(dirname "$0")/lib.inc"

[ "$(state)" = disabled ] || fail "state is $(state) before load"
load_bg
echo "state $(state), ops $(ops)"
moiraictl status | tee /tmp/status.txt
grep -q enabled /tmp/status.txt || fail "status does not say enabled"

# A second load must refuse and name the loaded scheduler.
moiraictl load >/tmp/second.log 2>&1 && fail "second load succeeded"
cat /tmp/second.log
grep -q moirai /tmp/second.log || fail "refusal does not name the loaded scheduler"
[ "$(state)" = enabled ] || fail "second load disturbed the first"

unload
echo "state after unload: $(state)"
moiraictl unload | grep -q "not loaded" || fail "unload with nothing loaded says something else"

# Partial switch: loads, prints its caveat.
load_bg --partial
grep -qi "partial" /tmp/loader.log || fail "no partial-mode caveat printed"
unload

# Bad arguments are refused without loading anything.
moiraictl load --slice-us 0 >/dev/null 2>&1 && fail "--slice-us 0 accepted"
[ "$(state)" = disabled ] || fail "bad arguments left state $(state)"
exit 0
