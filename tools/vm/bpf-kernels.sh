#!/bin/sh
# tools/vm/bpf-kernels.sh - compile the scheduler against the BTF of every kernel it supports.
#
# Usage: tools/vm/bpf-kernels.sh BUILD_DIR CLANG BPF_CFLAGS...
#
# Kernels: the VM lab's (the newest: tools/vm/fetch.sh kernel) and the old one (the oldest
# series trixie-backports has: tools/vm/fetch.sh old-kernel). For each, writes
# BUILD_DIR/bpf/kernels/<version>/vmlinux.h with tools/vm/vmlinux-h.sh (kept while it is
# from the same BTF file: the ~3 MB headers are generated, not checked in) and
# compiles bpf/moirai.bpf.c against it twice: as is, and with -DBPF_NO_KFUNC_PROTOTYPES,
# which drops every kfunc declaration from the header - what a header written by a
# bpftool older than 7.5 gives, and, for the kfuncs renamed in 6.13, what a 6.12 kernel's
# gives (Debian builds its 6.12 kernels without sched_ext, so no 6.12 BTF with sched_ext
# can be fetched). bpf/compat.bpf.h must make all four builds pass. The objects go to
# BUILD_DIR/bpf/kernels/<version>/moirai{,-nokfuncs}.bpf.o; the loader embeds none of
# them (it embeds the one built against BUILD_DIR/bpf/vmlinux.h).
#
# BPF_CFLAGS are the Makefile's (its -I for BUILD_DIR/bpf comes after the kernel's own
# directory, which wins).
#
# Exit codes: 0 all built; 1 a build failed; 3 a kernel or bpftool cannot be fetched
# ("SKIP:" on stderr, see fetch.sh).
set -eu
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
# shellcheck source=tools/vm/lib.sh
. "$here/lib.sh"
repo=$(CDPATH='' cd -- "$here/../.." && pwd)

if [ $# -lt 2 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
	sed -n '2,/^set -eu/{/^#/s/^# \{0,1\}//p}' "$0" >&2
	exit 1
fi
build=$1
clang=$2
shift 2

"$here/fetch.sh" kernel
"$here/fetch.sh" old-kernel

failed=0
for k in kernel-old kernel; do
	ver=$(cat "$VM_CACHE/$k/version")
	if [ "$k" = kernel ]; then src=$VM_CACHE/kernel/vmlinux; else src=$VM_CACHE/$k/btf; fi
	dir=$build/bpf/kernels/$ver
	mkdir -p "$dir"
	# The header is regenerated when its BTF file changed (size or time).
	stamp="$src $(stat -c '%s %Y' "$src")"
	if [ ! -s "$dir/vmlinux.h" ] || [ "$(cat "$dir/vmlinux.h.src" 2>/dev/null)" != "$stamp" ]; then
		MOIRAI_VMLINUX=$src "$here/vmlinux-h.sh" "$dir/vmlinux.h"
		echo "$stamp" >"$dir/vmlinux.h.src"
	fi
	for variant in "" -nokfuncs; do
		def=""
		[ "$variant" = -nokfuncs ] && def=-DBPF_NO_KFUNC_PROTOTYPES
		obj=$dir/moirai$variant.bpf.o
		# shellcheck disable=SC2086 # $def is one word or none
		if "$clang" -I"$dir" "$@" $def -c "$repo/bpf/moirai.bpf.c" -o "$obj"; then
			echo "bpf-kernels: moirai.bpf.c builds against $ver${def:+ with $def}"
		else
			echo "bpf-kernels: FAIL: moirai.bpf.c does not build against $ver${def:+ with $def}"
			failed=1
		fi
	done
done
exit $failed
