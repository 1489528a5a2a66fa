#!/bin/sh
# tools/vm/check.sh - the VM part of `make check`: fetch, build the initramfs, boot, judge.
#
# Usage: tools/vm/check.sh BUILD_DIR STAGE_DIR
#
# 1. tools/vm/fetch.sh all (kernel, libbpf, bpftool into the cache).
# 2. Stages the lab's own files into STAGE_DIR when missing or different:
#    tests/vm/run-all -> STAGE_DIR/run-all, tests/vm/*.sh and *.inc -> STAGE_DIR/tests/.
#    The caller (the Makefile) puts the binaries under test there (and lists ELF tests in
#    STAGE_DIR/tests/LIST, one per line).
# 3. tools/vm/mkinitramfs.sh BUILD_DIR/vm/initramfs.cpio.gz STAGE_DIR
# 4. tools/vm/run.sh BUILD_DIR/vm/initramfs.cpio.gz BUILD_DIR/vm/console.log (console-old.log
#    with MOIRAI_VM_KERNEL=old), whose last
#    line is the summary "vm: P passed, F failed, S skipped".
#
# Environment:
#   MOIRAI_VM_REQUIRED=1   a lab that cannot run (no network for the first fetch, qemu not
#                          installable) fails instead of skipping
#   MOIRAI_VM_TIMEOUT      wall-clock limit of the VM in seconds (default 600)
#   MOIRAI_VM_ARGS         words for run-all in the guest (options and test-name patterns,
#                          e.g. "-t 120 smoke"); passed as moirai.args="..." (no quotes inside)
#   MOIRAI_VM_APPEND       more kernel command-line words (e.g. loglevel=7)
#   MOIRAI_VM_CACHE        the cache (default $HOME/.cache/moirai-vm)
#   MOIRAI_VM_KERNEL       new (default) or old: which kernel boots (see tools/vm/run.sh)
#
# Exit codes: 0 passed, or skipped ("vm: SKIP <reason>") when the lab cannot run here and
# MOIRAI_VM_REQUIRED is not 1; 1 failed; 2 bad usage.
set -eu
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
# shellcheck source=tools/vm/lib.sh
. "$here/lib.sh"
repo=$(CDPATH='' cd -- "$here/../.." && pwd)

if [ $# -ne 2 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
	sed -n '2,/^set -eu/{/^#/s/^# \{0,1\}//p}' "$0" >&2
	exit 2
fi
build=$1
stage=$2
mkdir -p "$build/vm" "$stage/tests"
errs=$build/vm/step.err

# step CMD...: run a lab script; its exit status 3 means "cannot run here".
step() {
	# stderr is shown as it comes and kept for the SKIP reason; the status comes back
	# through a file because the command runs on the left of a pipe.
	{
		rc=0
		"$@" 2>&1 1>&3 3>&- || rc=$?
		echo "$rc" >"$errs.rc"
	} 3>&1 | tee "$errs" | sed -u '/^SKIP: /d' >&2
	rc=$(cat "$errs.rc")
	[ "$rc" -eq 0 ] && return 0
	if [ "$rc" -eq 3 ]; then
		why=$(sed -n 's/^SKIP: //p' "$errs" | tail -n 1)
		if [ "${MOIRAI_VM_REQUIRED:-0}" = 1 ]; then
			echo "vm: FAIL: the VM lab cannot run here and MOIRAI_VM_REQUIRED=1: ${why:-?}"
			exit 1
		fi
		echo "vm: SKIP ${why:-the VM lab cannot run here}"
		exit 0
	fi
	exit 1
}

# stage_file SRC DEST: copy when DEST is missing or differs.
stage_file() {
	cmp -s "$1" "$2" || cp "$1" "$2"
}

step "$here/fetch.sh" all
stage_file "$repo/tests/vm/run-all" "$stage/run-all"
for t in "$repo"/tests/vm/*.sh "$repo"/tests/vm/*.inc; do
	[ -f "$t" ] && stage_file "$t" "$stage/tests/${t##*/}"
done
step "$here/mkinitramfs.sh" "$build/vm/initramfs.cpio.gz" "$stage"
set -- --timeout "${MOIRAI_VM_TIMEOUT:-600}"
if [ -n "${MOIRAI_VM_ARGS:-}" ]; then
	set -- "$@" --append "moirai.args=\"$MOIRAI_VM_ARGS\""
fi
if [ -n "${MOIRAI_VM_APPEND:-}" ]; then
	set -- "$@" --append "$MOIRAI_VM_APPEND"
fi
log=$build/vm/console.log
[ "${MOIRAI_VM_KERNEL:-new}" = old ] && log=$build/vm/console-old.log
step "$here/run.sh" "$@" "$build/vm/initramfs.cpio.gz" "$log"
