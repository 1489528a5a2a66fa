#!/bin/sh
# A full worker_load (issue 16, item 7): when no line is free a worker
# cannot register and runs unsteered; that must not be silent. mrvm full
# takes every free line, starts 4 workers, and checks that none registered
# and that each refusal was counted in meta.reg_full; the loader must say
# so. Before, the refusal was silent and each worker probed every held line
# with a tgkill (1024 syscalls per worker start) before giving up; now at
# most 64.
. "$(dirname "$0")/lib.inc"
load_bg
mrvm full || { cat /tmp/loader.log; fail "refusals not counted"; }
# The loader reports what it finds every 100 ms: the 4 may come in parts.
refused() {
	sed -n 's/.*warning: \([0-9]*\) worker registrations\{0,1\} refused.*/\1/p' /tmp/loader.log |
		awk '{ n += $1 } END { print n + 0 }'
}
i=0
until [ "$(refused)" -eq 4 ]; do
	i=$((i + 1))
	[ $i -gt 30 ] && { cat /tmp/loader.log; fail "the loader did not report the refusals"; }
	sleep 0.1
done
grep refused /tmp/loader.log
# Room again: a runtime registers.
mrvm workers || fail "no registration after the lines were given back"
unload
exit 0
