#!/bin/sh
# An error exit prints the kernel's dump (issue 16, item 8): the scheduler
# is made to fail (test_error, set with bpftool) while workers run;
# `moiraictl load` must exit 1, print the reason and then the dump of the
# scheduler's state that the kernel handed to ops.exit (exit_dump_len).
# Before, only the one-line reason was printed and the dump was lost.
. "$(dirname "$0")/lib.inc"
load_bg
mrvm busy 4 4 >/dev/null &
BUSY=$!
sleep 1
if ! bpftool map update name .data.test key 0 0 0 0 value 1 0 0 0; then
	bpftool map show | grep -i data
	fail "cannot set test_error"
fi
i=0
while kill -0 "$LOADER" 2>/dev/null; do
	i=$((i + 1))
	[ $i -gt 100 ] && fail "the loader did not exit after an error"
	sleep 0.1
done
wait "$LOADER"
rc=$?
LOADER=
wait "$BUSY" || fail "the workload failed after the error exit"
head -c 3000 /tmp/loader.log
lines=$(sed -n "/the kernel's dump of the scheduler's state/,\$p" /tmp/loader.log | wc -l)
echo "# dump: $lines lines, $(wc -c </tmp/loader.log) bytes of loader output"
[ $rc = 1 ] || fail "moiraictl load exited $rc after an error exit, want 1"
grep -q "error asked for through test_error" /tmp/loader.log || fail "the reason was not printed"
[ "$lines" -gt 5 ] || fail "no dump of the scheduler's state printed"
[ "$(state)" = disabled ] || fail "state $(state)"
exit 0
