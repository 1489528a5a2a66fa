#!/bin/sh
# CPU hotplug (issue 16, item 2). While 4 workers run, CPU 3 goes offline and
# comes back: the scheduler keeps running (ops.cpu_offline/cpu_online), the
# work completes. Then CPU 3 is offline when the scheduler loads, so the
# loader cannot know its node; when it comes online the scheduler asks for a
# restart and the loader restarts it (sched_ext enabled again, a new
# enable_seq, the same loader). An unload asked for exits 0. A restart that
# cannot be done (the pinned workers map replaced by one of another layout)
# exits 3. Before: offlining a CPU unloaded the scheduler for good and
# moiraictl exited 0.
. "$(dirname "$0")/lib.inc"
CPU=/sys/devices/system/cpu/cpu3/online
[ -w "$CPU" ] || { echo "SKIP: cpu3 cannot be offlined"; exit 4; }
trap 'echo 1 >$CPU 2>/dev/null; cleanup' EXIT

# 1. Offline and online under load.
load_bg
seq0=$(cat /sys/kernel/sched_ext/enable_seq)
mrvm busy 6 4 >/tmp/busy.log &
BUSY=$!
sleep 1
echo 0 >$CPU || fail "cannot offline cpu3"
sleep 1
[ "$(state)" = enabled ] || { cat /tmp/loader.log; fail "state $(state) after cpu3 went offline"; }
echo 1 >$CPU || fail "cannot online cpu3"
sleep 1
[ "$(state)" = enabled ] || { cat /tmp/loader.log; fail "state $(state) after cpu3 came back"; }
kill -0 "$LOADER" 2>/dev/null || { cat /tmp/loader.log; fail "the loader exited"; }
wait "$BUSY" || { cat /tmp/busy.log; fail "the workload failed"; }
cat /tmp/busy.log
[ "$(cat /sys/kernel/sched_ext/enable_seq)" = "$seq0" ] || echo "# (the scheduler was restarted meanwhile)"
moiraictl unload >/dev/null || fail "unload failed"
wait "$LOADER"
rc=$?
LOADER=
[ $rc = 0 ] || { cat /tmp/loader.log; fail "moiraictl load exited $rc after unload, want 0"; }

# 2. A CPU offline at load comes online: restart.
echo 0 >$CPU || fail "cannot offline cpu3"
load_bg
seq0=$(cat /sys/kernel/sched_ext/enable_seq)
mrvm busy 4 4 >/tmp/busy.log &
BUSY=$!
echo 1 >$CPU || fail "cannot online cpu3"
i=0
while [ "$(cat /sys/kernel/sched_ext/enable_seq)" = "$seq0" ] || [ "$(state)" != enabled ]; do
	i=$((i + 1))
	[ $i -gt 100 ] && { cat /tmp/loader.log; fail "not restarted (state $(state), enable_seq $seq0 -> $(cat /sys/kernel/sched_ext/enable_seq))"; }
	kill -0 "$LOADER" 2>/dev/null || { cat /tmp/loader.log; fail "the loader exited"; }
	sleep 0.1
done
cat /tmp/loader.log
echo "# restarted: enable_seq $seq0 -> $(cat /sys/kernel/sched_ext/enable_seq)"
wait "$BUSY" || fail "the workload failed"

# 3. A restart that cannot be done exits 3.
echo 0 >$CPU || fail "cannot offline cpu3"
moiraictl unload >/dev/null
wait "$LOADER"
LOADER=
load_bg
rm /sys/fs/bpf/moirai/workers
bpftool map create /sys/fs/bpf/moirai/workers type hash key 4 value 8 entries 1 name workers ||
	fail "cannot pin a stand-in workers map"
echo 1 >$CPU || fail "cannot online cpu3"
i=0
while kill -0 "$LOADER" 2>/dev/null; do
	i=$((i + 1))
	[ $i -gt 100 ] && { cat /tmp/loader.log; fail "the loader did not exit after a failed restart"; }
	sleep 0.1
done
wait "$LOADER"
rc=$?
LOADER=
cat /tmp/loader.log
rm /sys/fs/bpf/moirai/workers
[ $rc = 3 ] || fail "moiraictl load exited $rc after a failed restart, want 3"
exit 0
