#!/bin/sh
# The layout version of the pinned maps (issue 16, item 7): meta.version is
# stamped by each load. Pinned maps of another version are refused by the
# loader (with the pin to remove), and a runtime does not register in them
# (its workers run unsteered rather than be read with another layout).
# Before, only the maps' sizes were compared.
. "$(dirname "$0")/lib.inc"
P=/sys/fs/bpf/moirai
load_bg
unload
zeros=""
for i in $(seq 60); do zeros="$zeros 0"; done
# shellcheck disable=SC2086
bpftool map update pinned $P/meta key 0 0 0 0 value 9 0 0 0 $zeros || fail "cannot write meta"
moiraictl load >/tmp/refused.log 2>&1 && { unload; fail "a load accepted maps of layout version 9"; }
cat /tmp/refused.log
grep -q "layout version 9" /tmp/refused.log || fail "the refusal does not name the version"
grep -q "rm $P/meta" /tmp/refused.log || fail "the refusal does not name the pin to remove"
mrvm workers >/tmp/workers.log 2>&1 && { cat /tmp/workers.log; fail "a runtime registered in maps of layout version 9"; }
grep -q "registered no" /tmp/workers.log || { cat /tmp/workers.log; fail "unexpected mrvm output"; }
echo "# a runtime does not register in maps of layout version 9"
rm $P/meta
load_bg
mrvm workers || fail "no registration with a fresh meta"
unload
exit 0
