#!/bin/sh
# A process can register only its own threads (issue 16, item 3). Before,
# whoever could write the pinned workers map could register any thread of
# any process (and so give it a worker's boosts) or remove another
# process's registrations; the only way to let non-root services register
# was to open the maps to them. Now threads register through the pinned
# `register` program, which acts on its caller; the operator's group
# (load --group) may run it, but workers stays root's.
. "$(dirname "$0")/lib.inc"
P=/sys/fs/bpf/moirai
steered_group
load_bg --group moirai
# A root runtime (its workers registered) and a process outside the runtimes.
mrvm hold 60 2 >/tmp/victim.log 2>&1 &
VICTIM=$!
sleep 60 &
OTHER=$!
mrvm registered "$VICTIM" 2 || fail "the victim's workers did not register"
W=$(ls /proc/$VICTIM/task | while read -r t; do
	grep -q '^moirai-w' /proc/$VICTIM/task/$t/comm && echo "$t"; done | head -n 1)
[ -n "$W" ] || fail "no worker thread in the victim"
ls -l $P
as_nobody mrvm intrude "$OTHER" "$W"
rc=$?
mrvm reg "$OTHER" && fail "another process's thread got registered"
mrvm reg "$W" || fail "another process's worker lost its registration"
mrvm registered "$VICTIM" 2 || fail "the victim's registrations changed"
[ "$rc" -eq 0 ] || fail "the intruder wrote the workers map or a worker_load line"
echo "# a member of the group can neither register another's thread, remove one, nor change its line"
kill "$VICTIM" "$OTHER"
wait "$VICTIM" "$OTHER" 2>/dev/null
unload
exit 0
