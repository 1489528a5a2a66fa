#!/bin/sh
# A non-root service is steered once the operator grants it (issue 16,
# item 3): `moiraictl load --group moirai` lets the group's processes
# register their workers; a load without --group takes that back. Before,
# the pins were root's, mode 0600, and there was no grant: a non-root
# runtime's workers ran unsteered.
. "$(dirname "$0")/lib.inc"
P=/sys/fs/bpf/moirai
steered_group
# bpffs as systemd mounts it (0700): the loader says how to let the group
# through, and the operator does so.
mode=$(stat -c %a /sys/fs/bpf)
grp=$(stat -c %g /sys/fs/bpf)
chmod 700 /sys/fs/bpf
load_bg --group moirai
grep "cannot reach" /tmp/loader.log || fail "no warning about /sys/fs/bpf"
grep -q "group moirai (gid 990) may register" /tmp/loader.log || fail "the grant is not reported"
chgrp moirai /sys/fs/bpf && chmod g+x /sys/fs/bpf
ls -l $P
as_nobody mrvm hold 30 4 >/tmp/steered.log 2>&1 &
BG=$!
i=0
until grep -q ready /tmp/steered.log; do
	i=$((i + 1))
	[ $i -gt 100 ] && { cat /tmp/steered.log; fail "the non-root runtime did not start"; }
	sleep 0.1
done
cat /tmp/steered.log
pid=$(sed -n 's/^ready pid \([0-9]*\):.*/\1/p' /tmp/steered.log)
[ "$(awk '/^Uid:/ { print $2 }' /proc/$pid/status)" = 65534 ] || fail "pid $pid is not nobody's"
mrvm registered "$pid" 4 || fail "the non-root runtime's workers are not steered"
moiraictl status | grep -q "workers: 4 registered" || { moiraictl status; fail "status does not show them"; }
kill "$pid"
wait "$BG"
chgrp "$grp" /sys/fs/bpf && chmod "$mode" /sys/fs/bpf
# Without --group, root's only again.
unload
load_bg
ls -l $P
as_nobody mrvm hold 30 4 >/tmp/unsteered.log 2>&1 &
BG=$!
i=0
until grep -q ready /tmp/unsteered.log; do
	i=$((i + 1))
	[ $i -gt 100 ] && { cat /tmp/unsteered.log; fail "the non-root runtime did not start"; }
	sleep 0.1
done
pid=$(sed -n 's/^ready pid \([0-9]*\):.*/\1/p' /tmp/unsteered.log)
mrvm registered "$pid" 0 || fail "a non-root runtime registered without a grant"
kill "$pid"
wait "$BG"
echo "# steered with the grant, not without"
unload
exit 0
