#!/bin/sh
# Workers become SCHED_EXT and are registered; destroy unregisters them; the
# scheduler forgets the workers of a process killed with SIGKILL.
. "$(dirname "$0")/lib.inc"
load_bg
mrvm workers || fail "registration check failed"
moiraictl status | grep -q "workers: 0 registered" || fail "workers left registered after destroy"

mrvm busy 30 4 >/dev/null &
VICTIM=$!
i=0
until moiraictl status | grep -q "workers: 4 registered"; do
	i=$((i + 1))
	[ $i -gt 100 ] && { moiraictl status; fail "the busy process's workers did not register"; }
	sleep 0.1
done
kill -9 "$VICTIM"
wait "$VICTIM" 2>/dev/null
i=0
until moiraictl status | grep -q "workers: 0 registered"; do
	i=$((i + 1))
	[ $i -gt 100 ] && { moiraictl status; fail "a killed process's workers stay registered"; }
	sleep 0.1
done
echo "killed process's workers unregistered by the scheduler"
unload
exit 0
