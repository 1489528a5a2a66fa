#!/bin/sh
# Registrations of a process killed while no scheduler was loaded (issue
# 16, item 7): the maps stay pinned after unload and runtimes keep
# registering in them, but only a loaded scheduler's exit_task() forgets the
# threads that exit without unregistering. The next load must remove them
# (and free their worker_load lines). Before, they stayed forever.
. "$(dirname "$0")/lib.inc"
load_bg
unload
mrvm busy 60 4 >/dev/null &
VICTIM=$!
i=0
until moiraictl status | grep -q "workers: 4 registered"; do
	i=$((i + 1))
	[ $i -gt 100 ] && { moiraictl status; fail "the workers did not register without a scheduler"; }
	sleep 0.1
done
kill -9 "$VICTIM"
wait "$VICTIM" 2>/dev/null
moiraictl status | grep "workers:"
load_bg
i=0
until moiraictl status | grep -q "workers: 0 registered"; do
	i=$((i + 1))
	[ $i -gt 30 ] && { moiraictl status; cat /tmp/loader.log; fail "registrations of a process killed while unloaded stay after a load"; }
	sleep 0.1
done
cat /tmp/loader.log
bpftool map dump pinned /sys/fs/bpf/moirai/worker_load | grep -c '"tid": [1-9]' >/tmp/lines || true
[ "$(cat /tmp/lines)" = 0 ] || fail "$(cat /tmp/lines) worker_load lines still held"
unload
exit 0
