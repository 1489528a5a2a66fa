#!/bin/sh
# The scheduler binds, on the kernel it runs on, the newest shape of each kfunc
# that was renamed or reshaped since 6.12 (bpf/compat.bpf.h), and schedules with
# it: `moiraictl load` prints the shapes ops.init recorded, checked here against
# the kernel's version (uname -r), then the machine runs busy for a while and
# the scheduler must still be enabled (every enqueue and dispatch went through
# the wrappers; a wrapper that found no shape stops the scheduler).
#   insert         6.19+: scx_bpf_dsq_insert___v2     6.13+: scx_bpf_dsq_insert
#   insert_vtime   6.19+: __scx_bpf_dsq_insert_vtime  6.13+: scx_bpf_dsq_insert_vtime
#   move_to_local  7.1+:  ..._move_to_local___v2      6.13+: scx_bpf_dsq_move_to_local
#   set_vtime      6.19+: scx_bpf_task_set_dsq_vtime  else a write of p->scx.dsq_vtime
# Run on both kernels of the lab by `make check-vm` (tools/vm/run.sh,
# MOIRAI_VM_KERNEL=new and old).
. "$(dirname "$0")/lib.inc"

rel=$(uname -r)
maj=${rel%%.*}
min=${rel#*.}
min=${min%%[!0-9]*}
ver=$((maj * 100 + min))
echo "kernel $rel"
[ "$ver" -ge 613 ] || { echo "SKIP: kernel $rel predates the kfunc renaming of 6.13"; exit 4; }

load_bg
i=0
until line=$(grep '^moirai: kernel kfuncs:' /tmp/loader.log); do
	i=$((i + 1))
	[ "$i" -gt 50 ] && { cat /tmp/loader.log; fail "moiraictl load printed no kfuncs line"; }
	sleep 0.1
done
echo "$line"
set -- ${line#moirai: kernel kfuncs:}
[ $# -eq 4 ] || fail "want 4 kfunc shapes, got $#: $*"

want_insert=scx_bpf_dsq_insert want_vtime=scx_bpf_dsq_insert_vtime
want_move=scx_bpf_dsq_move_to_local want_set=p-\>scx.dsq_vtime=
if [ "$ver" -ge 619 ]; then
	want_insert=scx_bpf_dsq_insert___v2 want_vtime=__scx_bpf_dsq_insert_vtime
	want_set=scx_bpf_task_set_dsq_vtime
fi
[ "$ver" -ge 701 ] && want_move=scx_bpf_dsq_move_to_local___v2
[ "$1" = "$want_insert" ] || fail "insert bound $1, want $want_insert on $rel"
[ "$2" = "$want_vtime" ] || fail "insert_vtime bound $2, want $want_vtime on $rel"
[ "$3" = "$want_move" ] || fail "move_to_local bound $3, want $want_move on $rel"
[ "$4" = "$want_set" ] || fail "set_vtime bound $4, want $want_set on $rel"

# Busy: more runnable tasks than CPUs, so tasks queue, vtime-ordered, and
# every CPU dispatches from the queues.
pids=""
for _ in 1 2 3 4 5 6; do
	(while :; do :; done) &
	pids="$pids $!"
done
sleep 3
# shellcheck disable=SC2086
kill $pids
[ "$(state)" = enabled ] || { cat /tmp/loader.log; fail "scheduler $(state) after 3 s busy"; }
kill -0 "$LOADER" 2>/dev/null || { cat /tmp/loader.log; fail "moiraictl load exited"; }
unload
exit 0
